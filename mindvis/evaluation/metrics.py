"""Reconstruction metrics, one function each: the MinD-Vis protocol (n-way top-1, pairwise identification by
MSE/PCC/SSIM) and the NSD papers' suite (PixCorr, SSIM, two-way identification and correlation distance of network
features; FID is mindvis.evaluation.fid). mindvis.evaluation.scoring applies them to a set of reconstructions.

Images are uint8 (N, H, W, 3) (or float in [0, 1], converted); reconstructions carry K samples per test image,
(N, K, H, W, 3). Per-sample metrics are computed for each sample index k against all N ground truths and averaged
over samples (the MinD-Vis evaluation averages its pairwise scores over samples the same way); n-way top-1 is
reported as the MinD-Vis evaluation does: for each sample index k the mean accuracy over the test images, then the
mean (`top1_nway_mean`) and the max (`top1_nway_max`) of these K values. The keys of `METRIC_NAMES` are the keys of
metrics.json.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from scipy.ndimage import uniform_filter1d
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity
from torchvision.transforms.v2 import functional as TF

from mindvis.errors import ConfigError, InputDataError

METRIC_NAMES: tuple[str, ...] = (
    "top1_nway_mean", "top1_nway_max", "pairwise_mse", "pairwise_pcc", "pairwise_ssim", "pixcorr", "ssim",
    "alexnet2", "alexnet5", "inception", "clip", "effnet_dist", "swav_dist", "fid", "fid64",
)
# Direction of each metric: distances (and FID) are better when lower.
HIGHER_IS_BETTER: dict[str, bool] = {name: name not in ("effnet_dist", "swav_dist", "fid", "fid64")
                                     for name in METRIC_NAMES}
# Identification metrics whose chance level is 1/2 by construction.
TWO_WAY_METRICS = ("pairwise_mse", "pairwise_pcc", "pairwise_ssim", "alexnet2", "alexnet5", "inception", "clip")

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


def check_pairing(recons: np.ndarray, gts: np.ndarray) -> None:
    """InputDataError unless reconstructions (N, K, H, W, 3) and ground truths (N, H, W, 3) pair up."""
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


# ------------------------------------------------------------------------------------ chance pairing

def shuffled_pairing(n: int, seed: int) -> np.ndarray:
    """A seeded random derangement of range(n) (no image paired with itself): perm[i] is i's chance partner."""
    if n < 2:
        raise ValueError("a shuffled pairing needs at least 2 images")
    order = np.random.default_rng(seed).permutation(n)
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.roll(order, -1)  # one random cycle through all images
    return perm
