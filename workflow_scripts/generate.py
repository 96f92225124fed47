"""generate: K images per held-out (averaged test) fMRI of one subject from its Stage B model."""

from pathlib import Path

from mindvis.evaluation.generation import generate_subject
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    model = Path(snakemake.input.model[0])  # noqa: F821
    generate_subject(model.parent if model.name == "stage_b.json" else model,
                     Path(snakemake.input.samples).parent, Path(snakemake.output.samples).parent,  # noqa: F821
                     cfg.stage_b.sampling, cfg.seed, cfg.evaluation.device, run=run)
