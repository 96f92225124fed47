"""Z-scoring of fMRI matrices with explicit statistics: fit on one set of rows (train), apply to others.

Two flavours, both on matrices with samples on axis 0 and voxels on axis 1:

- scalar: one mean and one standard deviation over the whole matrix, as MinD-Vis does for every dataset. It keeps
  the relative amplitude of voxels, which the masked brain model sees as one long signal.
- voxel: one mean and standard deviation per voxel (column), the usual choice of decoding studies.

Every function is pure: inputs are never modified, outputs are new float32 arrays, statistics are float64.
A zero standard deviation (a constant matrix or voxel) is replaced by 1, so those values map to 0 instead of
NaN; the statistics record the divisor actually used, so `x = z * std + mean` always inverts the transform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

ZScoreKind = Literal["scalar", "voxel"]
ZSCORE_KINDS: tuple[str, ...] = ("scalar", "voxel")


@dataclass(frozen=True)
class ZScoreStats:
    """Statistics of a z-score.

    Attributes:
        kind: "scalar" or "voxel".
        mean: float64, shape () for scalar, (n_voxels,) for voxel.
        std: float64, same shape as `mean`; strictly positive (zeros were replaced by 1).
    """

    kind: ZScoreKind
    mean: np.ndarray
    std: np.ndarray

    def per_voxel(self, n_voxels: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) as float64 arrays of shape (n_voxels,): what voxels.parquet records for each column."""
        if self.kind == "voxel" and self.mean.shape != (n_voxels,):
            raise ValueError(f"statistics are for {self.mean.shape[0]} voxels, not {n_voxels}")
        return (np.broadcast_to(self.mean, (n_voxels,)).astype(np.float64),
                np.broadcast_to(self.std, (n_voxels,)).astype(np.float64))


def _as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D (n_samples, n_voxels) matrix, got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("cannot fit z-score statistics on zero samples")
    return x


def _positive(std: np.ndarray) -> np.ndarray:
    return np.where(std > 0, std, 1.0)


def fit_zscore(x: np.ndarray, kind: ZScoreKind = "scalar") -> ZScoreStats:
    """Statistics of `x` (n_samples, n_voxels), computed in float64.

    Args:
        x: the rows to fit on (e.g. the training trials).
        kind: "scalar" (one mean/std for the whole matrix) or "voxel" (per column).
    """
    x = _as_matrix(x)
    if kind == "scalar":
        mean = np.asarray(x.mean(dtype=np.float64))
        std = np.asarray(x.std(dtype=np.float64))
    elif kind == "voxel":
        mean = x.mean(axis=0, dtype=np.float64)
        std = x.std(axis=0, dtype=np.float64)
    else:
        raise ValueError(f"unknown z-score kind {kind!r}; expected one of {ZSCORE_KINDS}")
    return ZScoreStats(kind=kind, mean=mean, std=_positive(std))


def apply_zscore(x: np.ndarray, stats: ZScoreStats) -> np.ndarray:
    """(x - mean) / std as a new float32 (n_samples, n_voxels) array, with statistics fitted elsewhere."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D (n_samples, n_voxels) matrix, got shape {x.shape}")
    if stats.kind == "voxel" and stats.mean.shape != (x.shape[1],):
        raise ValueError(f"statistics are for {stats.mean.shape[0]} voxels, the matrix has {x.shape[1]}")
    return ((x - stats.mean) / stats.std).astype(np.float32)


def zscore(x: np.ndarray, kind: ZScoreKind = "scalar",
           stats: ZScoreStats | None = None) -> tuple[np.ndarray, ZScoreStats]:
    """Z-score `x` with `stats`, or with statistics fitted on `x` itself when `stats` is None.

    Returns:
        (z float32 (n_samples, n_voxels), the statistics used).
    """
    stats = fit_zscore(x, kind) if stats is None else stats
    return apply_zscore(x, stats), stats


def scalar_zscore(x: np.ndarray, stats: ZScoreStats | None = None) -> tuple[np.ndarray, ZScoreStats]:
    """One mean/std for the whole matrix (MinD-Vis); fitted on `x` unless `stats` is given."""
    return zscore(x, "scalar", stats)


def voxel_zscore(x: np.ndarray, stats: ZScoreStats | None = None) -> tuple[np.ndarray, ZScoreStats]:
    """Per-voxel mean/std; fitted on `x` unless `stats` is given."""
    return zscore(x, "voxel", stats)
