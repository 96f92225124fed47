"""Scoring reconstructions with the metrics of mindvis.evaluation.metrics: per image, in aggregate, against chance.

`per_image_table` holds the per-image values of the pixel and n-way metrics and `table_aggregates` derives their
metrics.json values from it (the table is built once; every aggregate comes from it); the network metrics
(two-way identification, correlation distances, FID) compare feature sets and are added by `score_reconstructions`.
`score_methods` scores each method of the evaluation job (MinD-Vis and the baselines) on the same test images,
`chance_levels` gives each metric's chance level and `ceiling_scores` the per-stage ceilings section.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mindvis.config.evaluation import EvaluationConfig
from mindvis.evaluation.ceilings import STAGES
from mindvis.evaluation.fid import frechet_distance
from mindvis.evaluation.inputs import ClassifierChoice, GeneratedSamples
from mindvis.evaluation.metrics import (
    METRIC_NAMES,
    TWO_WAY_METRICS,
    as_uint8_images,
    as_uint8_samples,
    check_pairing,
    mean_correlation_distance,
    mse_matrix,
    nway_top1,
    nway_top1_accuracy,
    pairwise_identification,
    pcc_matrix,
    pixcorr,
    shuffled_pairing,
    ssim_gray,
    ssim_matrix,
    two_way_identification,
)
from mindvis.evaluation.networks import FeatureNetwork, ImageClassifier, MetricNetworks, load_networks

log = logging.getLogger(__name__)

# The methods of the evaluation job, as metrics.json names them: the model's samples and the two ridge baselines.
MINDVIS = "mindvis"
RIDGE = "baseline_ridge"
RETRIEVAL = "baseline_ridge_retrieval"
METHODS = (MINDVIS, RIDGE, RETRIEVAL)

# (network attribute, output layer) of each two-way identification metric.
_IDENTIFICATION_FEATURES = {
    "alexnet2": ("alexnet", "features.4"),
    "alexnet5": ("alexnet", "features.11"),
    "inception": ("inception", "pool2048"),
    "clip": ("clip", "embedding"),
}
_DISTANCE_FEATURES = {"effnet_dist": ("effnet", "avgpool"), "swav_dist": ("swav", "avgpool")}
_FID_FEATURES = {"fid": "pool2048", "fid64": "pool64"}
# The pairwise identification metrics of the per-image table: (N, N) matrix function, higher is better.
_PAIRWISE_PIXEL_METRICS: dict[str, tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], bool]] = {
    "pairwise_mse": (mse_matrix, False),
    "pairwise_pcc": (pcc_matrix, True),
    "pairwise_ssim": (ssim_matrix, True),
}


# -------------------------------------------------------------------------------- one set of reconstructions

def per_image_table(recons: np.ndarray, gts: np.ndarray, cfg: EvaluationConfig,
                    classifier: ImageClassifier | None = None,
                    class_names: tuple[str, ...] | None = None,
                    gt_probabilities: np.ndarray | None = None) -> pd.DataFrame:
    """Per reconstruction, the per-image values behind the pixel and n-way metrics (`table_aggregates` averages them).

    Args:
        recons: uint8 (N, K, H, W, 3); gts: uint8 (N, H, W, 3).
        cfg: n_way, n_trials, pixel_metric_px and seed are read.
        classifier: the n-way classifier (None: no n-way columns).
        class_names: names of the classifier's outputs (optional, for readable classes).
        gt_probabilities: (N, C) the classifier's scores of `gts` when already computed (a job scoring several
            methods against the same ground truth classifies it once); None = classify `gts` here.
    Returns:
        one row per (item, sample), items in order: item, sample, pixcorr, ssim, pairwise_mse, pairwise_pcc,
        pairwise_ssim (fraction of other ground truths beaten; absent below 2 items), and with a classifier
        top1_nway (fraction of n-way trials won; trials drawn row by row from cfg.seed), true_class (the
        classifier's top-1 on the ground truth), predicted_class.
    """
    n, k = recons.shape[:2]
    px = cfg.pixel_metric_px
    columns: dict[str, np.ndarray] = {
        "item": np.repeat(np.arange(n), k),
        "sample": np.tile(np.arange(k), n),
        "pixcorr": np.array([pixcorr(recons[i, s][None], gts[i][None], px) for i in range(n) for s in range(k)]),
        "ssim": np.array([ssim_gray(recons[i, s][None], gts[i][None], px) for i in range(n) for s in range(k)]),
    }
    if n >= 2:
        log.info("pairwise identification (MSE, PCC, SSIM) over %d images x %d samples", n, k)
        for name, (matrix, higher) in _PAIRWISE_PIXEL_METRICS.items():
            per_sample = np.stack([pairwise_identification(matrix(recons[:, s], gts), higher) for s in range(k)])
            columns[name] = per_sample.T.reshape(-1)  # (K, N) -> rows in (item, sample) order
    if classifier is not None:
        columns.update(_nway_columns(recons, gts, cfg, classifier, class_names, gt_probabilities))
    return pd.DataFrame(columns)


def _nway_columns(recons: np.ndarray, gts: np.ndarray, cfg: EvaluationConfig, classifier: ImageClassifier,
                  class_names: tuple[str, ...] | None, gt_probabilities: np.ndarray | None) -> dict[str, np.ndarray]:
    """per_image_table's top1_nway, true_class and predicted_class columns, (N * K,) each in (item, sample) order."""
    n, k = recons.shape[:2]
    log.info("n-way top-1 (%d-way, %d trials) over %d images x %d samples", cfg.n_way, cfg.n_trials, n, k)
    gt_probs = classifier.probabilities(gts) if gt_probabilities is None else gt_probabilities
    recon_probs = classifier.probabilities(recons.reshape(n * k, *recons.shape[2:]))
    true_classes = np.repeat(np.argmax(gt_probs, axis=1), k)
    name_of = (lambda c: class_names[c]) if class_names else str
    return {"top1_nway": nway_top1_accuracy(recon_probs, true_classes, cfg.n_way, cfg.n_trials,
                                            np.random.default_rng(cfg.seed)),
            "true_class": np.array([name_of(c) for c in true_classes]),
            "predicted_class": np.array([name_of(c) for c in np.argmax(recon_probs, axis=1)])}


def table_aggregates(table: pd.DataFrame) -> dict[str, float]:
    """The metrics a per_image_table holds: means over its rows, and top1_nway_max, the best sample index's mean
    over the test images (as the reference: whole sample sets, not a best sample per image; `nway_top1`)."""
    values = {name: float(table[name].mean()) for name in ("pixcorr", "ssim", *_PAIRWISE_PIXEL_METRICS)
              if name in table}
    if "top1_nway" in table:
        values["top1_nway_mean"] = float(table["top1_nway"].mean())
        values["top1_nway_max"] = float(table.groupby("sample")["top1_nway"].mean().max())
    return values


def score_reconstructions(recons: np.ndarray, gts: np.ndarray, cfg: EvaluationConfig,
                          classifier: ImageClassifier | None = None, networks: MetricNetworks | None = None,
                          class_names: tuple[str, ...] | None = None, gt_probabilities: np.ndarray | None = None,
                          ) -> tuple[pd.DataFrame, dict[str, float], dict[str, str]]:
    """Score reconstructions with every metric whose network is available.

    Args:
        recons: (N, K, H, W, 3) K reconstructions per test image (uint8, or float in [0, 1]).
        gts: (N, H, W, 3) the ground-truth stimuli in the same order.
        cfg: the evaluation config (weights, n-way protocol, pixel size, batch size, device, seed).
        classifier: the n-way classifier; overrides the one loaded from cfg (the demo passes its stand-in).
        networks: already loaded metric networks (default: load_networks(cfg)).
        class_names: names of the classifier's outputs, for the table.
        gt_probabilities: the classifier's scores of `gts`, if already computed (see per_image_table).
    Returns:
        (table, values, skipped): the per_image_table; values maps metric names (METRIC_NAMES) to floats (the
        table's aggregates plus the network metrics), plus `fid_n_images` and `fid64_n_images` (generated images
        scored against the N ground truths); skipped maps each metric that was not computed to the reason.
    """
    recons = as_uint8_samples(recons)
    gts = as_uint8_images(gts, "ground truths")
    check_pairing(recons, gts)
    networks = networks if networks is not None else load_networks(cfg)
    skipped = dict(networks.skipped)
    classifier = classifier or networks.classifier
    if classifier is not None:
        skipped.pop("top1_nway_mean", None)
        skipped.pop("top1_nway_max", None)
    if len(gts) < 2:
        skipped.update({name: "identification needs at least 2 test images" for name in _PAIRWISE_PIXEL_METRICS})
    table = per_image_table(recons, gts, cfg, classifier, class_names, gt_probabilities)
    values = table_aggregates(table)
    values.update(_network_scores(_FeatureCache(recons, gts), networks, skipped))
    return table, values, skipped


def evaluate_all(recons: np.ndarray, gts: np.ndarray, cfg: EvaluationConfig,
                 classifier: ImageClassifier | None = None,
                 networks: MetricNetworks | None = None) -> tuple[dict[str, float], dict[str, str]]:
    """(values, skipped) of `score_reconstructions`, without the per-image table."""
    _, values, skipped = score_reconstructions(recons, gts, cfg, classifier, networks)
    return values, skipped


class _FeatureCache:
    """Features of the reconstructions ({layer: (N, K, D)}) and ground truths ({layer: (N, D)}) per network,
    computed once (FID and the Inception metric share a network when no FID Inception is configured)."""

    def __init__(self, recons: np.ndarray, gts: np.ndarray) -> None:
        self.recons = recons
        self.gts = gts
        self._cache: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}

    def __call__(self, network: FeatureNetwork) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        if network.name not in self._cache:
            n, k = self.recons.shape[:2]
            log.info("features: %s", network.name)
            flat = network(self.recons.reshape(n * k, *self.recons.shape[2:]))
            self._cache[network.name] = ({layer: f.reshape(n, k, -1) for layer, f in flat.items()},
                                         network(self.gts))
        return self._cache[network.name]


