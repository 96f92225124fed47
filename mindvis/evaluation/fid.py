"""Fréchet Inception Distance: the Fréchet distance between Gaussians fitted to two feature sets, and the
TensorFlow-compatible Inception-v3 that the standard FID weights (pytorch-fid's `pt_inception-2015-12-05`) need.

FID over a few dozen images is dominated by estimator bias (the covariance of N < D features has rank < N), so
values are only comparable at equal image counts and feature dimension; callers report the image count beside it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.inception import Inception3, InceptionA, InceptionC, InceptionE

# Classes of the TF Inception graph the standard FID weights come from (1000 ImageNet classes + 8 unused).
FID_INCEPTION_CLASSES = 1008


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between N(mu_a, S_a) and N(mu_b, S_b) fitted to two feature sets.

    d = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)), with unbiased (N - 1) covariances. The trace
    term is computed without complex parts or an ill-conditioned sqrtm, also for rank-deficient covariances (see
    `trace_sqrt_product`).

    Args:
        features_a: (N, D) features of one image set (N >= 2).
        features_b: (M, D) features of the other (M >= 2).
    Returns:
        the distance (>= 0, in squared feature units); 0 for identical sets up to rounding.
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, D) and (M, D) with the same D, got {a.shape} and {b.shape}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {a.shape[0]} and {b.shape[0]}")
    mean_diff = a.mean(axis=0) - b.mean(axis=0)
    a_centred = (a - a.mean(axis=0)) / np.sqrt(a.shape[0] - 1)  # S_a = a_centred.T @ a_centred
    b_centred = (b - b.mean(axis=0)) / np.sqrt(b.shape[0] - 1)
    distance = (mean_diff @ mean_diff + (a_centred**2).sum() + (b_centred**2).sum()
                - 2.0 * trace_sqrt_product(a_centred, b_centred))
    return float(max(distance, 0.0))


def trace_sqrt_product(a_centred: np.ndarray, b_centred: np.ndarray) -> float:
    """tr((S_a S_b)^(1/2)) for S_a = a.T @ a and S_b = b.T @ b, a (N, D), b (M, D).

    The eigenvalues of S_a S_b are the squared singular values of a @ b.T, so the trace is the nuclear norm of
    that (N, M) matrix: cheap and exact when N * M <= D^2 (FID over tens of images with 2048-d features).
    Otherwise it is sum(sqrt(eig(S_a^(1/2) S_b S_a^(1/2)))), a symmetric PSD matrix with the eigenvalues of S_a S_b.
    """
    n, d = a_centred.shape
    if n * b_centred.shape[0] <= d * d:
        return float(np.linalg.svd(a_centred @ b_centred.T, compute_uv=False).sum())
    sqrt_cov_a = _psd_sqrt(a_centred.T @ a_centred)
    middle = sqrt_cov_a @ (b_centred.T @ b_centred) @ sqrt_cov_a
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding-noise eigenvalues clipped)."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def _average_pool_excluding_padding(x: Tensor) -> Tensor:
    # TF's 3x3 'SAME' average pooling divides by the number of real pixels under the window, not by 9.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool_same(x: Tensor) -> Tensor:
    # The last block of the TF graph pools its side branch with max pooling (a bug in the original, kept by FID).
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class _TfInceptionA(InceptionA):
    """InceptionA with TF's average pooling (border windows average over real pixels only)."""

    def _forward(self, x: Tensor) -> list[Tensor]:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), branch5x5, branch3x3dbl, self.branch_pool(_average_pool_excluding_padding(x))]


class _TfInceptionC(InceptionC):
    """InceptionC with TF's average pooling."""

    def _forward(self, x: Tensor) -> list[Tensor]:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        return [self.branch1x1(x), branch7x7, branch7x7dbl, self.branch_pool(_average_pool_excluding_padding(x))]


class _TfInceptionE(InceptionE):
    """InceptionE with the TF graph's side-branch pooling: average (excluding padding) or max (the last block)."""

    def __init__(self, in_channels: int, max_pool_branch: bool) -> None:
        super().__init__(in_channels)
        self.max_pool_branch = max_pool_branch

    def _forward(self, x: Tensor) -> list[Tensor]:
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        pooled = _max_pool_same(x) if self.max_pool_branch else _average_pool_excluding_padding(x)
        return [self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(pooled)]


def build_fid_inception() -> Inception3:
    """The Inception-v3 of the TF graph behind standard FID, with torchvision's parameter names (randomly
    initialised): load pytorch-fid's `pt_inception-2015-12-05-*.pth` state dict into it with strict=True.

    Input: (B, 3, 299, 299) scaled to [-1, 1]; no transform_input, no aux head, 1008 classes.
    """
    model = Inception3(num_classes=FID_INCEPTION_CLASSES, aux_logits=False, transform_input=False,
                       init_weights=False)
    model.Mixed_5b = _TfInceptionA(192, pool_features=32)
    model.Mixed_5c = _TfInceptionA(256, pool_features=64)
    model.Mixed_5d = _TfInceptionA(288, pool_features=64)
    model.Mixed_6b = _TfInceptionC(768, channels_7x7=128)
    model.Mixed_6c = _TfInceptionC(768, channels_7x7=160)
    model.Mixed_6d = _TfInceptionC(768, channels_7x7=160)
    model.Mixed_6e = _TfInceptionC(768, channels_7x7=192)
    model.Mixed_7b = _TfInceptionE(1280, max_pool_branch=False)
    model.Mixed_7c = _TfInceptionE(2048, max_pool_branch=True)
    return model
