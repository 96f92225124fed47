"""Evaluation job: score one subject's generated images against ridge baselines and chance (the `evaluate` rule).

`evaluate_subject` reads the generation job's samples.npz (`samples` uint8 (N, K, H, W, 3), `ground_truth` uint8
(N, H, W, 3), `stimulus_id` (N,), `sample_id` (N,) = rows of the subject's fmri.npy) and the subject's preprocessed
directory, and writes to `out_dir` (all together, atomically):

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
from mindvis.data.contract import read_subject  # noqa: E402
from mindvis.data.pairs import train_rows  # noqa: E402
from mindvis.errors import InputDataError  # noqa: E402
from mindvis.evaluation.baselines import ridge_pixel_baseline, ridge_retrieval_baseline  # noqa: E402
from mindvis.evaluation.ceilings import read_ceiling_images, stage_scores  # noqa: E402
from mindvis.figures import labelled_grid  # noqa: E402
from mindvis.evaluation.metrics import (  # noqa: E402
    HIGHER_IS_BETTER,
    METRIC_NAMES,
    as_uint8_images,
    as_uint8_samples,
    chance_levels,
    nway_top1,
    pixcorr,
    score_reconstructions,
)
from mindvis.devices import resolve_device  # noqa: E402
from mindvis.evaluation.networks import ImageClassifier, check_weights, load_networks  # noqa: E402
from mindvis.io import atomic_directory, load_npz  # noqa: E402
from mindvis.paths import EVAL_FILES  # noqa: E402
from mindvis.evaluation.demo_classifier import is_demo_classifier, load_demo_classifier  # noqa: E402

log = logging.getLogger(__name__)

SAMPLES_KEYS = ("samples", "ground_truth", "stimulus_id", "sample_id")
METRICS_FILE = EVAL_FILES["metrics"]
PER_IMAGE_FILE = EVAL_FILES["per_image"]
COMPARISON_FILE = EVAL_FILES["comparison"]
CHART_FILE = EVAL_FILES["chart"]

MINDVIS = "mindvis"
RIDGE = "baseline_ridge"
RETRIEVAL = "baseline_ridge_retrieval"
METHOD_LABELS = {MINDVIS: "MinD-Vis", RIDGE: "ridge (pixels)", RETRIEVAL: "ridge retrieval", "chance": "chance"}
METHOD_COLOURS = {MINDVIS: "tab:blue", RIDGE: "tab:orange", RETRIEVAL: "tab:green"}
GRID_TILE_PX = 96


# ------------------------------------------------------------------------------------------------------ inputs

@dataclass(frozen=True)
class GeneratedSamples:
    """The generation job's output (samples.npz).

    Attributes:
        samples: uint8 (N, K, H, W, 3), K generated images per test stimulus.
        ground_truth: uint8 (N, H, W, 3), the stimuli at the generated size.
        stimulus_id: str (N,).
        sample_id: int64 (N,), the fmri.npy row each test stimulus was generated from.
    """

    samples: np.ndarray
    ground_truth: np.ndarray
    stimulus_id: np.ndarray
    sample_id: np.ndarray


def read_samples(path: str | os.PathLike[str]) -> GeneratedSamples:
    """Read and check samples.npz (see module docstring); InputDataError naming the file when it does not fit."""
    arrays = load_npz(path, SAMPLES_KEYS, "generated samples (samples.npz)")
    try:
        samples = as_uint8_samples(arrays["samples"], "samples")
        ground_truth = as_uint8_images(arrays["ground_truth"], "ground_truth")
    except InputDataError as exc:
        raise InputDataError(exc.problem, path=path, value=exc.value, expected=exc.expected,
                             hint="rerun the generate rule for this subject") from exc
    stimulus_id = np.asarray(arrays["stimulus_id"]).astype(str)
    sample_id = np.asarray(arrays["sample_id"])
    n = len(samples)
    if (ground_truth.shape != (n, *samples.shape[2:]) or stimulus_id.shape != (n,) or sample_id.shape != (n,)
            or not np.issubdtype(sample_id.dtype, np.integer)):
        raise InputDataError("samples.npz arrays do not pair up", path=path,
                             value={k: arrays[k].shape for k in SAMPLES_KEYS},
                             expected="samples (N, K, H, W, 3), ground_truth (N, H, W, 3), stimulus_id (N,), "
                                      "integer sample_id (N,)", hint="rerun the generate rule for this subject")
    return GeneratedSamples(samples, ground_truth, stimulus_id, sample_id.astype(np.int64))


@dataclass(frozen=True)
class RidgeData:
    """What the ridge baselines are fitted on and applied to.

    Attributes:
        train_fmri: float32 (N_train, V), the subject's train rows that show a stimulus.
        train_images: uint8 (N_train, H, W, 3), their stimuli at the generated size.
        groups: str (N_train,), their stimulus ids (cross-validation keeps repeats of an image together).
        test_fmri: float32 (N, V), the rows the samples were generated from.
    """

    train_fmri: np.ndarray
    train_images: np.ndarray
    groups: np.ndarray
    test_fmri: np.ndarray


def ridge_inputs(subject_dir: str | os.PathLike[str], generated: GeneratedSamples) -> RidgeData:
    """The subject's training pairs and the test fMRI of the generated samples, checked against samples.npz."""
    subject = read_subject(subject_dir, mmap=True)
    if subject.stimuli is None:
        raise InputDataError("the subject has no stimulus images", path=subject_dir,
                             expected="a GOD / BOLD5000 subject directory with stimuli.npz")
    n_rows = len(subject.samples)
    if generated.sample_id.min(initial=0) < 0 or generated.sample_id.max(initial=0) >= n_rows:
        raise InputDataError("samples.npz names fMRI rows the subject does not have", path=subject_dir,
                             value=generated.sample_id.tolist()[:5], expected=f"rows 0..{n_rows - 1}",
                             hint="were the samples generated from another subject's directory?")
    subject_ids = subject.samples["stimulus_id"].iloc[generated.sample_id].astype(str).to_numpy()
    mismatched = np.flatnonzero(subject_ids != generated.stimulus_id)
    if len(mismatched):
        i = int(mismatched[0])
        raise InputDataError("samples.npz stimulus ids do not match the subject's rows", path=subject_dir,
                             value={"row": int(generated.sample_id[i]), "samples.npz": generated.stimulus_id[i],
                                    "samples.parquet": subject_ids[i]},
                             expected="the generation job's output for this subject",
                             hint="rerun the generate rule after preprocessing changed")
    rows = train_rows(subject)
    groups = subject.samples["stimulus_id"].iloc[rows].astype(str).to_numpy()
    images = subject.stimuli.images_of(groups, generated.ground_truth.shape[1])  # as generation's ground truth
    return RidgeData(train_fmri=np.asarray(subject.fmri[rows], dtype=np.float32), train_images=images,
                     groups=groups, test_fmri=np.asarray(subject.fmri[generated.sample_id], dtype=np.float32))


