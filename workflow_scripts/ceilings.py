"""ceilings: the per-stage ceiling images of one subject (first stage, class-conditioned LDM) for evaluate."""

from pathlib import Path

from mindvis.evaluation.ceilings import write_ceiling_images
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    inputs = snakemake.input  # noqa: F821
    summary = write_ceiling_images(inputs.generated, Path(inputs.samples).parent, inputs.model[0],
                                   inputs.ldm[0] if inputs.ldm else None,
                                   inputs.class_index[0] if inputs.class_index else None,
                                   cfg.stage_b.sampling, cfg.seed, snakemake.output.ceilings,  # noqa: F821
                                   device=cfg.evaluation.device)
    if run is not None:
        run.log_metrics({"n_class_conditioned": summary["n_class_conditioned"], "seconds": summary["seconds"]})
