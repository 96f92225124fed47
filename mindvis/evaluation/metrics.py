"""Reconstruction metrics: the MinD-Vis protocol (n-way top-1, pairwise identification by MSE/PCC/SSIM) and the NSD
papers' suite (PixCorr, SSIM, two-way identification with AlexNet/Inception/CLIP features, EfficientNet/SwAV
correlation distance, FID), with chance levels.

Images are uint8 (N, H, W, 3) (or float in [0, 1], converted); reconstructions carry K samples per test image,
(N, K, H, W, 3). Per-sample metrics are computed for each sample index k against all N ground truths and averaged
over samples (the MinD-Vis evaluation averages its pairwise scores over samples the same way); n-way top-1 is
reported as the MinD-Vis evaluation does: for each sample index k the mean accuracy over the test images, then the
mean (`top1_nway_mean`) and the max (`top1_nway_max`) of these K values. The keys of `METRIC_NAMES` are the keys of
metrics.json.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import uniform_filter1d
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity
from torchvision.transforms.v2 import functional as TF

from mindvis.config.evaluation import EvaluationConfig
from mindvis.errors import ConfigError, InputDataError
from mindvis.evaluation.fid import frechet_distance
from mindvis.evaluation.networks import FeatureNetwork, ImageClassifier, MetricNetworks, load_networks

log = logging.getLogger(__name__)

METRIC_NAMES: tuple[str, ...] = (
    "top1_nway_mean", "top1_nway_max", "pairwise_mse", "pairwise_pcc", "pairwise_ssim", "pixcorr", "ssim",
    "alexnet2", "alexnet5", "inception", "clip", "effnet_dist", "swav_dist", "fid", "fid64",
)
# Direction of each metric: distances (and FID) are better when lower.
HIGHER_IS_BETTER: dict[str, bool] = {name: name not in ("effnet_dist", "swav_dist", "fid", "fid64")
                                     for name in METRIC_NAMES}
# Identification metrics whose chance level is 1/2 by construction.
TWO_WAY_METRICS = ("pairwise_mse", "pairwise_pcc", "pairwise_ssim", "alexnet2", "alexnet5", "inception", "clip")

# (network attribute, output layer) of each two-way identification metric.
_IDENTIFICATION_FEATURES = {
    "alexnet2": ("alexnet", "features.4"),
    "alexnet5": ("alexnet", "features.11"),
    "inception": ("inception", "pool2048"),
    "clip": ("clip", "embedding"),
}
_DISTANCE_FEATURES = {"effnet_dist": ("effnet", "avgpool"), "swav_dist": ("swav", "avgpool")}
_FID_FEATURES = {"fid": "pool2048", "fid64": "pool64"}

SSIM_WINDOW_PX = 7  # skimage's default uniform window (the MinD-Vis reference uses the defaults)


# ------------------------------------------------------------------------------------------------ input checks

def as_uint8_images(images: np.ndarray, what: str = "images") -> np.ndarray:
    """Validate an image batch (N, H, W, 3), uint8 or float in [0, 1]; return it as uint8 (floats rounded)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputDataError(f"{what} have the wrong shape", path=what, value=images.shape,
                             expected="(N, H, W, 3) RGB images, channels last")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise InputDataError(f"{what} have an unsupported dtype", path=what, value=str(images.dtype),
                             expected="uint8 in [0, 255] or float in [0, 1]")
    finite = np.isfinite(images)
    if not finite.all():
        raise InputDataError(f"float {what} must be finite", path=what, value=f"{int((~finite).sum())} NaN/inf values",
                             expected="float in [0, 1] (or uint8 in [0, 255])")
    if images.min() < 0.0 or images.max() > 1.0:
        raise InputDataError(f"float {what} must be within [0, 1]", path=what,
                             value=(float(images.min()), float(images.max())),
                             expected="float in [0, 1] (or uint8 in [0, 255])", hint="rescale or clip them first")
    return np.round(images * 255.0).astype(np.uint8)


def as_uint8_samples(recons: np.ndarray, what: str = "reconstructions") -> np.ndarray:
    """Validate reconstructions (N, K, H, W, 3) (a (N, H, W, 3) batch is taken as K = 1); return uint8."""
    recons = np.asarray(recons)
    if recons.ndim == 4:
        recons = recons[:, None]
    if recons.ndim != 5:
        raise InputDataError(f"{what} have the wrong shape", path=what, value=recons.shape,
                             expected="(N, K, H, W, 3): K samples per test image")
    n, k = recons.shape[:2]
    return as_uint8_images(recons.reshape(n * k, *recons.shape[2:]), what).reshape(recons.shape)


