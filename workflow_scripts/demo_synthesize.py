"""demo_synthesize: write the embedded demo's raw files (mindvis.demo.synthesize) of the datasets it declares."""

from mindvis.demo import datasets_of, synthesize
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    written = synthesize(cfg.demo_data, datasets_of(cfg.demo_data.root, snakemake.output))  # noqa: F821
    run.log_metrics({"n_files": len(written)})
