"""Ridge-regression baselines fitted on the training split, scored with the same metrics as the model.

(a) fMRI -> pixels: a linear map from voxels to a small RGB image (e.g. 32x32), upsampled to the stimulus size.
(b) fMRI -> image features + retrieval: a linear map from voxels to the features of a network (e.g. the n-way
    classifier's logits), then the candidate image (by default a training stimulus) whose features correlate
    best with the prediction is the reconstruction.

Both return (N, 1, H, W, 3) uint8 arrays, like the model's samples, so mindvis.evaluation.scoring applies
unchanged. The ridge penalty is chosen by K-fold cross-validation on the training split (grouped by stimulus when
groups are given, so repeats of one image never sit on both sides of a fold) and solved in closed form for every
penalty at once from one eigendecomposition per fold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import GroupKFold, KFold
from torchvision.transforms.v2 import functional as TF

from mindvis.config.evaluation import EvaluationConfig
from mindvis.errors import InputDataError
from mindvis.evaluation.metrics import as_uint8_images, correlation_matrix

log = logging.getLogger(__name__)

FeatureFunction = Callable[[np.ndarray], np.ndarray]  # uint8 images (N, H, W, 3) -> features (N, D)


@dataclass(frozen=True)
class RidgeFit:
    """A fitted ridge map y = ((x - x_mean) / x_scale) @ weights + y_mean, with the cross-validation record."""

    weights: np.ndarray  # (V, D)
    x_mean: np.ndarray  # (V,)
    x_scale: np.ndarray  # (V,)
    y_mean: np.ndarray  # (D,)
    alpha: float
    cv_mse: dict[float, float]  # held-out mean squared error per alpha tried

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N, V) voxels -> (N, D) predicted targets."""
        return ((np.asarray(x, dtype=np.float64) - self.x_mean) / self.x_scale) @ self.weights + self.y_mean


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0  # constant voxels carry no information; keep them at zero
    return (x - mean) / scale, mean, scale


class _RidgeSolver:
    """Exact ridge solutions W(alpha) = (X^T X + alpha I)^-1 X^T Y for many alphas from one eigendecomposition of
    the smaller Gram matrix: X X^T (N x N) when there are fewer samples than voxels (the usual fMRI case), else
    X^T X (V x V). Predictions factor as projection(x_new) @ coefficients(alpha).

    x: (N, V) standardised voxels, y: (N, D) centred targets.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = x
        self.dual = x.shape[0] <= x.shape[1]
        gram = x @ x.T if self.dual else x.T @ x
        eigenvalues, self.eigenvectors = np.linalg.eigh(gram)
        self.eigenvalues = np.clip(eigenvalues, 0.0, None)  # PSD up to rounding
        # dual: W = X^T U diag(1/(l + a)) U^T Y; primal: W = Q diag(1/(l + a)) Q^T X^T Y
        self.rotated_targets = self.eigenvectors.T @ (y if self.dual else x.T @ y)

    def projection(self, x_new: np.ndarray) -> np.ndarray:
        """(n, V) standardised voxels -> (n, r), the alpha-independent part of the prediction."""
        return (x_new @ self.x.T) @ self.eigenvectors if self.dual else x_new @ self.eigenvectors

    def coefficients(self, alpha: float) -> np.ndarray:
        """(r, D): predictions are projection(x_new) @ coefficients(alpha)."""
        return self.rotated_targets / (self.eigenvalues + alpha)[:, None]

    def weights(self, alpha: float) -> np.ndarray:
        """(V, D) ridge weights."""
        mixed = self.eigenvectors @ self.coefficients(alpha)
        return self.x.T @ mixed if self.dual else mixed


def fit_ridge(x: np.ndarray, y: np.ndarray, alphas: tuple[float, ...], cv_folds: int, seed: int,
              groups: np.ndarray | None = None) -> RidgeFit:
    """Ridge regression from x (N, V) to y (N, D), alpha chosen by K-fold CV (lowest held-out MSE).

    Voxels are standardised and targets centred with the training part's statistics inside every fold.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    alphas_arr = np.asarray(alphas, dtype=np.float64)
    n_groups = len(np.unique(groups)) if groups is not None else len(x)
    folds = min(cv_folds, n_groups)
    if folds < 2:
        raise InputDataError("too few training samples to cross-validate the ridge penalty", path="train fMRI",
                             value=len(x), expected="at least 2 samples (distinct stimuli)")
    splitter = GroupKFold(n_splits=folds) if groups is not None else KFold(folds, shuffle=True, random_state=seed)
    squared_error = np.zeros(len(alphas_arr))
    for train_idx, val_idx in splitter.split(x, y, groups):
        x_train, x_mean, x_scale = _standardise(x[train_idx])
        y_mean = y[train_idx].mean(axis=0)
        solver = _RidgeSolver(x_train, y[train_idx] - y_mean)
        projected_val = solver.projection((x[val_idx] - x_mean) / x_scale)  # (n_val, r)
        for a, alpha in enumerate(alphas_arr):
            prediction = projected_val @ solver.coefficients(alpha) + y_mean
            squared_error[a] += ((prediction - y[val_idx]) ** 2).sum()
    cv_mse = squared_error / y.size
    best = int(np.argmin(cv_mse))
    x_std, x_mean, x_scale = _standardise(x)
    y_mean = y.mean(axis=0)
    weights = _RidgeSolver(x_std, y - y_mean).weights(alphas_arr[best])
    log.info("ridge: alpha %.3g chosen by %d-fold CV (held-out MSE %.4g)", alphas_arr[best], folds, cv_mse[best])
    return RidgeFit(weights, x_mean, x_scale, y_mean, float(alphas_arr[best]),
                    {float(a): float(m) for a, m in zip(alphas_arr, cv_mse, strict=True)})


