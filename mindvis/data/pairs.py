"""fMRI-image pairs of one task subject (GOD, BOLD5000) over the preprocessed-data contract (Stage B, generation).

A pair is one fMRI row of fmri.npy and the stimulus image its `stimulus_id` names in stimuli.npz. The fMRI vector
is wrap-padded or cut to the encoder's input length as the reference (`mindvis.models.mbm.voxel_index`); the image
becomes a float32 (3, S, S) tensor in [-1, 1], augmented for training as the reference: with probability
`crop_probability` a random square crop that removes `crop_ratio` of the side (256 -> 205 px), then a resize to
S px (bilinear, antialiased).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from mindvis.data.contract import FMRI_FILE, STIMULI_FILE, PreprocessedSubject, read_subject
from mindvis.errors import ConfigError, ContractError
from mindvis.models.mbm import voxel_index

log = logging.getLogger(__name__)


def train_rows(subject: PreprocessedSubject) -> np.ndarray:
    """Rows (int64) of the `train` split that show a stimulus: the Stage-B training pairs."""
    rows = subject.rows("train")
    return rows[subject.samples["stimulus_id"].iloc[rows].notna().to_numpy()]


def averaged_test_rows(subject: PreprocessedSubject, where: str | os.PathLike[str] = "<memory>") -> np.ndarray:
    """Rows (int64) of the averaged test fMRI (n_averaged > 1): one per test stimulus, what images are generated from.

    Raises:
        ContractError: no averaged test rows, or a stimulus with more than one averaged row.
    """
    rows = subject.rows("test", averaged=True)
    stimulus_ids = subject.samples["stimulus_id"].iloc[rows]
    if len(rows) == 0:
        raise ContractError("no averaged test fMRI", path=where, value=0,
                            expected="test rows with n_averaged > 1 (one per test stimulus)",
                            hint="is this a GOD / BOLD5000 subject preprocessed by mindvis?")
    repeated = stimulus_ids[stimulus_ids.duplicated()].unique().tolist()
    if repeated or stimulus_ids.isna().any():
        raise ContractError("averaged test rows must name distinct stimuli", path=where, value=repeated[:5],
                            expected="one averaged row per test stimulus", hint="rerun the preprocessing")
    return rows


def augment_image(image: np.ndarray, size: int, crop_probability: float = 0.0, crop_ratio: float = 0.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Stimulus uint8 (H, W, 3) -> float32 (3, size, size) in [-1, 1], randomly cropped as the reference.

    With probability `crop_probability` a random crop of (H - int(crop_ratio H), W - int(crop_ratio W)) px is
    taken and resized back to `size` px (bilinear, antialiased; the crop is augmentation, so its filter matters
    less than that uncropped images stay exactly as Stimuli.images_of gives them). Random draws come
    from `generator` (default: torch's global generator, which Lightning seeds per process and worker).
    """
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 127.5 - 1.0  # (3, H, W)
    height, width = pixels.shape[1:]
    if crop_probability > 0 and torch.rand((), generator=generator) < crop_probability:
        crop_h, crop_w = height - int(crop_ratio * height), width - int(crop_ratio * width)
        top = int(torch.randint(0, height - crop_h + 1, (), generator=generator))
        left = int(torch.randint(0, width - crop_w + 1, (), generator=generator))
        pixels = pixels[:, top:top + crop_h, left:left + crop_w]
    if pixels.shape[1:] != (size, size):
        pixels = F.interpolate(pixels[None], size=(size, size), mode="bilinear", align_corners=False,
                               antialias=True)[0]
    return pixels


