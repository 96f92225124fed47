"""Evaluation job: score one subject's generated images against ridge baselines and chance (the `evaluate` rule).

`evaluate_subject` reads the generation job's samples.npz (`samples` uint8 (N, K, H, W, 3), `ground_truth` uint8
(N, H, W, 3), `stimulus_id` (N,), `sample_id` (N,) = rows of the subject's fmri.npy) and the subject's preprocessed
directory (mindvis.evaluation.inputs), scores every method (mindvis.evaluation.scoring), draws the figures
(mindvis.evaluation.figures) and writes the four files of `EvaluationOutputs` (all together, atomically):

    metrics.json       {"n_way": n, "n_samples": K, "n_test": N, "n_train": ridge training rows,
                        "mindvis": {metric: value}, "baseline_ridge": {metric: value},
                        "baseline_ridge_retrieval": {metric: value}   (only when a classifier is available),
                        "chance": {metric: value}, "skipped": {metric: reason},
                        "fid_n_images": {method: generated images in its FID} (only when FID ran),
                        "baselines": {method: what it is}, "higher_is_better": {metric: bool},
                        "classifier": what scored the n-way metric (null = none),
                        "ceilings": {stage: {"top1_nway_mean", "pixcorr", "n_images"}, "skipped": {stage: reason}}
                                      (only with the ceilings rule's images; mindvis.evaluation.ceilings)}
                       Metric names are mindvis.evaluation.metrics.METRIC_NAMES; a metric is in "skipped" (with
                       the reason) when its network is not configured or it cannot run on this many images.
    per_image.csv      one row per method, test stimulus and sample: pixcorr, ssim, the pairwise identification
                       fractions, n-way top-1 hit rate and classes. Column means over a method's rows equal its
                       metrics.json values.
    comparison.png     ground truth | the K MinD-Vis samples | ridge pixels | ridge retrieval, one row per stimulus
    metrics_chart.png  one panel per metric: MinD-Vis against both baselines, chance as a dashed line

Methods: `mindvis` = the samples; `baseline_ridge` = ridge regression from the subject's train fMRI to 32x32 px
images (cfg.baselines), upsampled; `baseline_ridge_retrieval` = ridge regression to the n-way classifier's logits,
then the train stimulus with the most correlated logits (a retrieval: it can only show training images).
Chance: n-way top-1 1/n, two-way identification 1/2, pixcorr / ssim / correlation distances the metric on a seeded
shuffled pairing of the ground truths; FID compares sets, so it has no chance level.

The n of the n-way metric is min(evaluation.n_way, the classifier's number of classes) (the demo classifier has
130 classes, ImageNet's 1000); metrics.json reports the n used. Everything is seeded by evaluation.seed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from mindvis.config.evaluation import EvaluationConfig  # noqa: E402
from mindvis.evaluation.baselines import ridge_pixel_baseline, ridge_retrieval_baseline  # noqa: E402
from mindvis.evaluation.ceilings import read_ceiling_images  # noqa: E402
from mindvis.evaluation.figures import comparison_grid, metrics_chart  # noqa: E402
from mindvis.evaluation.inputs import (  # noqa: E402
    ClassifierChoice,
    GeneratedSamples,
    RidgeData,
    classifier_config,
    effective_n_way,
    load_classifier,
    read_samples,
    ridge_inputs,
)
from mindvis.evaluation.metrics import HIGHER_IS_BETTER  # noqa: E402
from mindvis.evaluation.networks import ImageClassifier, check_weights, load_networks  # noqa: E402
from mindvis.evaluation.scoring import (  # noqa: E402
    METHODS,
    MINDVIS,
    RETRIEVAL,
    RIDGE,
    MethodScores,
    ceiling_scores,
    chance_levels,
    score_methods,
)
from mindvis.io import atomic_outputs  # noqa: E402
from mindvis.paths import EVAL_FILES  # noqa: E402

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationOutputs:
    """Where evaluate_subject writes (the evaluate rule's outputs, same names; contents in the module docstring)."""

    metrics: Path
    per_image: Path
    comparison: Path
    chart: Path

    @classmethod
    def in_dir(cls, directory: str | os.PathLike[str]) -> EvaluationOutputs:
        """The workflow's file names (mindvis.paths.EVAL_FILES) in `directory`."""
        return cls(**{f.name: Path(directory, EVAL_FILES[f.name]) for f in dataclasses.fields(cls)})


def evaluate_subject(samples_npz: str | os.PathLike[str], subject_dir: str | os.PathLike[str],
                     outputs: EvaluationOutputs, cfg: EvaluationConfig, *, dataset: str, subject: str,
                     classifier_path: str | os.PathLike[str] | None = None,
                     ceilings_npz: str | os.PathLike[str] | None = None, run: Any = None) -> dict[str, Any]:
    """Score one subject's generated images, the two ridge baselines and chance; write the files of the module
    docstring to `outputs`.

    Args:
        samples_npz: the generate rule's samples.npz.
        subject_dir: the subject's preprocessed directory (its train split fits the baselines).
        outputs: where metrics.json, per_image.csv, comparison.png and metrics_chart.png go.
        cfg: the evaluation config (metric weights, n-way protocol, pixel size, device, seed, baselines).
        dataset, subject: whose samples these are (the chart's title).
        classifier_path: the n-way classifier: a demo_classifier output directory (or its model.safetensors), or
            a torchvision state dict of cfg.classifier_arch; None = cfg.weights.classifier (None there too: the
            n-way metric and the retrieval baseline are skipped).
        ceilings_npz: the ceilings rule's images (mindvis.evaluation.ceilings); None = no `ceilings` section.
        run: optional mindvis.tracking.JobRun: flattened metrics, the table, the grid and the chart.
    Returns:
        the metrics.json document.
    """
    started = time.perf_counter()
    cfg, demo_classifier = classifier_config(cfg, classifier_path)
    check_weights(cfg)  # a wrong weight file fails here, before anything expensive
    generated = read_samples(samples_npz)
    data = ridge_inputs(subject_dir, generated)
    networks = load_networks(cfg)
    choice = load_classifier(cfg, demo_classifier, networks.classifier)
    cfg = dataclasses.replace(cfg, n_way=effective_n_way(cfg, choice.classifier, generated.ground_truth))
    n, k = generated.samples.shape[:2]
    log.info("evaluating %d test stimuli x %d samples (%d-way, classifier: %s)", n, k, cfg.n_way,
             choice.description or "none")

    reconstructions, descriptions = method_reconstructions(generated, data, cfg, choice.classifier)
    scores = score_methods(reconstructions, generated, cfg, choice, networks)
    chance = chance_levels(generated.ground_truth, cfg, networks)  # reported for the computed metrics only
    ceilings = None if ceilings_npz is None else ceiling_scores(
        *read_ceiling_images(ceilings_npz, n), generated.ground_truth, cfg, choice.classifier, scores.values[MINDVIS])
    document = metrics_document(cfg, generated, data, scores, chance, ceilings, descriptions, choice)

    grid = comparison_grid(generated, {m: r for m, r in reconstructions.items() if m != MINDVIS})
    chart = metrics_chart(document, title=f"{dataset} {subject}")
    write_outputs(outputs, document, scores.per_image, grid, chart)
    seconds = time.perf_counter() - started
    if run is not None:
        _log_to_run(run, document, scores.per_image, grid, chart, seconds)
    plt.close(chart)
    log.info("evaluation written to %s in %.1f s: MinD-Vis %s", outputs.metrics, seconds,
             {name: round(v, 4) for name, v in document[MINDVIS].items()})
    return document


def method_reconstructions(generated: GeneratedSamples, data: RidgeData, cfg: EvaluationConfig,
                           classifier: ImageClassifier | None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """({method: uint8 (N, K_method, H, W, 3)}, {baseline: what it is, for metrics.json "baselines"}).

    MinD-Vis' K samples, the ridge pixel baseline and, with an n-way classifier (it retrieves by the classifier's
    logits), the ridge retrieval baseline (one reconstruction each).
    """
    reconstructions = {MINDVIS: generated.samples}
    reconstructions[RIDGE] = ridge_pixel_baseline(data.train_fmri, data.train_images, data.test_fmri, cfg,
                                                  data.groups)
    descriptions = {RIDGE: f"ridge regression from the train fMRI ({len(data.train_fmri)} rows) to "
                           f"{cfg.baselines.pixels_px}x{cfg.baselines.pixels_px} px RGB images, upsampled"}
    if classifier is not None:
        reconstructions[RETRIEVAL] = ridge_retrieval_baseline(
            data.train_fmri, data.train_images, data.test_fmri, classifier.logits, cfg, groups=data.groups)
        descriptions[RETRIEVAL] = ("ridge regression from the train fMRI to the n-way classifier's logits, then the "
                                   "train stimulus whose logits correlate best (retrieval)")
    else:
        descriptions[RETRIEVAL] = "not computed: no n-way classifier configured"
    return reconstructions, descriptions


def metrics_document(cfg: EvaluationConfig, generated: GeneratedSamples, data: RidgeData, scores: MethodScores,
                     chance: dict[str, float], ceilings: dict[str, Any] | None, descriptions: dict[str, str],
                     choice: ClassifierChoice) -> dict[str, Any]:
    """The metrics.json document (module docstring), keys in its order; chance only for the computed metrics."""
    n, k = generated.samples.shape[:2]
    document: dict[str, Any] = {"n_way": cfg.n_way, "n_samples": k, "n_test": n, "n_train": len(data.train_fmri),
                                **scores.values}
    document["chance"] = {name: float(chance[name]) for name in scores.values[MINDVIS] if name in chance}
    document["skipped"] = dict(sorted(scores.skipped.items()))
    if scores.fid_n_images:
        document["fid_n_images"] = {**scores.fid_n_images, "ground_truth": n}
    if ceilings is not None:
        document["ceilings"] = ceilings
    document["baselines"] = descriptions
    document["higher_is_better"] = dict(HIGHER_IS_BETTER)
    document["classifier"] = choice.description
    return document


def write_outputs(outputs: EvaluationOutputs, document: dict[str, Any], per_image: pd.DataFrame, grid: np.ndarray,
                  chart: plt.Figure) -> None:
    """Write the four outputs together: all of them, or (on a failure) none."""
    with atomic_outputs(outputs.metrics, outputs.per_image, outputs.comparison, outputs.chart) as paths:
        metrics_json, per_image_csv, comparison_png, chart_png = paths
        metrics_json.write_text(json.dumps(document, indent=2) + "\n")
        per_image.to_csv(per_image_csv, index=False, float_format="%.6g")
        Image.fromarray(grid).save(comparison_png)
        chart.savefig(chart_png, dpi=110)


def _log_to_run(run: Any, document: dict[str, Any], per_image: pd.DataFrame, grid: np.ndarray,
                chart: plt.Figure, seconds: float) -> None:
    """The flattened metrics ("<method>/<metric>", "ceilings/<stage>/<metric>"), the document, table and figures."""
    flat = {key: document[key] for key in ("n_way", "n_samples", "n_test", "n_train")}
    for group in (*METHODS, "chance"):
        flat.update({f"{group}/{name}": value for name, value in document.get(group, {}).items()})
    for stage, values in document.get("ceilings", {}).items():
        if stage != "skipped":
            flat.update({f"ceilings/{stage}/{name}": value for name, value in values.items()})
    flat["seconds"] = seconds
    run.log_params({"evaluation.classifier": document["classifier"] or "none",
                    "evaluation.skipped": ", ".join(document["skipped"]) or "none"})
    run.log_metrics(flat)
    # Artifact names are the workflow's file names wherever `outputs` put the files.
    run.log_dict(document, f"evaluation/{EVAL_FILES['metrics']}")
    run.log_table(per_image, "evaluation/per_image.json")
    run.log_image(grid, f"evaluation/{EVAL_FILES['comparison']}")
    run.log_figure(chart, f"evaluation/{EVAL_FILES['chart']}")