def _check_pairing(recons: np.ndarray, gts: np.ndarray) -> None:
    if recons.shape[0] != gts.shape[0] or recons.shape[2:] != gts.shape[1:]:
        raise InputDataError("reconstructions and ground truths do not pair up", path="reconstructions",
                             value={"reconstructions": recons.shape, "ground_truths": gts.shape},
                             expected="(N, K, H, W, 3) and (N, H, W, 3) with the same N, H, W",
                             hint="generate one entry per test image at the stimulus image size")


# ---------------------------------------------------------------------------------- MinD-Vis: n-way top-1

def nway_top1_accuracy(probabilities: np.ndarray, true_classes: np.ndarray, n_way: int, n_trials: int,
                       rng: np.random.Generator) -> np.ndarray:
    """n-way top-1 accuracy of each row of class probabilities, as the MinD-Vis protocol.

    Each trial draws n_way - 1 classes at random (without replacement) from the classes other than the true one;
    a trial is a hit when the true class has a strictly higher probability than all drawn classes. The trial only
    depends on how many drawn classes outrank the true class, so that count is drawn directly from its
    hypergeometric distribution (identical in law to drawing the classes themselves).

    Args:
        probabilities: (M, C) class scores (probabilities or logits: only their order matters).
        true_classes: (M,) index of the true class of each row.
        n_way: classes per trial (2 <= n_way <= C).
        n_trials: trials per row.
        rng: the random generator (seeded by the caller).
    Returns:
        (M,) fraction of hits per row, in [0, 1].
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n_classes = probabilities.shape[1]
    if not 2 <= n_way <= n_classes:
        raise ConfigError("n-way needs at least 2 and at most as many classes as the classifier has",
                          path="evaluation.n_way", value=n_way, expected=f"2..{n_classes}",
                          hint="lower evaluation.n_way (e.g. for the demo's small classifier)")
    true_scores = probabilities[np.arange(len(probabilities)), true_classes]
    # Classes (other than the true one, which never outranks itself) scoring at least as high as the true class.
    outranking = (probabilities >= true_scores[:, None]).sum(axis=1) - 1
    accuracy = np.empty(len(probabilities))
    for row, n_outranking in enumerate(outranking):
        drawn_outranking = rng.hypergeometric(n_outranking, n_classes - 1 - n_outranking, n_way - 1, size=n_trials)
        accuracy[row] = np.mean(drawn_outranking == 0)
    return accuracy


def nway_top1(gt_probabilities: np.ndarray, recon_probabilities: np.ndarray, n_way: int, n_trials: int,
              seed: int) -> tuple[float, float]:
    """MinD-Vis n-way top-1 over K samples: the true class is the classifier's top-1 on the ground truth.

    As the reference's evaluation (`get_eval_metric`): for each sample index k, the n-way accuracy averaged over the
    N test images; then the mean and the max of these K per-index accuracies. (The max is over whole sample sets,
    not a best sample picked per image, which would be higher.)

    Args:
        gt_probabilities: (N, C) classifier scores of the ground-truth images.
        recon_probabilities: (N, K, C) scores of the K reconstructions of each test image.
    Returns:
        (mean over k of the per-index accuracy, max over k of the per-index accuracy).
    """
    n, k, c = recon_probabilities.shape
    true_classes = np.repeat(np.argmax(gt_probabilities, axis=1), k)
    accuracy = nway_top1_accuracy(recon_probabilities.reshape(n * k, c), true_classes, n_way, n_trials,
                                  np.random.default_rng(seed)).reshape(n, k)
    per_index = accuracy.mean(axis=0)  # (K,): accuracy of sample set k over the test images
    return float(per_index.mean()), float(per_index.max())


# ---------------------------------------------------------------- MinD-Vis: pairwise identification (pixels)

def pairwise_identification(scores: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Per reconstruction, the fraction of other ground truths it is strictly closer to its own than to.

    Args:
        scores: (N, N) metric between reconstruction i (row) and ground truth j (column).
        higher_is_better: True for similarities (PCC, SSIM), False for distances (MSE).
    Returns:
        (N,) fractions in [0, 1]; 1/2 expected by chance.
    """
    n = scores.shape[0]
    if n < 2:
        raise ValueError("identification needs at least 2 test images")
    own = np.diag(scores)[:, None]
    wins = scores < own if higher_is_better else scores > own  # the diagonal compares equal: never a win
    return wins.sum(axis=1) / (n - 1)