def _network_scores(features: _FeatureCache, networks: MetricNetworks, skipped: dict[str, str]) -> dict[str, float]:
    """Two-way identification, correlation distances and FID for the networks that are loaded; adds the reasons
    for metrics that cannot run on this many images to `skipped`."""
    n, k = features.recons.shape[:2]
    values: dict[str, float] = {}
    for name, (attr, layer) in _IDENTIFICATION_FEATURES.items():
        network = getattr(networks, attr)
        if network is None:
            continue
        if n < 2:
            skipped[name] = "identification needs at least 2 test images"
            continue
        recon_f, gt_f = features(network)
        values[name] = float(np.mean([two_way_identification(recon_f[layer][:, s], gt_f[layer]) for s in range(k)]))
    for name, (attr, layer) in _DISTANCE_FEATURES.items():
        network = getattr(networks, attr)
        if network is not None:
            recon_f, gt_f = features(network)
            values[name] = float(np.mean([mean_correlation_distance(recon_f[layer][:, s], gt_f[layer])
                                          for s in range(k)]))
    for name, layer in _FID_FEATURES.items():
        if networks.fid_network is None:
            continue
        if n < 2:
            skipped[name] = "FID needs at least 2 images per set"
            continue
        recon_f, gt_f = features(networks.fid_network)
        values[name] = frechet_distance(recon_f[layer].reshape(n * k, -1), gt_f[layer])
        values[f"{name}_n_images"] = n * k
    return values


