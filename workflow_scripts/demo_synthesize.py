"""demo_synthesize: write the embedded demo's raw files (mindvis.demo.synthesize)."""

from mindvis.demo import synthesize
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    written = synthesize(cfg.demo_data, list(cfg.datasets))
    run.log_metrics({"n_files": len(written)})
