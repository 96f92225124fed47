"""demo_classifier (demo): the small classifier that plays the ImageNet classifier's part in the n-way metric."""

from pathlib import Path

from mindvis.training.demo_classifier import train_demo_classifier
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    train_demo_classifier(cfg.demo_data, cfg.preprocess.image_size, Path(snakemake.output.model).parent,  # noqa: F821
                          cfg.evaluation.demo_classifier, cfg.trainer, snakemake.params.resume_dir,  # noqa: F821
                          run=run)
