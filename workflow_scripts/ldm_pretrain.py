"""ldm_pretrain (demo): train the tiny label-conditioned LDM standing in for the ImageNet label2img model."""

from pathlib import Path

from mindvis.training.ldm_pretrain import train_demo_ldm
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    train_demo_ldm(cfg.demo_data, cfg.stage_b, cfg.trainer,
                   Path(snakemake.output.ckpt).parent, snakemake.params.resume_dir, run=run)  # noqa: F821
