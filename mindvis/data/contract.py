"""The preprocessed-data contract: the stable interface between preprocessing and training.

A preprocessed subject lives in `<results_root>/preprocessed/<dataset>/<subject>/`:

- `samples.parquet`: one row per fMRI sample, in the row order of fmri.npy. Required columns:
  `sample_id` int64 (0..n-1), `split` string (train | test | pretrain), `stimulus_id` string (null for rest),
  `category` string (nullable), `n_averaged` int32 (trials averaged into the row), `source` string (raw file).
  Dataset-specific columns may follow.
- `fmri.npy`: float32 (n_samples, n_voxels), memory-mappable; real voxels only (no padding).
- `voxels.parquet`: one row per column of fmri.npy; required `roi` string, `mean` and `std` float64 (the
  normalisation statistics that were applied), then dataset-specific columns.
- `stimuli.npz` (GOD, BOLD5000, NSD): `images` uint8 (n_stimuli, H, W, 3) and `stimulus_id` str (n_stimuli,).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mindvis.data.images import resize_images
from mindvis.errors import ContractError
from mindvis.io import atomic_directory

DATASETS: tuple[str, ...] = ("HCP", "GOD", "BOLD5000", "NSD")
TASK_DATASETS: tuple[str, ...] = ("GOD", "BOLD5000", "NSD")
SPLITS: tuple[str, ...] = ("train", "test", "pretrain")

SAMPLES_FILE = "samples.parquet"
FMRI_FILE = "fmri.npy"
VOXELS_FILE = "voxels.parquet"
STIMULI_FILE = "stimuli.npz"

SAMPLE_COLUMNS: dict[str, pa.DataType] = {
    "sample_id": pa.int64(),
    "split": pa.string(),
    "stimulus_id": pa.string(),
    "category": pa.string(),
    "n_averaged": pa.int32(),
    "source": pa.string(),
}
VOXEL_COLUMNS: dict[str, pa.DataType] = {"roi": pa.string(), "mean": pa.float64(), "std": pa.float64()}


@dataclass(frozen=True)
class Stimuli:
    """Stimulus images of a task dataset.

    Attributes:
        images: uint8 (n_stimuli, H, W, 3), RGB.
        stimulus_id: str (n_stimuli,), the ids samples.parquet refers to.
    """

    images: np.ndarray
    stimulus_id: np.ndarray

    def index_of(self, stimulus_ids: "pd.Series | np.ndarray") -> np.ndarray:
        """Row of `images` for each id in `stimulus_ids` (int64, same length); raises ContractError if unknown."""
        position = {sid: i for i, sid in enumerate(self.stimulus_id.tolist())}
        try:
            return np.fromiter((position[s] for s in stimulus_ids), dtype=np.int64, count=len(stimulus_ids))
        except KeyError as exc:
            raise ContractError(
                "sample refers to a stimulus absent from stimuli.npz",
                value=exc.args[0],
                expected="every stimulus_id of samples.parquet to be in stimuli.npz",
                hint="rerun the preprocessing of this subject",
            ) from None

    def images_of(self, stimulus_ids: "pd.Series | np.ndarray", size: int) -> np.ndarray:
        """uint8 (N, size, size, 3): the image of each id, at `size` px.

        The one way mindvis brings stimuli to a model's size (training pairs, generation's ground truth, the
        baselines, benchmarks): stored images of another size go through `mindvis.data.images.resize_images`
        (centre square, Lanczos), each distinct image once.
        """
        used, inverse = np.unique(self.index_of(stimulus_ids), return_inverse=True)
        images = self.images[used]
        if images.shape[1:3] != (size, size):
            images = resize_images(images, size)
        return np.ascontiguousarray(images[inverse])


@dataclass(frozen=True)
class PreprocessedSubject:
    """One subject's preprocessed data, as stored on disk (see module docstring)."""

    samples: pd.DataFrame
    fmri: np.ndarray
    voxels: pd.DataFrame
    stimuli: Stimuli | None = None

    @property
    def n_voxels(self) -> int:
        return int(self.fmri.shape[1])

    def rows(self, split: str, averaged: bool | None = None) -> np.ndarray:
        """Indices (int64) of the samples in `split`; `averaged` True/False keeps rows with n_averaged >1 / ==1."""
        mask = (self.samples["split"] == split).to_numpy(copy=True)
        if averaged is not None:
            n_avg = self.samples["n_averaged"].to_numpy()
            mask &= (n_avg > 1) if averaged else (n_avg == 1)
        return np.flatnonzero(mask)


def subject_dir(results_root: str | os.PathLike[str], dataset: str, subject: str) -> Path:
    """`<results_root>/preprocessed/<dataset>/<subject>`."""
    return Path(results_root) / "preprocessed" / dataset / subject


def contract_files(dataset: str) -> tuple[str, ...]:
    """The file names a preprocessed subject of `dataset` consists of (HCP has no stimuli)."""
    files = (SAMPLES_FILE, FMRI_FILE, VOXELS_FILE)
    return files + (STIMULI_FILE,) if dataset in TASK_DATASETS else files