# ------------------------------------------------------------------------------------------------- chance

def chance_levels(gts: np.ndarray, cfg: EvaluationConfig, networks: MetricNetworks | None = None) -> dict[str, float]:
    """Chance level of each metric for these ground truths.

    n-way top-1: 1/n; identification metrics: 1/2. PixCorr, SSIM and the correlation distances: the metric on a
    seeded shuffled pairing of the ground truths (each scored against another image of the set). FID compares
    sets, not pairs, so it has no pairing chance level and is omitted; so are the distances whose network is not
    configured. The fixed levels (n-way, two-way identification) are always returned: callers keep the entries of
    the metrics they computed.
    """
    gts = as_uint8_images(gts, "ground truths")
    networks = networks if networks is not None else load_networks(cfg)
    chance = {"top1_nway_mean": 1.0 / cfg.n_way, "top1_nway_max": 1.0 / cfg.n_way}
    chance.update({name: 0.5 for name in TWO_WAY_METRICS})
    shuffled = gts[shuffled_pairing(len(gts), cfg.seed)]
    chance["pixcorr"] = pixcorr(shuffled, gts, cfg.pixel_metric_px)
    chance["ssim"] = ssim_gray(shuffled, gts, cfg.pixel_metric_px)
    for name, (attr, layer) in _DISTANCE_FEATURES.items():
        network: FeatureNetwork | None = getattr(networks, attr)
        if network is not None:
            features = network(gts)[layer]
            chance[name] = mean_correlation_distance(features[shuffled_pairing(len(gts), cfg.seed)], features)
    return chance


# ------------------------------------------------------------------------------- the evaluation job's methods