# ------------------------------------------------------------------------------------------------ classifier

@dataclass(frozen=True)
class ClassifierChoice:
    """The n-way classifier of this evaluation (None when there is none), its class names and description."""

    classifier: ImageClassifier | None
    class_names: tuple[str, ...] | None
    description: str | None


def classifier_config(cfg: EvaluationConfig, classifier_path: str | os.PathLike[str] | None
                      ) -> tuple[EvaluationConfig, Path | None]:
    """(config, demo classifier directory or None) for an n-way classifier given by path.

    A torchvision state dict (a user's classifier of cfg.classifier_arch) becomes cfg.weights.classifier, so
    check_weights / load_networks treat it as configured; a demo_classifier directory is returned separately (it
    has its own loader) with weights.classifier cleared; None keeps cfg as it is.
    """
    if classifier_path is None:
        return cfg, None
    if is_demo_classifier(classifier_path):
        return dataclasses.replace(cfg, weights=dataclasses.replace(cfg.weights, classifier=None)), Path(
            classifier_path)
    return dataclasses.replace(cfg, weights=dataclasses.replace(cfg.weights, classifier=Path(classifier_path))), None


def load_classifier(cfg: EvaluationConfig, demo_path: Path | None, networks_classifier: ImageClassifier | None
                    ) -> ClassifierChoice:
    """The n-way classifier: the demo classifier at `demo_path`, else the one load_networks(cfg) built, else none."""
    if demo_path is not None:
        loaded = load_demo_classifier(demo_path, resolve_device(cfg.device), cfg.batch_size)
        return ClassifierChoice(loaded.classifier, loaded.class_names,
                                f"demo classifier {demo_path} ({loaded.n_classes} classes)")
    if networks_classifier is not None:
        return ClassifierChoice(networks_classifier, None,
                                f"{cfg.classifier_arch} from {cfg.weights.classifier}")
    return ClassifierChoice(None, None, None)


def effective_n_way(cfg: EvaluationConfig, classifier: ImageClassifier | None, probe: np.ndarray) -> int:
    """min(cfg.n_way, number of classes): the demo classifier has fewer classes than ImageNet's 1000."""
    if classifier is None:
        return cfg.n_way
    n_classes = classifier.logits(probe[:1]).shape[1]
    if n_classes < cfg.n_way:
        log.warning("evaluation.n_way %d > the classifier's %d classes: using %d-way", cfg.n_way, n_classes,
                    n_classes)
    return min(cfg.n_way, n_classes)


# ---------------------------------------------------------------------------------------------------- figures

