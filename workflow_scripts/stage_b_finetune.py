"""stage_b_finetune: fine-tune the fMRI-conditioned LDM on one target subject's training pairs."""

from pathlib import Path

from mindvis import paths
from mindvis.training.launch import launch
from mindvis.training.stage_b import train_stage_b
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    inputs = snakemake.input  # noqa: F821
    launch(train_stage_b,
           {"subject_dir": Path(inputs.samples).parent, "encoder_checkpoint": Path(inputs.encoder).parent,
            "pretrained_ldm": inputs.ldm[0], "out_dir": Path(snakemake.output.model).parent,  # noqa: F821
            "cfg": cfg.stage_b, "resume_dir": snakemake.params.resume_dir,  # noqa: F821
            "dataset": snakemake.wildcards.dataset},  # noqa: F821
           cfg.trainer, run, spec_dir=paths.launch_dir(cfg.results_root))
