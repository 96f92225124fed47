"""generate: K images per held-out (averaged test) fMRI of one subject from its Stage B model."""

from pathlib import Path

from mindvis.evaluation.generation import generate_subject
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    generate_subject(snakemake.input.model[0], Path(snakemake.input.samples).parent,  # noqa: F821
                     Path(snakemake.output.samples).parent, cfg.stage_b.sampling, cfg.seed,  # noqa: F821
                     cfg.evaluation.device, run=run)
