"""Temporal windowing of continuous fMRI: the mean over non-overlapping windows of consecutive frames.

MinD-Vis turns each 1200-frame HCP resting-state run into 120 samples by averaging windows of 10 frames (7.2 s at
TR 0.72 s). Frames after the last complete window are dropped: a shorter tail window would average fewer frames than
every other sample (a different noise level), and with the HCP run length it never happens.

Pure functions: time on axis 0, inputs never modified.
"""

from __future__ import annotations

import numpy as np


def n_windows(n_frames: int, window_frames: int) -> int:
    """How many complete windows of `window_frames` fit in `n_frames` frames (0 when not even one)."""
    if window_frames < 1:
        raise ValueError(f"window_frames must be >= 1, got {window_frames}")
    return max(n_frames, 0) // window_frames


def window_starts(n_frames: int, window_frames: int) -> np.ndarray:
    """int64 (n_windows,): the first frame of each complete window (0, w, 2w, ...)."""
    return np.arange(n_windows(n_frames, window_frames), dtype=np.int64) * window_frames


def window_means(series: np.ndarray, window_frames: int) -> np.ndarray:
    """Mean over non-overlapping windows of consecutive frames.

    Args:
        series: (frames, voxels) time series.
        window_frames: frames per window (>= 1).
    Returns:
        (n_windows, voxels) with n_windows = frames // window_frames; row w is the mean of frames
        [w * window_frames, (w + 1) * window_frames). Frames of an incomplete last window are dropped. The mean is
        accumulated in float64 and returned in the input's floating dtype (float32 stays float32; integers give
        float64).
    """
    series = np.asarray(series)
    if series.ndim != 2:
        raise ValueError(f"series must be (frames, voxels), got shape {series.shape}")
    count = n_windows(series.shape[0], window_frames)
    out_dtype = series.dtype if np.issubdtype(series.dtype, np.floating) else np.float64
    # (count * w, voxels) -> (count, w, voxels): a view, no copy of the input.
    grouped = series[: count * window_frames].reshape(count, window_frames, series.shape[1])
    return grouped.mean(axis=1, dtype=np.float64).astype(out_dtype, copy=False)
