"""Averaging repeated trials by stimulus key."""

import numpy as np
import pytest

from mindvis.preprocess.average import average_by_key


def test_rows_sharing_a_key_are_averaged_in_first_appearance_order():
    x = np.array([[1, 10], [2, 20], [3, 30], [5, 50], [4, 40]], dtype=np.float32)
    keys = np.array(["b", "a", "b", "c", "a"])
    averaged, group_keys, counts = average_by_key(x, keys)
    assert group_keys.tolist() == ["b", "a", "c"]
    assert counts.tolist() == [2, 2, 1]
    np.testing.assert_allclose(averaged, [[2, 20], [3, 30], [5, 50]])
    assert averaged.dtype == np.float32 and counts.dtype == np.int64


def test_input_is_not_modified_and_integer_keys_work():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    before = x.copy()
    keys = rng.integers(0, 4, size=20)
    averaged, group_keys, counts = average_by_key(x, keys)
    np.testing.assert_array_equal(x, before)
    for row, key in zip(averaged, group_keys):
        np.testing.assert_allclose(row, x[keys == key].mean(axis=0), rtol=1e-6)
    assert counts.sum() == 20


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="one key per row"):
        average_by_key(np.zeros((3, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="2-D"):
        average_by_key(np.zeros(3), ["a", "b", "c"])
