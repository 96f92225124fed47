"""stage_a_pretrain: A1 masked brain modeling on the preprocessed subjects (mindvis.training.stage_a)."""

from pathlib import Path

from mindvis.training.stage_a import train_stage_a_pretrain
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    subject_dirs = sorted({str(Path(f).parent) for f in snakemake.input})  # noqa: F821
    train_stage_a_pretrain(subject_dirs, Path(snakemake.output.model).parent, cfg.stage_a, cfg.trainer,  # noqa: F821
                           snakemake.params.resume_dir, run=run)  # noqa: F821
