"""report_summary: the metrics table of the evaluated subjects (exactly its inputs) and their training curves."""

import logging

from mindvis.config import resolve
from mindvis.evaluation.report import summarize_results
from mindvis.logs import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 (snakemake is injected by the script directive)
cfg = resolve(snakemake.config)  # noqa: F821 (only where results and MLflow runs are: results_root, tracking)
written = summarize_results(cfg.results_root, cfg.tracking.tracking_uri, cfg.tracking.experiment,
                            metrics_files=list(snakemake.input))  # noqa: F821
logging.getLogger("report_summary").info("wrote %s", written)
