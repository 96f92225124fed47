"""evaluate: score one subject's generated images against the ridge baselines and chance (metrics.json)."""

from pathlib import Path

from mindvis.evaluation.evaluate import evaluate_subject
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    classifier = snakemake.input.classifier  # noqa: F821
    evaluate_subject(snakemake.input.generated, Path(snakemake.input.samples).parent,  # noqa: F821
                     Path(snakemake.output.metrics).parent, cfg.evaluation,  # noqa: F821
                     classifier[0] if classifier else None,
                     ceilings_npz=snakemake.input.ceilings, run=run)  # noqa: F821
