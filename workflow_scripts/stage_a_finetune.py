"""stage_a_finetune: A2 tuning of the Stage A model on one target subject's test fMRI."""

from pathlib import Path

from mindvis.training.stage_a import train_stage_a_finetune
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    train_stage_a_finetune(Path(snakemake.input.samples).parent, snakemake.input.init,  # noqa: F821
                           Path(snakemake.output.model).parent, cfg.stage_a, cfg.trainer,  # noqa: F821
                           snakemake.params.resume_dir, run=run)  # noqa: F821
