"""generate: K images per held-out (averaged test) fMRI of one subject from its Stage B model."""

from pathlib import Path

from mindvis.evaluation.generation import GenerationOutputs, generate_subject
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    inputs, out = snakemake.input, snakemake.output  # noqa: F821
    generate_subject(inputs.model[0], Path(inputs.samples).parent,
                     GenerationOutputs(Path(out.samples), Path(out.images), Path(out.grid)),
                     cfg.stage_b.sampling, cfg.seed, cfg.evaluation.device, run=run)
