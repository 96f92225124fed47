"""synthesize/expected_files: exactly the announced files, written once, deterministic per seed."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mindvis.config.data import DemoDataConfig
from mindvis.demo import DATASETS, datasets_of, expected_files, synthesize
from mindvis.errors import ConfigError


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def _content(path: Path) -> object:
    """What must be identical between two runs: arrays for array files (zip/CIFTI containers aside), else bytes."""
    if path.suffix == ".npz":
        with np.load(path) as npz:
            return {key: npz[key] for key in npz.files}
    if path.suffix == ".npy":
        return np.load(path)
    if path.name.endswith(".dtseries.nii"):
        return np.asarray(nib.load(path).dataobj)
    return path.read_bytes()


def _assert_same(a: object, b: object) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_writes_exactly_the_expected_files_once(make_small_config, tmp_path):
    cfg = make_small_config(tmp_path / "demo")
    expected = expected_files(cfg, list(DATASETS))
    assert not any(p.exists() for p in expected)  # computed without generating anything
    assert len(set(expected)) == len(expected)
    written = synthesize(cfg, list(DATASETS))
    assert sorted(written) == sorted(expected)
    assert _files_under(cfg.root) == set(expected)  # no temporary or extra files left behind
    assert synthesize(cfg, list(DATASETS)) == []


def test_missing_files_are_rewritten_identically_and_others_kept(make_small_config, tmp_path):
    cfg = make_small_config(tmp_path / "demo")
    synthesize(cfg, ["GOD", "BOLD5000"])
    removed = [cfg.root / "Kamitani" / "npz" / "sbj_3.npz",
               sorted((cfg.root / "BOLD5000").rglob("*LHPPA.npy"))[0]]
    before = {p: _content(p) for p in removed}
    kept = cfg.root / "Kamitani" / "npz" / "imagenet_class_index.json"
    kept_mtime = kept.stat().st_mtime_ns
    for path in removed:
        path.unlink()
    assert sorted(synthesize(cfg, ["GOD", "BOLD5000"])) == sorted(removed)
    for path in removed:
        _assert_same(before[path], _content(path))
    assert kept.stat().st_mtime_ns == kept_mtime


def test_same_seed_same_data_other_seed_other_data(make_small_config, tmp_path):
    first, second = make_small_config(tmp_path / "a"), make_small_config(tmp_path / "b")
    other = make_small_config(tmp_path / "c", seed=1)
    for cfg in (first, second, other):
        synthesize(cfg, list(DATASETS))
    for path in expected_files(first, list(DATASETS)):
        _assert_same(_content(path), _content(second.root / path.relative_to(first.root)))
    for name in ("Kamitani/npz/sbj_3.npz", "Kamitani/npz/images_256.npz"):
        a, c = _content(first.root / name), _content(other.root / name)
        assert any(not np.array_equal(a[k], c[k]) for k in a if a[k].shape == c[k].shape)


def test_unknown_dataset_is_a_config_error(make_small_config, tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset"):
        expected_files(make_small_config(tmp_path), ["GOD", "THINGS"])


@pytest.mark.parametrize("datasets", [["HCP"], ["GOD", "BOLD5000"], list(DATASETS)])
def test_the_datasets_of_declared_files_are_the_datasets_they_were_planned_for(tmp_path, datasets):
    cfg = DemoDataConfig(root=tmp_path / "demo")
    assert datasets_of(cfg.root, expected_files(cfg, datasets)) == datasets
