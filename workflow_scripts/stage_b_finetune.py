"""stage_b_finetune: fine-tune the fMRI-conditioned LDM on one target subject's training pairs."""

from pathlib import Path

from mindvis.training.stage_b import train_stage_b
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    inputs = snakemake.input  # noqa: F821
    train_stage_b(Path(inputs.samples).parent, Path(inputs.encoder).parent, inputs.ldm,
                  Path(snakemake.output.model).parent, cfg.stage_b, cfg.trainer,  # noqa: F821
                  snakemake.params.resume_dir, run=run)  # noqa: F821
