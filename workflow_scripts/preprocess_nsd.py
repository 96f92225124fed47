"""preprocess_nsd: one NSD subject's release files -> the preprocessed-data contract, session by session."""

from pathlib import Path

from mindvis.preprocess import nsd
from mindvis.workflow import job, log_preprocessed

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    subject = snakemake.wildcards.subject  # noqa: F821
    out_dir = Path(snakemake.output.samples).parent  # noqa: F821
    result = nsd.preprocess_subject(cfg.raw_root, subject, cfg.preprocess.nsd, cfg.preprocess.image_size, out_dir)
    log_preprocessed(run, result, out_dir, name=f"NSD/{subject}")
