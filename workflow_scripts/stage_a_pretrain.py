"""stage_a_pretrain: A1 masked brain modeling on the preprocessed subjects (mindvis.training.stage_a)."""

from pathlib import Path

from mindvis import paths
from mindvis.training.launch import launch
from mindvis.training.stage_a import train_stage_a_pretrain
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    launch(train_stage_a_pretrain,
           {"inputs": paths.subject_dirs_by_dataset(snakemake.input),  # noqa: F821
            "out_dir": Path(snakemake.output.model).parent, "cfg": cfg.stage_a,  # noqa: F821
            "resume_dir": snakemake.params.resume_dir},  # noqa: F821
           cfg.trainer, run, spec_dir=paths.launch_dir(cfg.results_root))