def comparison_grid(generated: GeneratedSamples, baselines: dict[str, np.ndarray]) -> np.ndarray:
    """uint8 image: one row per stimulus: ground truth, the K samples, then each baseline's reconstruction."""
    k = generated.samples.shape[1]
    tiles = np.concatenate([generated.ground_truth[:, None], generated.samples,
                            *(recon[:, :1] for recon in baselines.values())], axis=1)
    columns = ["ground truth", *(f"MinD-Vis {s + 1}" for s in range(k)),
               *(METHOD_LABELS[name] for name in baselines)]
    return labelled_grid(tiles, list(generated.stimulus_id), columns, GRID_TILE_PX)


def metrics_chart(document: dict[str, Any], title: str = "") -> plt.Figure:
    """One panel per computed metric: a bar per method (MinD-Vis, baselines) and chance as a dashed line."""
    methods = [m for m in (MINDVIS, RIDGE, RETRIEVAL) if m in document]
    names = [name for name in METRIC_NAMES if name in document[MINDVIS]]
    n_cols = min(4, max(1, len(names)))
    n_rows = -(-len(names) // n_cols)
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 2.6 * n_rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):  # more panels than metrics
        values = [document[m].get(name, np.nan) for m in methods]
        ax.bar(range(len(methods)), values, color=[METHOD_COLOURS[m] for m in methods])
        chance = document["chance"].get(name)
        if chance is not None:
            ax.axhline(chance, color="0.3", linestyle="--", linewidth=1, label="chance")
        ax.set_xticks(range(len(methods)), [METHOD_LABELS[m] for m in methods], rotation=20, fontsize=7)
        ax.set_title(f"{name} ({'higher' if HIGHER_IS_BETTER[name] else 'lower'} is better)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    figure.suptitle(title or "reconstruction metrics", fontsize=10)
    figure.tight_layout()
    return figure


# -------------------------------------------------------------------------------------------------- the job

def _split_counts(values: dict[str, float]) -> tuple[dict[str, float], int | None]:
    """Separate score_reconstructions' FID image counts from the metric values."""
    metrics = {name: float(values[name]) for name in METRIC_NAMES if name in values}
    counts = {values[f"{name}_n_images"] for name in ("fid", "fid64") if f"{name}_n_images" in values}
    return metrics, (int(counts.pop()) if counts else None)


def evaluate_subject(samples_npz: str | os.PathLike[str], subject_dir: str | os.PathLike[str],
                     out_dir: str | os.PathLike[str], cfg: EvaluationConfig,
                     classifier_path: str | os.PathLike[str] | None = None,
                     ceilings_npz: str | os.PathLike[str] | None = None, run: Any = None) -> dict[str, Any]:
    """Score one subject's generated images, the two ridge baselines and chance; write the files of the module
    docstring to `out_dir`.

    Args:
        samples_npz: the generate rule's samples.npz.
        subject_dir: the subject's preprocessed directory (its train split fits the baselines).
        out_dir: receives metrics.json, per_image.csv, comparison.png, metrics_chart.png (other files there, e.g.
            the generation job's, are left alone).
        cfg: the evaluation config (metric weights, n-way protocol, pixel size, device, seed, baselines).
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

    reconstructions = {MINDVIS: generated.samples}
    reconstructions[RIDGE] = ridge_pixel_baseline(data.train_fmri, data.train_images, data.test_fmri, cfg,
                                                  data.groups)
    descriptions = {RIDGE: f"ridge regression from the train fMRI ({len(data.train_fmri)} rows) to "
                           f"{cfg.baselines.pixels_px}x{cfg.baselines.pixels_px} px RGB images, upsampled"}
    if choice.classifier is not None:
        reconstructions[RETRIEVAL] = ridge_retrieval_baseline(
            data.train_fmri, data.train_images, data.test_fmri, choice.classifier.logits, cfg, groups=data.groups)
        descriptions[RETRIEVAL] = ("ridge regression from the train fMRI to the n-way classifier's logits, then the "
                                   "train stimulus whose logits correlate best (retrieval)")
    else:
        descriptions[RETRIEVAL] = "not computed: no n-way classifier configured"

    document: dict[str, Any] = {"n_way": cfg.n_way, "n_samples": k, "n_test": n, "n_train": len(data.train_fmri)}
    tables, fid_counts, skipped = [], {}, {}
    gt_probabilities = None if choice.classifier is None else choice.classifier.probabilities(generated.ground_truth)
    for method, recons in reconstructions.items():
        log.info("scoring %s", method)
        table, values, method_skipped = score_reconstructions(recons, generated.ground_truth, cfg, choice.classifier,
                                                              networks, choice.class_names, gt_probabilities)
        document[method], count = _split_counts(values)
        if count is not None:
            fid_counts[method] = count
        if method == MINDVIS:
            skipped = method_skipped
        items = table["item"].to_numpy()
        tables.append(table.assign(method=method, stimulus_id=generated.stimulus_id[items],
                                   sample_id=generated.sample_id[items]))
    chance = chance_levels(generated.ground_truth, cfg, networks)  # reported for the computed metrics only
    document["chance"] = {name: float(chance[name]) for name in document[MINDVIS] if name in chance}
    document["skipped"] = dict(sorted(skipped.items()))
    if fid_counts:
        document["fid_n_images"] = {**fid_counts, "ground_truth": n}
    if ceilings_npz is not None:
        document["ceilings"] = ceiling_scores(ceilings_npz, generated, cfg, choice.classifier, document[MINDVIS])
    document["baselines"] = descriptions
    document["higher_is_better"] = dict(HIGHER_IS_BETTER)
    document["classifier"] = choice.description

    per_image = pd.concat(tables, ignore_index=True)
    leading = ["method", "stimulus_id", "sample_id", "item", "sample"]
    per_image = per_image[leading + [c for c in per_image.columns if c not in leading]]
    grid = comparison_grid(generated, {m: r for m, r in reconstructions.items() if m != MINDVIS})
    chart = metrics_chart(document, title=f"{Path(subject_dir).parent.name} {Path(subject_dir).name}")
    with atomic_directory(out_dir) as tmp:
        (tmp / METRICS_FILE).write_text(json.dumps(document, indent=2) + "\n")
        per_image.to_csv(tmp / PER_IMAGE_FILE, index=False, float_format="%.6g")
        Image.fromarray(grid).save(tmp / COMPARISON_FILE)
        chart.savefig(tmp / CHART_FILE, dpi=110)
    seconds = time.perf_counter() - started
    if run is not None:
        _log_to_run(run, document, per_image, grid, chart, seconds)
    plt.close(chart)
    log.info("evaluation written to %s in %.1f s: MinD-Vis %s", out_dir, seconds,
             {name: round(v, 4) for name, v in document[MINDVIS].items()})
    return document


def ceiling_scores(ceilings_npz: str | os.PathLike[str], generated: GeneratedSamples, cfg: EvaluationConfig,
                   classifier: ImageClassifier | None, mindvis_scores: dict[str, float]) -> dict[str, Any]:
    """The `ceilings` section: n-way top-1 (mean over samples) and PixCorr of each stage (mindvis.evaluation.ceilings),
    each on the test images it covers, plus the stages skipped and why. Stage (d) is MinD-Vis' own scores,
    `mindvis_scores` (the metrics.json "mindvis" values), not computed again."""
    stages, skipped = read_ceiling_images(ceilings_npz, len(generated.ground_truth))
    n = len(generated.ground_truth)
    stages = {"ground_truth": (np.arange(n), generated.ground_truth[:, None]), **stages}

    def score(recons: np.ndarray, gts: np.ndarray) -> dict[str, float]:
        m, k = recons.shape[:2]
        values = {"pixcorr": float(np.mean([pixcorr(recons[:, s], gts, cfg.pixel_metric_px) for s in range(k)]))}
        if classifier is not None:
            recon_probs = classifier.probabilities(recons.reshape(m * k, *recons.shape[2:])).reshape(m, k, -1)
            values["top1_nway_mean"] = nway_top1(classifier.probabilities(gts), recon_probs, cfg.n_way,
                                                 cfg.n_trials, cfg.seed)[0]
        return values

    log.info("scoring the per-stage ceilings: %s", ", ".join(stages))
    own = {name: mindvis_scores[name] for name in ("pixcorr", "top1_nway_mean") if name in mindvis_scores}
    return {**stage_scores(score, generated.ground_truth, stages), MINDVIS: {**own, "n_images": n},
            "skipped": skipped}


def _log_to_run(run: Any, document: dict[str, Any], per_image: pd.DataFrame, grid: np.ndarray,
                chart: plt.Figure, seconds: float) -> None:
    flat = {key: document[key] for key in ("n_way", "n_samples", "n_test", "n_train")}
    for group in (MINDVIS, RIDGE, RETRIEVAL, "chance"):
        flat.update({f"{group}/{name}": value for name, value in document.get(group, {}).items()})
    for stage, values in document.get("ceilings", {}).items():
        if stage != "skipped":
            flat.update({f"ceilings/{stage}/{name}": value for name, value in values.items()})
    flat["seconds"] = seconds
    run.log_params({"evaluation.classifier": document["classifier"] or "none",
                    "evaluation.skipped": ", ".join(document["skipped"]) or "none"})
    run.log_metrics(flat)
    run.log_dict(document, f"evaluation/{METRICS_FILE}")
    run.log_table(per_image, "evaluation/per_image.json")
    run.log_image(grid, f"evaluation/{COMPARISON_FILE}")
    run.log_figure(chart, f"evaluation/{CHART_FILE}")