def validate_subject(subject: PreprocessedSubject, where: str | os.PathLike[str] = "<memory>") -> None:
    """Raise ContractError unless `subject` satisfies every rule of the contract."""

    def fail(problem: str, value: object, expected: str) -> None:
        raise ContractError(problem, path=where, value=value, expected=expected,
                            hint="this is a bug in the preprocessing step that wrote it; please report it")

    fmri, samples, voxels = subject.fmri, subject.samples, subject.voxels
    if fmri.ndim != 2 or fmri.dtype != np.float32:
        fail("fmri must be a 2-D float32 matrix", f"{fmri.dtype} {fmri.shape}", "float32 (n_samples, n_voxels)")
    if fmri.shape[0] == 0 or fmri.shape[1] == 0:
        fail("empty fmri matrix", fmri.shape, "at least one sample and one voxel")
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        fail("samples table lacks required columns", missing, f"columns {list(SAMPLE_COLUMNS)}")
    if len(samples) != fmri.shape[0]:
        fail("samples rows do not match fmri rows", (len(samples), fmri.shape[0]), "one samples row per fmri row")
    if not np.array_equal(samples["sample_id"].to_numpy(), np.arange(len(samples))):
        fail("sample_id must be 0..n-1 in row order", samples["sample_id"].head().tolist(), "0, 1, 2, ...")
    bad_splits = sorted(set(samples["split"]) - set(SPLITS))
    if bad_splits:
        fail("unknown split values", bad_splits, f"one of {SPLITS}")
    if (samples["n_averaged"] < 1).any():
        fail("n_averaged must be >= 1", int(samples["n_averaged"].min()), "a positive trial count")
    missing = [c for c in VOXEL_COLUMNS if c not in voxels.columns]
    if missing:
        fail("voxels table lacks required columns", missing, f"columns {list(VOXEL_COLUMNS)}")
    if len(voxels) != fmri.shape[1]:
        fail("voxels rows do not match fmri columns", (len(voxels), fmri.shape[1]), "one voxels row per column")
    if subject.stimuli is not None:
        images, ids = subject.stimuli.images, subject.stimuli.stimulus_id
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            fail("stimulus images must be uint8 (n, H, W, 3)", f"{images.dtype} {images.shape}", "uint8 RGB")
        if len(ids) != len(images) or len(set(ids.tolist())) != len(ids):
            fail("stimulus_id must be unique and one per image", len(ids), f"{len(images)} unique ids")
        referenced = set(samples["stimulus_id"].dropna())
        unknown = sorted(referenced - set(ids.tolist()))
        if unknown:
            fail("samples refer to stimuli absent from stimuli.npz", unknown[:5], "known stimulus ids")


def _table(frame: pd.DataFrame, required: dict[str, pa.DataType]) -> pa.Table:
    """Arrow table of `frame` whose required columns have exactly the contract's types (others inferred)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for name, dtype in required.items():
        index = table.schema.get_field_index(name)
        table = table.set_column(index, pa.field(name, dtype, nullable=True), table.column(name).cast(dtype))
    return table


def write_subject(out_dir: str | os.PathLike[str], subject: PreprocessedSubject) -> Path:
    """Validate `subject` and write it to `out_dir` atomically (all files appear together or none change)."""
    out_dir = Path(out_dir)
    validate_subject(subject, out_dir)
    with atomic_directory(out_dir) as tmp:
        pq.write_table(_table(subject.samples, SAMPLE_COLUMNS), tmp / SAMPLES_FILE)
        np.save(tmp / FMRI_FILE, np.ascontiguousarray(subject.fmri))
        pq.write_table(_table(subject.voxels, VOXEL_COLUMNS), tmp / VOXELS_FILE)
        if subject.stimuli is not None:
            np.savez(tmp / STIMULI_FILE, images=subject.stimuli.images,
                     stimulus_id=np.asarray(subject.stimuli.stimulus_id, dtype=str))
    return out_dir


def read_subject(subject_path: str | os.PathLike[str], mmap: bool = True,
                 with_stimuli: bool = True) -> PreprocessedSubject:
    """Read a preprocessed subject; fmri.npy is memory-mapped (read-only) unless `mmap` is False.

    `with_stimuli=False` skips loading stimuli.npz (fMRI-only training does not need the images in memory).
    """
    subject_path = Path(subject_path)
    for name in (SAMPLES_FILE, FMRI_FILE, VOXELS_FILE):
        if not (subject_path / name).is_file():
            raise ContractError(f"missing {name}", path=subject_path / name,
                                expected="a directory written by mindvis preprocessing",
                                hint="run the preprocess_* rule for this subject (snakemake --until preprocess_god ...)")
    stimuli = None
    if with_stimuli and (subject_path / STIMULI_FILE).is_file():
        with np.load(subject_path / STIMULI_FILE, allow_pickle=False) as archive:
            stimuli = Stimuli(images=archive["images"], stimulus_id=archive["stimulus_id"])
    subject = PreprocessedSubject(
        samples=pq.read_table(subject_path / SAMPLES_FILE).to_pandas(),
        fmri=np.load(subject_path / FMRI_FILE, mmap_mode="r" if mmap else None),
        voxels=pq.read_table(subject_path / VOXELS_FILE).to_pandas(),
        stimuli=stimuli,
    )
    validate_subject(subject, subject_path)
    return subject
