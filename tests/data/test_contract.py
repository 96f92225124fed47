"""The preprocessed-data contract: round trip, validation, atomic writes."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mindvis.data.contract import (PreprocessedSubject, Stimuli, contract_files, read_subject, write_subject)
from mindvis.data.images import resize_images
from mindvis.errors import ContractError


def _subject(n=4, v=5, with_stimuli=True):
    samples = pd.DataFrame({
        "sample_id": np.arange(n), "split": ["train"] * (n - 1) + ["test"],
        "stimulus_id": [f"s{i % 2}" for i in range(n)], "category": ["cat"] * n,
        "n_averaged": [1] * (n - 1) + [3], "source": ["raw.npz"] * n, "run": np.arange(n) % 2,
    })
    voxels = pd.DataFrame({"roi": ["V1"] * v, "mean": np.zeros(v), "std": np.ones(v), "voxel_index": np.arange(v)})
    stimuli = Stimuli(np.zeros((2, 8, 8, 3), np.uint8), np.array(["s0", "s1"])) if with_stimuli else None
    fmri = np.arange(n * v, dtype=np.float32).reshape(n, v)
    return PreprocessedSubject(samples, fmri, voxels, stimuli)


def test_round_trip_keeps_values_types_and_extra_columns(tmp_path):
    write_subject(tmp_path / "s", _subject())
    back = read_subject(tmp_path / "s")
    assert isinstance(back.fmri, np.memmap) and back.fmri.dtype == np.float32
    np.testing.assert_array_equal(back.fmri, _subject().fmri)
    schema = pq.read_schema(tmp_path / "s" / "samples.parquet")
    assert str(schema.field("sample_id").type) == "int64" and str(schema.field("n_averaged").type) == "int32"
    assert list(back.samples["run"]) == [0, 1, 0, 1]
    assert back.stimuli.index_of(back.samples["stimulus_id"]).tolist() == [0, 1, 0, 1]
    assert back.rows("test", averaged=True).tolist() == [3]


def test_hcp_has_no_stimuli_file():
    assert "stimuli.npz" not in contract_files("HCP") and "stimuli.npz" in contract_files("GOD")


@pytest.mark.parametrize("breakage", ["rows", "dtype", "split", "stimulus", "sample_id"])
def test_invalid_subject_is_refused_and_nothing_written(tmp_path, breakage):
    s = _subject()
    if breakage == "rows":
        s = PreprocessedSubject(s.samples, s.fmri[:-1], s.voxels, s.stimuli)
    elif breakage == "dtype":
        s = PreprocessedSubject(s.samples, s.fmri.astype(np.float64), s.voxels, s.stimuli)
    elif breakage == "split":
        s.samples.loc[0, "split"] = "validation"
    elif breakage == "stimulus":
        s.samples.loc[0, "stimulus_id"] = "unknown"
    else:
        s.samples.loc[0, "sample_id"] = 7
    with pytest.raises(ContractError):
        write_subject(tmp_path / "s", s)
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_failed_write_leaves_previous_output_intact(tmp_path, monkeypatch):
    write_subject(tmp_path / "s", _subject())
    before = (tmp_path / "s" / "fmri.npy").read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(OSError):
        write_subject(tmp_path / "s", PreprocessedSubject(*[getattr(_subject(), f) for f in
                                                            ("samples", "fmri", "voxels", "stimuli")]))
    assert (tmp_path / "s" / "fmri.npy").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_reading_an_incomplete_directory_names_the_missing_file(tmp_path):
    write_subject(tmp_path / "s", _subject())
    (tmp_path / "s" / "voxels.parquet").unlink()
    with pytest.raises(ContractError, match="voxels.parquet"):
        read_subject(tmp_path / "s")


def test_images_of_gives_each_stimulus_at_the_model_size_with_the_one_resize_policy():
    rng = np.random.default_rng(0)
    stimuli = Stimuli(images=rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8), stimulus_id=np.array(["a", "b", "c"]))
    out = stimuli.images_of(np.array(["c", "a", "c"]), 4)
    assert out.shape == (3, 4, 4, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, resize_images(stimuli.images[[2, 0, 2]], 4))  # Lanczos, centre square
    np.testing.assert_array_equal(stimuli.images_of(np.array(["b"]), 8)[0], stimuli.images[1])  # stored size: as is
    with pytest.raises(ContractError, match="absent from stimuli.npz"):
        stimuli.images_of(np.array(["z"]), 4)
