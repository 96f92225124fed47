"""Averaging of repeated trials: rows that share a key (the stimulus shown) become one row."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def average_by_key(x: np.ndarray, keys: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of the rows of `x` grouped by `keys`, groups in the order their key first appears.

    Args:
        x: (n_samples, n_voxels) trials; not modified.
        keys: (n_samples,) hashable group key per row (e.g. stimulus id); no missing values.
    Returns:
        averaged: float32 (n_groups, n_voxels), the mean computed in float64.
        group_keys: (n_groups,) the key of each averaged row.
        counts: int64 (n_groups,) how many rows were averaged into each.
    """
    x = np.asarray(x)
    keys = np.asarray(keys)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D (n_samples, n_voxels) matrix, got shape {x.shape}")
    if keys.shape != (x.shape[0],):
        raise ValueError(f"need one key per row: {keys.shape[0] if keys.ndim else 0} keys for {x.shape[0]} rows")
    codes, group_keys = pd.factorize(keys, sort=False, use_na_sentinel=True)
    if (codes < 0).any():
        raise ValueError(f"missing key at row {int(np.flatnonzero(codes < 0)[0])}")
    n_groups = len(group_keys)
    counts = np.bincount(codes, minlength=n_groups).astype(np.int64)
    # Sort rows by group once, then sum each contiguous block (much faster than scattered adds).
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    sums = np.add.reduceat(x[order].astype(np.float64), starts, axis=0) if n_groups else np.zeros((0, x.shape[1]))
    averaged = (sums / counts[:, None]).astype(np.float32)
    return averaged, np.asarray(group_keys), counts