def _flat64(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float64)


def mse_matrix(recons: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """(N, M) mean squared error in (0..255)^2 units between every reconstruction and every ground truth."""
    r, g = _flat64(recons), _flat64(gts)
    squared = (r**2).sum(axis=1)[:, None] + (g**2).sum(axis=1)[None, :] - 2.0 * r @ g.T
    return np.clip(squared, 0.0, None) / r.shape[1]


def correlation_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) Pearson correlation between the rows of a (N, D) and b (M, D) (constant rows give 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    a_norm = np.linalg.norm(a, axis=1, keepdims=True)
    b_norm = np.linalg.norm(b, axis=1, keepdims=True)
    a = np.divide(a, a_norm, out=np.zeros_like(a), where=a_norm > 0)
    b = np.divide(b, b_norm, out=np.zeros_like(b), where=b_norm > 0)
    return a @ b.T


def pcc_matrix(recons: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """(N, M) Pearson correlation over all pixels and channels between reconstructions and ground truths."""
    return correlation_matrix(_flat64(recons), _flat64(gts))


def _window_mean(x: np.ndarray) -> np.ndarray:
    """Means over every 7x7 window lying inside the image: (..., H, W) -> (..., H - 6, W - 6)."""
    pad = SSIM_WINDOW_PX // 2
    filtered = uniform_filter1d(uniform_filter1d(x, SSIM_WINDOW_PX, axis=-2), SSIM_WINDOW_PX, axis=-1)
    return filtered[..., pad:-pad, pad:-pad]


def ssim_matrix(recons: np.ndarray, gts: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """(N, M) SSIM between every reconstruction and every ground truth, equal to skimage's
    structural_similarity(r, g, data_range=255, channel_axis=-1) with its defaults (7x7 uniform window, sample
    covariance, K1 0.01, K2 0.03, 3-px border excluded, mean over channels).

    skimage filters 5 maps per pair; here the per-image maps (means, variances) are filtered once per image, so a
    pair costs one filtered product.
    """
    if min(recons.shape[1:3]) < SSIM_WINDOW_PX:
        raise InputDataError("images are too small for SSIM's 7x7 window", path="reconstructions",
                             value=recons.shape, expected=f"at least {SSIM_WINDOW_PX}x{SSIM_WINDOW_PX} px")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    cov_norm = SSIM_WINDOW_PX**2 / (SSIM_WINDOW_PX**2 - 1)  # sample covariance over the 49 window pixels

    def window_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        # Per image: channels-first pixels, window means, squared means and variances.
        x = np.moveaxis(images, -1, 1).astype(np.float64)  # (B, 3, H, W)
        mu = _window_mean(x)
        return x, mu, mu**2, cov_norm * (_window_mean(x * x) - mu**2)

    g, mu_g, lum_g, var_g = window_stats(gts)
    result = np.empty((len(recons), len(gts)))
    for i in range(len(recons)):
        r, mu_r, lum_r, var_r = window_stats(recons[i:i + 1])
        for start in range(0, len(gts), batch_size):
            part = slice(start, start + batch_size)
            mu_rg = mu_r * mu_g[part]
            # In place: these maps are the bulk of the memory traffic.
            contrast = _window_mean(r * g[part])
            contrast -= mu_rg
            contrast *= 2 * cov_norm
            contrast += c2  # 2 sigma_rg + c2
            mu_rg *= 2
            mu_rg += c1
            mu_rg *= contrast
            denominator = lum_r + lum_g[part]
            denominator += c1
            denominator *= (var_r + var_g[part]) + c2
            mu_rg /= denominator
            result[i, part] = mu_rg.mean(axis=(2, 3)).mean(axis=1)
    return result


# ------------------------------------------------------------------------------- field suite: pixel metrics

def to_metric_size(images: np.ndarray, size_px: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float64 (N, size_px, size_px, 3) in [0, 1], bilinear (antialiased when shrinking): the
    NSD papers' resize before the pixel metrics, not a stimulus resize (that is Stimuli.images_of)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(torch.float64) / 255.0
    x = TF.resize(x, [size_px, size_px], antialias=True).clamp(0.0, 1.0)
    return x.permute(0, 2, 3, 1).numpy()


def pixcorr(recons: np.ndarray, gts: np.ndarray, size_px: int) -> float:
    """PixCorr: mean over pairs of the Pearson r between the flattened RGB pixels of a reconstruction and its
    ground truth, both resized to size_px (NSD papers: 425)."""
    r, g = to_metric_size(recons, size_px), to_metric_size(gts, size_px)
    return float(np.mean([correlation_matrix(r[i].reshape(1, -1), g[i].reshape(1, -1))[0, 0]
                          for i in range(len(r))]))


def ssim_gray(recons: np.ndarray, gts: np.ndarray, size_px: int) -> float:
    """SSIM as the NSD papers: mean over pairs, images resized to size_px and converted to grayscale, Gaussian
    weights (sigma 1.5), population covariance, data range 1."""
    r, g = rgb2gray(to_metric_size(recons, size_px)), rgb2gray(to_metric_size(gts, size_px))
    return float(np.mean([structural_similarity(r[i], g[i], gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False, data_range=1.0)
                          for i in range(len(r))]))


# ----------------------------------------------------------------------------- field suite: feature metrics

def two_way_identification(recon_features: np.ndarray, gt_features: np.ndarray,
                           per: Literal["reconstruction", "ground_truth"] = "reconstruction") -> float:
    """Two-way identification, exhaustive over all pairs, with feature correlation as similarity.

    per='reconstruction' (default): for each reconstruction, the fraction of other ground truths whose correlation
    with it is lower than its own ground truth's; this is what MindEye's and Brain-Diffuser's evaluation code count
    (their success matrix is summed over ground truths, per reconstruction). per='ground_truth': for each ground
    truth, the fraction of other reconstructions less correlated with it than its own (the transposed count, for
    comparison only). Mean over items.

    Args:
        recon_features: (N, D) features of the reconstructions.
        gt_features: (N, D) features of their ground truths (row i pairs with row i).
    Returns:
        accuracy in [0, 1]; 1/2 is chance.
    """
    correlations = correlation_matrix(recon_features, gt_features)  # [i, j] = r(recon_i, gt_j)
    if per == "ground_truth":
        correlations = correlations.T
    return float(pairwise_identification(correlations, higher_is_better=True).mean())


def mean_correlation_distance(recon_features: np.ndarray, gt_features: np.ndarray) -> float:
    """Mean over pairs of 1 - Pearson r between a reconstruction's features and its ground truth's (lower is
    better; scipy's `correlation` distance)."""
    correlations = correlation_matrix(recon_features, gt_features)
    return float(np.mean(1.0 - np.diag(correlations)))


# ------------------------------------------------------------------------------------------------ chance

def shuffled_pairing(n: int, seed: int) -> np.ndarray:
    """A seeded random derangement of range(n) (no image paired with itself): perm[i] is i's chance partner."""
    if n < 2:
        raise ValueError("a shuffled pairing needs at least 2 images")
    order = np.random.default_rng(seed).permutation(n)
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.roll(order, -1)  # one random cycle through all images
    return perm


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


# ------------------------------------------------------------------------------------------------ everything

_PAIRWISE_PIXEL_METRICS: dict[str, tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], bool]] = {
    "pairwise_mse": (mse_matrix, False),
    "pairwise_pcc": (pcc_matrix, True),
    "pairwise_ssim": (ssim_matrix, True),
}


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
        log.info("n-way top-1 (%d-way, %d trials) over %d images x %d samples", cfg.n_way, cfg.n_trials, n, k)
        gt_probs = classifier.probabilities(gts) if gt_probabilities is None else gt_probabilities
        recon_probs = classifier.probabilities(recons.reshape(n * k, *recons.shape[2:]))
        true_classes = np.repeat(np.argmax(gt_probs, axis=1), k)
        columns["top1_nway"] = nway_top1_accuracy(recon_probs, true_classes, cfg.n_way, cfg.n_trials,
                                                  np.random.default_rng(cfg.seed))
        name_of = (lambda c: class_names[c]) if class_names else str
        columns["true_class"] = np.array([name_of(c) for c in true_classes])
        columns["predicted_class"] = np.array([name_of(c) for c in np.argmax(recon_probs, axis=1)])
    return pd.DataFrame(columns)


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
    _check_pairing(recons, gts)
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
