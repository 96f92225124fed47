"""evaluate: score one subject's generated images against the ridge baselines and chance (metrics.json)."""

from pathlib import Path

from mindvis.evaluation.evaluate import EvaluationOutputs, evaluate_subject
from mindvis.workflow import job

with job(snakemake) as (cfg, run):  # noqa: F821 (snakemake is injected by the script directive)
    inputs, out, wildcards = snakemake.input, snakemake.output, snakemake.wildcards  # noqa: F821
    outputs = EvaluationOutputs(Path(out.metrics), Path(out.per_image), Path(out.comparison), Path(out.chart))
    evaluate_subject(inputs.generated, Path(inputs.samples).parent, outputs, cfg.evaluation,
                     dataset=wildcards.dataset, subject=wildcards.subject,
                     classifier_path=inputs.classifier[0] if inputs.classifier else None,
                     ceilings_npz=inputs.ceilings, run=run)
