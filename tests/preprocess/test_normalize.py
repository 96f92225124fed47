"""Z-scoring with explicit statistics: fit on train, apply elsewhere, invertible, inputs untouched."""

import numpy as np
import pytest

from mindvis.preprocess.normalize import apply_zscore, fit_zscore, scalar_zscore, voxel_zscore, zscore


@pytest.fixture
def train():
    rng = np.random.default_rng(0)
    # voxels with very different offsets and scales, so scalar and per-voxel z-scores differ
    return (rng.normal(size=(50, 4)) * [1, 2, 5, 10] + [0, 3, -7, 100]).astype(np.float32)


def test_scalar_zscore_has_zero_mean_unit_std_over_the_whole_matrix(train):
    z, stats = scalar_zscore(train)
    assert z.dtype == np.float32 and z.shape == train.shape
    assert stats.mean.shape == () and stats.std.shape == ()
    assert abs(z.mean()) < 1e-5 and abs(z.std() - 1) < 1e-5
    # one scalar for all voxels: the relative offsets of voxels survive
    assert np.ptp(z.mean(axis=0)) > 1


def test_voxel_zscore_standardises_every_column(train):
    z, stats = voxel_zscore(train)
    assert stats.mean.shape == (4,)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-5)


@pytest.mark.parametrize("kind", ["scalar", "voxel"])
def test_statistics_fitted_on_train_are_applied_unchanged_to_test(train, kind):
    test = train[:7] * 2 + 1
    _, stats = zscore(train, kind)
    z_test, used = zscore(test, kind, stats)
    assert used is stats
    np.testing.assert_allclose(z_test, (test - stats.mean) / stats.std, rtol=1e-6)
    # recorded statistics invert the transform
    np.testing.assert_allclose(z_test * stats.std + stats.mean, test, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", ["scalar", "voxel"])
def test_inputs_are_never_modified(train, kind):
    before = train.copy()
    _, stats = zscore(train, kind)
    apply_zscore(train, stats)
    np.testing.assert_array_equal(train, before)


def test_scalar_statistics_match_numpy_over_the_matrix(train):
    stats = fit_zscore(train, "scalar")
    assert stats.mean == pytest.approx(float(np.mean(train, dtype=np.float64)))
    assert stats.std == pytest.approx(float(np.std(train, dtype=np.float64)))
    mean, std = stats.per_voxel(4)
    assert mean.shape == std.shape == (4,) and np.all(mean == stats.mean)


def test_constant_voxel_maps_to_zero_not_nan():
    x = np.array([[1.0, 5.0], [3.0, 5.0]], dtype=np.float32)
    z, stats = voxel_zscore(x)
    assert np.isfinite(z).all()
    np.testing.assert_array_equal(z[:, 1], 0)
    assert stats.std[1] == 1.0


def test_mismatched_voxel_statistics_are_refused(train):
    _, stats = voxel_zscore(train)
    with pytest.raises(ValueError, match="voxels"):
        apply_zscore(train[:, :3], stats)
    with pytest.raises(ValueError, match="2-D"):
        fit_zscore(train[0])
    with pytest.raises(ValueError, match="kind"):
        fit_zscore(train, "global")