@dataclass(frozen=True)
class MethodScores:
    """Every method's scores on the same test images (`score_methods`).

    Attributes:
        values: {method: {metric: value}}, metric names of METRIC_NAMES, methods in the order scored.
        per_image: the methods' per_image_tables stacked: method, stimulus_id, sample_id, item, sample, then the
            metric columns.
        skipped: {metric: reason} for MinD-Vis' samples (the metrics without their network or too few images).
        fid_n_images: {method: generated images in its FID}; empty when FID did not run.
    """

    values: dict[str, dict[str, float]]
    per_image: pd.DataFrame
    skipped: dict[str, str]
    fid_n_images: dict[str, int]


def score_methods(reconstructions: dict[str, np.ndarray], generated: GeneratedSamples, cfg: EvaluationConfig,
                  choice: ClassifierChoice, networks: MetricNetworks) -> MethodScores:
    """Score each method's reconstructions (uint8 (N, K_method, H, W, 3), MINDVIS first) against the ground truth.

    The ground truth is classified once for all methods: the n-way metric compares every method with the same
    true classes.
    """
    gt_probabilities = None if choice.classifier is None else choice.classifier.probabilities(generated.ground_truth)
    values, tables, fid_counts, skipped = {}, [], {}, {}
    for method, recons in reconstructions.items():
        log.info("scoring %s", method)
        table, method_values, method_skipped = score_reconstructions(
            recons, generated.ground_truth, cfg, choice.classifier, networks, choice.class_names, gt_probabilities)
        values[method], count = _split_counts(method_values)
        if count is not None:
            fid_counts[method] = count
        if method == MINDVIS:
            skipped = method_skipped
        items = table["item"].to_numpy()
        tables.append(table.assign(method=method, stimulus_id=generated.stimulus_id[items],
                                   sample_id=generated.sample_id[items]))
    per_image = pd.concat(tables, ignore_index=True)
    leading = ["method", "stimulus_id", "sample_id", "item", "sample"]
    per_image = per_image[leading + [c for c in per_image.columns if c not in leading]]
    return MethodScores(values, per_image, skipped, fid_counts)


def _split_counts(values: dict[str, float]) -> tuple[dict[str, float], int | None]:
    """Separate score_reconstructions' FID image counts from the metric values."""
    metrics = {name: float(values[name]) for name in METRIC_NAMES if name in values}
    counts = {values[f"{name}_n_images"] for name in ("fid", "fid64") if f"{name}_n_images" in values}
    return metrics, (int(counts.pop()) if counts else None)


# ---------------------------------------------------------------------------------------- per-stage ceilings

def stage_scores(score: Callable[[np.ndarray, np.ndarray], dict[str, float]], ground_truth: np.ndarray,
                 stages: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """Score each stage's images against their ground truths.

    Args:
        score: (reconstructions (M, K, H, W, 3), ground truths (M, H, W, 3)) -> {metric: value}.
        ground_truth: uint8 (N, H, W, 3), the test images.
        stages: stage name -> (rows (M,) of the test images it covers, reconstructions (M, K, H, W, 3)).
    Returns:
        {stage: {metric: value, ..., "n_images": M}} in STAGES order (stages covering no image are left out).
    """
    result = {}
    for name in STAGES:
        if name not in stages:
            continue
        rows, recons = stages[name]
        if len(rows) == 0:
            continue
        result[name] = {**score(recons, ground_truth[rows]), "n_images": int(len(rows))}
    return result


def ceiling_scores(stages: dict[str, tuple[np.ndarray, np.ndarray]], skipped: dict[str, str],
                   ground_truth: np.ndarray, cfg: EvaluationConfig, classifier: ImageClassifier | None,
                   mindvis_scores: dict[str, float]) -> dict[str, Any]:
    """The `ceilings` section: n-way top-1 (mean over samples) and PixCorr of each stage (mindvis.evaluation.ceilings),
    each on the test images it covers, plus the stages skipped and why.

    Args:
        stages, skipped: read_ceiling_images' ({stage: (test rows (M,), images (M, K, H, W, 3))}, {stage: reason}).
        ground_truth: uint8 (N, H, W, 3), the test images (the ground_truth stage scores them against themselves).
        mindvis_scores: the metrics.json "mindvis" values: stage (d) is MinD-Vis' own scores, not computed again.
    """
    n = len(ground_truth)
    stages = {"ground_truth": (np.arange(n), ground_truth[:, None]), **stages}

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
    return {**stage_scores(score, ground_truth, stages), MINDVIS: {**own, "n_images": n}, "skipped": skipped}