def _downsample(images: np.ndarray, size_px: int, chunk: int = 64) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, size_px, size_px, 3) in [0, 1], antialiased, a chunk at a time (a
    float copy of 1200 stimuli at 256 px would take ~1 GB)."""
    return np.concatenate([_resize_float(images[i:i + chunk].astype(np.float32) / 255.0, size_px)
                           for i in range(0, len(images), chunk)])


def _resize_float(images: np.ndarray, size_px: int) -> np.ndarray:
    """(N, H, W, 3) float in [0, 1] -> (N, size_px, size_px, 3), bilinear, antialiased when shrinking."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    return TF.resize(x, [size_px, size_px], antialias=True).permute(0, 2, 3, 1).numpy()


def _check_fmri(fmri: np.ndarray, what: str, n_rows: int | None = None, n_voxels: int | None = None) -> np.ndarray:
    fmri = np.asarray(fmri)
    if fmri.ndim != 2 or not np.issubdtype(fmri.dtype, np.number) or not np.isfinite(fmri).all():
        raise InputDataError(f"{what} must be a finite 2-D array (samples x voxels)", path=what,
                             value=(fmri.shape, str(fmri.dtype)), expected="float (N, V), no NaN/inf")
    if n_rows is not None and len(fmri) != n_rows:
        raise InputDataError(f"{what} rows do not match the images", path=what, value=len(fmri),
                             expected=f"{n_rows} rows, one per image")
    if n_voxels is not None and fmri.shape[1] != n_voxels:
        raise InputDataError(f"{what} has a different voxel count than the training fMRI", path=what,
                             value=fmri.shape[1], expected=f"{n_voxels} voxels")
    return fmri


def _distinct_images(images: np.ndarray) -> np.ndarray:
    """The distinct images of a batch, in order of first appearance (repeated stimuli appear once)."""
    first_index: dict[bytes, int] = {}
    for i, image in enumerate(images):
        first_index.setdefault(image.tobytes(), i)
    return images[sorted(first_index.values())]


