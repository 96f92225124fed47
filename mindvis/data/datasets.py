"""fMRI-only training data over the preprocessed-data contract (Stage A).

Rows are selected from one or more preprocessed subjects and read one at a time from the memory-mapped fmri.npy,
so a dataset of any size costs its row indices plus the pages the OS caches, never a copy of the matrix. Each item is
one sample padded or cut to the model's voxel count as the reference does (`mindvis.models.mbm.voxel_index`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from mindvis.data.contract import FMRI_FILE, PreprocessedSubject, read_subject
from mindvis.errors import ContractError, InputDataError
from mindvis.models.mbm import padded_voxel_count, voxel_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RowSelection:
    """Rows of one preprocessed subject: `subject_dir`, its voxel count and the selected row indices (int64)."""

    subject_dir: Path
    n_voxels: int
    rows: np.ndarray


def select_pretrain_rows(subject: PreprocessedSubject, subject_dir: Path, with_train_rows: bool) -> RowSelection:
    """A1 rows: every `pretrain` row (HCP resting state), plus the `train` rows when `with_train_rows` (GOD's
    training fMRI, stage_a.pretrain.include_god_train)."""
    rows = subject.rows("pretrain")
    if with_train_rows:
        rows = np.union1d(rows, subject.rows("train"))
    return RowSelection(subject_dir, subject.n_voxels, rows)


def select_test_rows(subject: PreprocessedSubject, subject_dir: Path) -> RowSelection:
    """A2 rows: the subject's test fMRI, averaged and single trials (what the reference tunes on)."""
    return RowSelection(subject_dir, subject.n_voxels, subject.rows("test"))


def _nonempty(selections: Sequence[RowSelection]) -> list[RowSelection]:
    """The selections that have rows; ContractError if none has."""
    used = [s for s in selections if len(s.rows)]
    if not used:
        raise ContractError("no fMRI samples selected", value=[str(s.subject_dir) for s in selections],
                            expected="at least one row of the wanted split",
                            hint="check the inputs' splits (HCP: pretrain, GOD/BOLD5000: train/test)")
    return used


def model_voxel_count(selections: Sequence[RowSelection], patch_size: int) -> int:
    """Voxel count of a model trained on `selections`: the longest patch-padded vector among those with rows
    (reference: HCP alone 4183 -> 4192; mixed with GOD train fMRI 4656)."""
    return max(padded_voxel_count(s.n_voxels, patch_size) for s in _nonempty(selections))


class FmriRows(Dataset):
    """Selected fMRI rows of several subjects as model inputs: item i -> float32 tensor (1, num_voxels).

    The fmri.npy files are opened (memory-mapped) lazily in each process that reads, so the dataset pickles to
    DataLoader workers or DDP processes as paths and indices only.
    """

    def __init__(self, selections: Sequence[RowSelection], num_voxels: int, patch_size: int) -> None:
        self.selections = _nonempty(selections)
        self.num_voxels = num_voxels
        self.patch_size = patch_size
        self._ends = np.cumsum([len(s.rows) for s in self.selections])
        self._matrices: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_matrices": None}

    def _matrix(self, source: int) -> np.ndarray:
        if self._matrices is None:
            self._matrices = [np.load(s.subject_dir / FMRI_FILE, mmap_mode="r") for s in self.selections]
        return self._matrices[source]

    def _source_row(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        source = int(np.searchsorted(self._ends, index, side="right"))
        start = 0 if source == 0 else int(self._ends[source - 1])
        return source, int(self.selections[source].rows[index - start])

    def locate(self, index: int) -> tuple[Path, int]:
        """(subject directory, row in its fmri.npy) of item `index`."""
        source, row = self._source_row(index)
        return self.selections[source].subject_dir, row

    def __getitem__(self, index: int) -> torch.Tensor:
        source, row = self._source_row(index)
        selection = self.selections[source]
        vector = np.asarray(self._matrix(source)[row], dtype=np.float32)  # (V_subject,), one row read from disk
        voxels = vector[voxel_index(selection.n_voxels, self.num_voxels, self.patch_size)]  # (num_voxels,)
        return torch.from_numpy(voxels).unsqueeze(0)


def read_selections(subject_dirs: Sequence[str | os.PathLike[str]], select) -> list[RowSelection]:
    """Read each contract directory (fmri memory-mapped, no images) and apply `select(subject, dir)`."""
    selections = []
    for directory in sorted(Path(d) for d in subject_dirs):
        if not directory.is_dir():
            raise InputDataError("preprocessed subject directory not found", path=directory,
                                 expected="a directory written by a preprocess_* rule",
                                 hint="run the preprocessing rules first (snakemake --until preprocess_hcp ...)")
        subject = read_subject(directory, mmap=True, with_stimuli=False)
        selection = select(subject, directory)
        log.info("%s: %d of %d rows selected (%d voxels)", directory, len(selection.rows), len(subject.samples),
                 selection.n_voxels)
        selections.append(selection)
    return selections


def split_indices(n_items: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) item indices; at least one validation item when val_fraction > 0 and n >= 2."""
    order = np.random.default_rng(seed).permutation(n_items)
    n_val = int(round(n_items * val_fraction))
    if val_fraction > 0 and n_items >= 2:
        n_val = max(n_val, 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class FmriDataModule(pl.LightningDataModule):
    """Seeded train/validation split of an FmriRows dataset and its loaders (Lightning adds DDP sampling)."""

    def __init__(self, dataset: FmriRows, batch_size: int, val_fraction: float, seed: int,
                 num_workers: int = 0) -> None:
        super().__init__()
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        train, val = split_indices(len(dataset), val_fraction, seed)
        self.train_set = Subset(dataset, train.tolist())
        self.val_set = Subset(dataset, val.tolist()) if len(val) else None

    def _loader(self, subset: Subset, shuffle: bool) -> DataLoader:
        return DataLoader(subset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []

    def sample_batch(self, n: int, held_out: bool = True) -> torch.Tensor:
        """The first `n` validation (else training) items stacked: (n, 1, num_voxels), for figures."""
        subset = self.val_set if held_out and self.val_set is not None else self.train_set
        return torch.stack([subset[i] for i in range(min(n, len(subset)))])
