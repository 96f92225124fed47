"""stage_a_finetune: A2 tuning of the Stage A model on one target subject's test fMRI."""

from pathlib import Path

from mindvis import paths
from mindvis.training.launch import launch
from mindvis.training.stage_a import train_stage_a_finetune
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    launch(train_stage_a_finetune,
           {"subject_dir": Path(snakemake.input.samples).parent, "init_checkpoint": snakemake.input.init[0],  # noqa: F821
            "out_dir": Path(snakemake.output.model).parent, "cfg": cfg.stage_a,  # noqa: F821
            "resume_dir": snakemake.params.resume_dir, "dataset": snakemake.wildcards.dataset},  # noqa: F821
           cfg.trainer, run, spec_dir=paths.launch_dir(cfg.results_root))
