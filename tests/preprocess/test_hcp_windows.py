"""Windowing of continuous fMRI (mindvis.preprocess.windows), as the HCP reader uses it."""

import numpy as np
import pytest

from mindvis.preprocess.windows import n_windows, window_means, window_starts


def test_window_means_average_consecutive_non_overlapping_frames():
    series = np.arange(12, dtype=np.float32).reshape(6, 2)  # frame t, voxel v -> 2t + v
    means = window_means(series, 3)
    np.testing.assert_array_equal(means, [[2, 3], [8, 9]])
    assert means.dtype == np.float32


def test_incomplete_tail_is_dropped_and_starts_match():
    series = np.random.default_rng(0).standard_normal((25, 4))
    means = window_means(series, 10)
    assert means.shape == (2, 4)
    np.testing.assert_allclose(means[1], series[10:20].mean(axis=0))
    np.testing.assert_array_equal(window_starts(25, 10), [0, 10])
    assert n_windows(1200, 10) == 120 and n_windows(9, 10) == 0
    assert window_means(series, 26).shape == (0, 4)


def test_window_of_one_frame_is_the_series_and_input_is_untouched():
    series = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    before = series.copy()
    np.testing.assert_array_equal(window_means(series, 1), series)
    np.testing.assert_array_equal(series, before)
    assert window_means(np.ones((4, 2), dtype=np.int16), 2).dtype == np.float64


def test_float32_means_are_accumulated_precisely():
    # a large offset plus small signal: a float32 running sum would lose the signal
    series = (np.full((1000, 1), 1e4) + np.arange(1000)[:, None] % 2 * 1e-3).astype(np.float32)
    np.testing.assert_allclose(window_means(series, 1000)[0, 0], np.float64(series).mean(), rtol=1e-7)


@pytest.mark.parametrize("bad", [0, -3])
def test_window_frames_must_be_positive(bad):
    with pytest.raises(ValueError, match="window_frames"):
        window_means(np.zeros((4, 2)), bad)
    with pytest.raises(ValueError, match="frames, voxels"):
        window_means(np.zeros(4), 2)
