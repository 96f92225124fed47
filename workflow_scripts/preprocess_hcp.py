"""preprocess_hcp: one HCP subject's raw files -> the preprocessed-data contract."""

from pathlib import Path

from mindvis.preprocess import hcp
from mindvis.workflow import job, log_preprocessed

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    subject = snakemake.wildcards.subject  # noqa: F821
    out_dir = Path(snakemake.output.samples).parent  # noqa: F821
    result = hcp.preprocess_subject(cfg.raw_root, subject, cfg.preprocess.hcp, out_dir)
    log_preprocessed(run, result, out_dir, name=f"HCP/{subject}")