def ridge_pixel_baseline(train_fmri: np.ndarray, train_images: np.ndarray, test_fmri: np.ndarray,
                         cfg: EvaluationConfig, groups: np.ndarray | None = None) -> np.ndarray:
    """Baseline (a): ridge from voxels to a `cfg.baselines.pixels_px`-square RGB image, upsampled.

    Args:
        train_fmri: (N_train, V) training fMRI, row i recorded while train_images[i] was shown.
        train_images: (N_train, H, W, 3) uint8 stimuli of the training rows.
        test_fmri: (N_test, V) test fMRI.
        cfg: evaluation config (cfg.baselines: pixels_px, alphas, cv_folds; cfg.seed).
        groups: optional (N_train,) stimulus ids, so CV folds keep repeats of an image together.
    Returns:
        (N_test, 1, H, W, 3) uint8 reconstructions.
    """
    train_images = as_uint8_images(train_images, "train images")
    train_fmri = _check_fmri(train_fmri, "train fMRI", n_rows=len(train_images))
    test_fmri = _check_fmri(test_fmri, "test fMRI", n_voxels=train_fmri.shape[1])
    px = cfg.baselines.pixels_px
    image_px = train_images.shape[1]
    targets = _downsample(train_images, px).reshape(len(train_images), -1)
    fit = fit_ridge(train_fmri, targets, cfg.baselines.alphas, cfg.baselines.cv_folds, cfg.seed, groups)
    predicted = np.clip(fit.predict(test_fmri), 0.0, 1.0).reshape(len(test_fmri), px, px, 3)
    upsampled = np.clip(_resize_float(predicted, image_px), 0.0, 1.0)
    return np.round(upsampled * 255.0).astype(np.uint8)[:, None]


def ridge_retrieval_baseline(train_fmri: np.ndarray, train_images: np.ndarray, test_fmri: np.ndarray,
                             features: FeatureFunction, cfg: EvaluationConfig,
                             candidate_images: np.ndarray | None = None,
                             groups: np.ndarray | None = None) -> np.ndarray:
    """Baseline (b): ridge from voxels to image features, then nearest-candidate retrieval.

    Args:
        train_fmri: (N_train, V) training fMRI, row i recorded while train_images[i] was shown.
        train_images: (N_train, H, W, 3) uint8 stimuli of the training rows.
        test_fmri: (N_test, V) test fMRI.
        features: images -> (N, D) features, e.g. `ImageClassifier.logits` (the n-way classifier) or a lambda
            over a `FeatureNetwork`.
        cfg: evaluation config (cfg.baselines.alphas, cv_folds; cfg.seed).
        candidate_images: (M, H, W, 3) uint8 pool to retrieve from; default: the distinct training stimuli.
        groups: optional (N_train,) stimulus ids for grouped CV folds.
    Returns:
        (N_test, 1, H, W, 3) uint8: for each test row, the candidate whose features correlate best with the
        predicted features.
    """
    train_images = as_uint8_images(train_images, "train images")
    train_fmri = _check_fmri(train_fmri, "train fMRI", n_rows=len(train_images))
    test_fmri = _check_fmri(test_fmri, "test fMRI", n_voxels=train_fmri.shape[1])
    if candidate_images is None:
        candidate_images = _distinct_images(train_images)
    candidate_images = as_uint8_images(candidate_images, "candidate images")
    train_features = np.asarray(features(train_images), dtype=np.float64)
    fit = fit_ridge(train_fmri, train_features.reshape(len(train_images), -1), cfg.baselines.alphas,
                    cfg.baselines.cv_folds, cfg.seed, groups)
    predicted = fit.predict(test_fmri)
    candidate_features = np.asarray(features(candidate_images), dtype=np.float64).reshape(len(candidate_images), -1)
    nearest = np.argmax(correlation_matrix(predicted, candidate_features), axis=1)
    return candidate_images[nearest][:, None]
