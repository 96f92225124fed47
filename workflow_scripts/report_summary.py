"""report_summary: the metrics table over all subjects and the training curves, for `snakemake --report`."""

import logging

from mindvis.config import resolve
from mindvis.evaluation.report import summarize_results
from mindvis.workflow import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 (snakemake is injected by the script directive)
cfg = resolve(snakemake.config)  # noqa: F821
written = summarize_results(cfg.results_root, cfg.tracking.tracking_uri, cfg.tracking.experiment)
logging.getLogger("report_summary").info("wrote %s", written)