class FmriImagePairs(Dataset):
    """Selected rows of one subject as pairs: item i -> {"fmri": (num_voxels,), "image": (3, S, S), "item": i}.

    The stimulus images of the selected rows are held in memory as uint8 (shared with forked DataLoader workers);
    fmri.npy is memory-mapped lazily in each process, so the dataset pickles as paths, indices and images.

    Args:
        subject_dir: a preprocessed GOD / BOLD5000 subject (contract directory with stimuli.npz).
        rows: rows of fmri.npy to pair (e.g. `train_rows`), each with a stimulus_id.
        num_voxels, patch_size: the encoder's input length and patch size (fMRI is padded / cut to it).
        image_size: S, the side of the model's images.
        crop_probability, crop_ratio: training augmentation (0 = none: validation and test).
    """

    def __init__(self, subject_dir: str | os.PathLike[str], rows: np.ndarray, num_voxels: int, patch_size: int,
                 image_size: int, crop_probability: float = 0.0, crop_ratio: float = 0.0,
                 subject: PreprocessedSubject | None = None) -> None:
        self.subject_dir = Path(subject_dir)
        subject = subject if subject is not None else read_subject(self.subject_dir, mmap=True)
        if subject.stimuli is None:
            raise ContractError("subject has no stimulus images", path=self.subject_dir / STIMULI_FILE,
                                expected="a GOD / BOLD5000 contract directory with stimuli.npz",
                                hint="Stage B trains on task datasets only (not HCP)")
        self.rows = np.asarray(rows, dtype=np.int64)
        if len(self.rows) == 0:
            raise ContractError("no fMRI-image pairs selected", path=self.subject_dir, value=0,
                                expected="at least one row with a stimulus", hint="check the subject's splits")
        stimulus_ids = subject.samples["stimulus_id"].iloc[self.rows].to_numpy()
        used, self._image_of_item = np.unique(stimulus_ids.astype(str), return_inverse=True)
        self.images = subject.stimuli.images_of(used, image_size)  # (n_used, S, S, 3) uint8
        self.stimulus_ids = stimulus_ids.astype(str)
        self.sample_ids = subject.samples["sample_id"].iloc[self.rows].to_numpy(dtype=np.int64)
        self.n_voxels = subject.n_voxels
        self.num_voxels, self.patch_size, self.image_size = num_voxels, patch_size, image_size
        self.crop_probability, self.crop_ratio = crop_probability, crop_ratio
        self._fmri: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fmri": None}

    def fmri_row(self, item: int) -> np.ndarray:
        """The model input of item `item`: float32 (num_voxels,), padded / cut from the subject's voxels."""
        if self._fmri is None:
            self._fmri = np.load(self.subject_dir / FMRI_FILE, mmap_mode="r")
        vector = np.asarray(self._fmri[self.rows[item]], dtype=np.float32)
        return vector[voxel_index(self.n_voxels, self.num_voxels, self.patch_size)]

    def image(self, item: int) -> np.ndarray:
        """The stimulus of item `item` at the model's size (Stimuli.images_of): uint8 (S, S, 3)."""
        return self.images[self._image_of_item[item]]

    def __getitem__(self, item: int) -> dict[str, Any]:
        if not 0 <= item < len(self):
            raise IndexError(item)
        return {
            "fmri": torch.from_numpy(self.fmri_row(item)),
            "image": augment_image(self.image(item), self.image_size, self.crop_probability, self.crop_ratio),
            "item": item,
        }


def hold_out(rows: np.ndarray, n_items: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of `rows` into (training rows, `n_items` held-out rows), both sorted.

    Raises:
        ConfigError: `n_items` would leave no training pair.
    """
    if n_items >= len(rows):
        raise ConfigError("more validation items than training pairs", path="stage_b.training.val_items",
                          value=n_items, expected=f"fewer than the subject's {len(rows)} training pairs",
                          hint="lower stage_b.training.val_items (0 = no validation)")
    order = np.random.default_rng(seed).permutation(len(rows))
    return np.sort(rows[order[n_items:]]), np.sort(rows[order[:n_items]])


class PairDataModule(pl.LightningDataModule):
    """Loaders over training pairs (shuffled, augmented) and held-out validation pairs (in order, not augmented)."""

    def __init__(self, train_set: FmriImagePairs, val_set: FmriImagePairs | None, batch_size: int,
                 num_workers: int = 0) -> None:
        super().__init__()
        self.train_set, self.val_set = train_set, val_set
        self.batch_size, self.num_workers = batch_size, num_workers

    def _loader(self, dataset: FmriImagePairs, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []
