"""GOD (Generic Object Decoding, Horikawa & Kamitani 2017), as released with MinD-Vis -> the preprocessed contract.

Raw layout under `<raw_root>/Kamitani/npz/` (the MinD-Vis data release):

- `sbj_<n>.npz`: `arr_0` training trials (n_train, V_all); `arr_1` test trials (n_test_trials, V_all);
  `arr_2` test trials averaged per test image (n_test_images, V_all), row i belonging to test image i;
  `arr_3` (n_train,) index of each training trial's image in `images_256.npz` `train_images`;
  `arr_4` (n_test_trials,) index of each test trial's image in `test_images`; `arr_5`, `arr_6` per-voxel noise
  ceiling and SNR; every other key is a boolean ROI mask over V_all (VC, LVC, HVC, V1..V4, LOC, FFA, PPA).
  Real data: 1200 training trials (one per image), 50 test images x 35 trials, grouped per image.
- `images_256.npz`: `train_images` (1200, 256, 256, 3) and `test_images` (50, 256, 256, 3), uint8.
- `imagenet_training_label.csv` / `imagenet_testing_label.csv`: one row per image of train_images / test_images
  in the same order: `<GOD stimulus id>,<file name>`, e.g. `1518878.014910,n01518878_14910.JPEG` (the integer part of
  the id is the WordNet id's number).
- `imagenet_class_index.json`: `{"<class index>": ["n01518878", ..., "<class name>"]}`.

Output rows, in this order: the training trials (split train, n_averaged 1), the averaged test rows (split test,
n_averaged = number of test trials of that image, 35 in real data) and the single test trials (split test,
n_averaged 1). Single test trials are paired with their image through `arr_4`, not through their position.
Dataset-specific columns: `raw_array` (arr_0/arr_2/arr_1), `trial` (row in that array; null for averaged rows),
`image_index` (row in train_images/test_images), `class_index` (key of the class index; null when the synset is not
in it, then `category` is null too), `wnid`, `image_file`. voxels.parquet: `roi` (the smallest mask containing the
voxel, e.g. V1, FFA, else `cfg.roi`), `mean`, `std`, `voxel_index` (column in the raw matrices), `noise_ceiling`, `snr`.

Normalisation (`GodPreprocessConfig.normalization`): statistics are fitted on the training trials of the chosen ROI
and applied to every row. "scalar" (default) is MinD-Vis: one mean and one standard deviation of the training
matrix (MinD-Vis computes them after wrap-padding the voxels to a multiple of the patch size; padding is not part of
the data here, so the statistics differ from the reference in the last digits). "voxel" uses per-voxel statistics.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mindvis.config.data import GodPreprocessConfig
from mindvis.data.contract import PreprocessedSubject, Stimuli, write_subject
from mindvis.data.images import npz_array_shape, read_npz_image_rows
from mindvis.errors import InputDataError
from mindvis.io import check_finite, require_file
from mindvis.preprocess.normalize import apply_zscore, fit_zscore

log = logging.getLogger(__name__)

DATASET = "GOD"
GOD_DIR = Path("Kamitani") / "npz"
IMAGES_FILE = "images_256.npz"
CLASS_INDEX_FILE = "imagenet_class_index.json"
TRAIN_LABELS_FILE = "imagenet_training_label.csv"
TEST_LABELS_FILE = "imagenet_testing_label.csv"
TRAIN_IMAGES_KEY = "train_images"
TEST_IMAGES_KEY = "test_images"

TRAIN_FMRI = "arr_0"
TEST_TRIALS = "arr_1"
TEST_AVERAGED = "arr_2"
TRAIN_IMAGE_INDEX = "arr_3"
TEST_IMAGE_INDEX = "arr_4"
NOISE_CEILING = "arr_5"
SNR = "arr_6"
REQUIRED_ARRAYS = (TRAIN_FMRI, TEST_TRIALS, TEST_AVERAGED, TRAIN_IMAGE_INDEX, TEST_IMAGE_INDEX)

SUBJECT_RE = re.compile(r"^sbj_(\d+)$")
ARRAY_KEY_RE = re.compile(r"^arr_\d+$")
HINT_RELEASE = "use the files of the MinD-Vis data release unchanged (README, 'Raw inputs')"


# ----------------------------------------------------------------------------------------------- file layout

def subject_file(raw_root: str | os.PathLike[str], subject: str) -> Path:
    """`<raw_root>/Kamitani/npz/<subject>.npz`."""
    return Path(raw_root) / GOD_DIR / f"{subject}.npz"


def find_subjects(raw_root: str | os.PathLike[str]) -> list[str]:
    """GOD subjects present under `raw_root` (`sbj_<n>` with an npz file), sorted by n."""
    folder = Path(raw_root) / GOD_DIR
    if not folder.is_dir():
        return []
    found = [p.stem for p in folder.glob("sbj_*.npz") if SUBJECT_RE.match(p.stem)]
    return sorted(found, key=lambda name: int(SUBJECT_RE.match(name).group(1)))


def raw_files(raw_root: str | os.PathLike[str], subject: str) -> list[Path]:
    """The raw files one subject's preprocessing reads (Snakemake inputs); computed without touching the disk."""
    folder = Path(raw_root) / GOD_DIR
    return [subject_file(raw_root, subject), folder / IMAGES_FILE, folder / CLASS_INDEX_FILE,
            folder / TRAIN_LABELS_FILE, folder / TEST_LABELS_FILE]


def _require_subject(raw_root: Path, subject: str) -> Path:
    path = subject_file(raw_root, subject)
    if SUBJECT_RE.match(subject) and path.is_file():
        return path
    found = find_subjects(raw_root)
    raise InputDataError(
        f"GOD subject {subject!r} not found", path=path, value=subject,
        expected=f"one of the subjects present: {found}" if found else "a Kamitani/npz/sbj_<n>.npz file",
        hint="check `subjects.GOD` and data_root in config.yaml" if found else
        "download the GOD files of the MinD-Vis release into <data_root>/Kamitani/npz")


# ----------------------------------------------------------------------------------------------- labels

@dataclass(frozen=True)
class ImageLabel:
    """One image of images_256.npz as named by the label csv files.

    Attributes:
        stimulus_id: GOD stimulus id, e.g. "1518878.014910" (WordNet number . image number).
        file_name: original ImageNet file name, e.g. "n01518878_14910.JPEG".
        class_index: key of imagenet_class_index.json whose WordNet ids contain the image's synset, or None.
        category: that class's name, or None.
    """

    stimulus_id: str
    file_name: str
    class_index: int | None
    category: str | None

    @property
    def wnid(self) -> str:
        """WordNet id of the image's synset, e.g. "n01518878" (also when the class index does not name it)."""
        return f"n{int(self.stimulus_id.split('.')[0]):08d}"


def read_class_index(path: str | os.PathLike[str]) -> dict[int, tuple[int, str]]:
    """imagenet_class_index.json -> {WordNet id number (e.g. 1518878): (class index, class name)}."""
    path = require_file(path, "ImageNet class index", hint=HINT_RELEASE)
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputDataError(f"cannot parse the class index ({type(exc).__name__}: {exc})", path=path,
                             expected='JSON like {"0": ["n01440764", "tench"], ...}', hint=HINT_RELEASE) from exc
    by_wnid: dict[int, tuple[int, str]] = {}
    if not isinstance(raw, dict):
        raw = {"<top level>": raw}
    for key, entry in raw.items():
        valid = (isinstance(entry, list) and len(entry) >= 2 and all(isinstance(v, str) for v in entry)
                 and all(re.fullmatch(r"n\d+", w) for w in entry[:-1]) and str(key).isdigit())
        if not valid:
            raise InputDataError("malformed class index entry", path=path, value={key: entry},
                                 expected='"<class index>": ["n<WordNet id>", ..., "<class name>"]', hint=HINT_RELEASE)
        for wnid in entry[:-1]:
            by_wnid.setdefault(int(wnid[1:]), (int(key), entry[-1]))
    return by_wnid


def read_image_labels(path: str | os.PathLike[str], class_index: dict[int, tuple[int, str]],
                      what: str) -> list[ImageLabel]:
    """Rows of imagenet_{training,testing}_label.csv (`<stimulus id>,<file name>`) with their ImageNet class."""
    path = require_file(path, what, hint=HINT_RELEASE)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputDataError(f"cannot read the {what} ({type(exc).__name__}: {exc})", path=path,
                             expected="a csv with rows <stimulus id>,<file name>", hint=HINT_RELEASE) from exc
    labels = []
    for number, row in enumerate(rows, start=1):
        stimulus_id = row[0].strip()
        if not re.fullmatch(r"\d+\.\d+", stimulus_id):
            raise InputDataError(f"malformed row {number} of the {what}", path=path, value=row,
                                 expected="<WordNet number>.<image number>,<file name>, e.g. "
                                 "1518878.014910,n01518878_14910.JPEG", hint=HINT_RELEASE)
        class_entry = class_index.get(int(stimulus_id.split(".")[0]))
        labels.append(ImageLabel(stimulus_id=stimulus_id, file_name=row[1].strip() if len(row) > 1 else "",
                                 class_index=None if class_entry is None else class_entry[0],
                                 category=None if class_entry is None else class_entry[1]))
    if not labels:
        raise InputDataError(f"empty {what}", path=path, value=0, expected="one row per image", hint=HINT_RELEASE)
    unlabelled = sum(label.category is None for label in labels)
    if unlabelled:
        log.warning("%s: %d of %d images have no class in %s; their category stays empty",
                    path.name, unlabelled, len(labels), CLASS_INDEX_FILE)
    return labels


# ----------------------------------------------------------------------------------------------- subject arrays

@dataclass(frozen=True)
class GodSubjectArrays:
    """One subject's fMRI restricted to an ROI, with the image index of every trial.

    Attributes:
        train: float32 (n_train, n_voxels) training trials.
        test_trials: float32 (n_test_trials, n_voxels) single test trials.
        test_averaged: float32 (n_test_images, n_voxels); row i = test image i.
        train_image_index: int64 (n_train,) row of train_images shown in each training trial.
        test_image_index: int64 (n_test_trials,) row of test_images shown in each test trial.
        voxels: one row per voxel: voxel_index (column of the raw matrices), roi (finest mask containing it),
            noise_ceiling and snr when the file has them.
    """

    train: np.ndarray
    test_trials: np.ndarray
    test_averaged: np.ndarray
    train_image_index: np.ndarray
    test_image_index: np.ndarray
    voxels: pd.DataFrame


def finest_roi(masks: dict[str, np.ndarray], selected: np.ndarray, default: str) -> np.ndarray:
    """Name of the smallest mask containing each selected voxel (ties: alphabetical), `default` if none does.

    Args:
        masks: name -> bool (V_all,) ROI masks.
        selected: bool (V_all,) the voxels kept.
        default: name for voxels no mask contains.
    Returns:
        str array (n_selected,).
    """
    names = np.full(int(selected.sum()), default, dtype=object)
    assigned = np.zeros(int(selected.sum()), dtype=bool)
    for name in sorted(masks, key=lambda n: (int(masks[n].sum()), n)):
        inside = masks[name][selected] & ~assigned
        names[inside] = name
        assigned |= inside
    return names.astype(str)


def _read_array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise InputDataError(f"cannot read array {key!r} ({type(exc).__name__}: {exc})", path=path, value=key,
                             expected="a complete numpy .npz archive",
                             hint="the file is probably truncated or corrupt: download it again") from exc


def _fmri_matrix(array: np.ndarray, key: str, path: Path, n_voxels_all: int, meaning: str) -> np.ndarray:
    if (array.ndim != 2 or array.shape[1] != n_voxels_all or n_voxels_all == 0
            or not np.issubdtype(array.dtype, np.number)):
        raise InputDataError(f"{key} ({meaning}) has the wrong shape", path=path, value=f"{array.dtype} {array.shape}",
                             expected=f"a numeric (n, {n_voxels_all}) matrix, one column per ROI-mask entry",
                             hint=HINT_RELEASE)
    if array.shape[0] == 0:
        raise InputDataError(f"{key} ({meaning}) has no trials", path=path, value=array.shape,
                             expected="at least one trial", hint=HINT_RELEASE)
    return array


def _image_index(array: np.ndarray, key: str, path: Path, n_trials: int, n_images: int, images: str) -> np.ndarray:
    """Validate an index array (one image row per trial) and return it as int64 (n_trials,)."""
    index = np.asarray(array).reshape(-1) if array.ndim == 2 and 1 in array.shape else np.asarray(array)
    if index.ndim != 1 or index.shape[0] != n_trials or not np.issubdtype(index.dtype, np.number):
        raise InputDataError(f"{key} must give one {images} index per trial", path=path,
                             value=f"{index.dtype} {index.shape}", expected=f"a numeric ({n_trials},) array",
                             hint=HINT_RELEASE)
    if not np.all(np.isfinite(index)) or not np.all(index == np.round(index)):
        raise InputDataError(f"{key} holds non-integer {images} indices", path=path,
                             value=index[~(np.isfinite(index) & (index == np.round(index)))][:5].tolist(),
                             expected="integer row numbers", hint=HINT_RELEASE)
    index = index.astype(np.int64)
    bad = np.flatnonzero((index < 0) | (index >= n_images))
    if bad.size:
        raise InputDataError(f"{key} refers to {images} that do not exist", path=path,
                             value=f"index {int(index[bad[0]])} at trial {int(bad[0])} ({bad.size} such trials)",
                             expected=f"indices in [0, {n_images}) ({n_images} {images} in {IMAGES_FILE})",
                             hint=f"{path.name} and {IMAGES_FILE} must come from the same release")
    return index


def _open_archive(path: Path) -> Any:
    """np.load of an .npz archive, or an InputDataError naming the file when it is not a readable archive."""
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise InputDataError(f"cannot open the GOD subject file ({type(exc).__name__}: {exc})", path=path,
                             value=f"{path.stat().st_size} bytes", expected="a complete numpy .npz archive",
                             hint="the file is probably truncated or corrupt: download it again") from exc


def _roi_masks(archive: Any, path: Path, roi: str, n_voxels: int) -> dict[str, np.ndarray]:
    """The subject file's boolean ROI masks over its `n_voxels` voxels, by name: `roi` among them (an error if it
    is missing, not such a mask, or empty); other arrays that are not masks are skipped with a warning."""
    mask_names = sorted(k for k in archive.files if not ARRAY_KEY_RE.match(k))
    if roi not in mask_names:
        raise InputDataError(f"ROI mask {roi!r} not in the GOD subject file", path=path, value=roi,
                             expected=f"one of the masks {mask_names}",
                             hint="set preprocess.god.roi in config.yaml to one of them")
    masks = {}
    for name in mask_names:
        mask = _read_array(archive, name, path)
        if mask.shape != (n_voxels,) or not (mask.dtype == bool or np.isin(mask, (0, 1)).all()):
            if name == roi:
                raise InputDataError(f"ROI mask {roi!r} is not a boolean vector over the voxels", path=path,
                                     value=f"{mask.dtype} {mask.shape}",
                                     expected=f"bool ({n_voxels},), one entry per column of {TRAIN_FMRI}",
                                     hint=HINT_RELEASE)
            log.warning("%s: ignoring %r, not a boolean mask over %d voxels", path.name, name, n_voxels)
            continue
        masks[name] = mask.astype(bool)
    if not masks[roi].any():
        raise InputDataError(f"ROI mask {roi!r} selects no voxel", path=path, value=0,
                             expected="at least one voxel", hint="choose another preprocess.god.roi")
    return masks


def _voxel_table(archive: Any, path: Path, masks: dict[str, np.ndarray], roi: str) -> pd.DataFrame:
    """voxels.parquet of the `roi` voxels: index in the subject file, finest ROI, and the per-voxel noise ceiling
    and SNR where the file has them."""
    selected = masks[roi]
    voxels = pd.DataFrame({"voxel_index": np.flatnonzero(selected).astype(np.int64),
                           "roi": finest_roi(masks, selected, roi)})
    for key, column in ((NOISE_CEILING, "noise_ceiling"), (SNR, "snr")):
        if key in archive.files:
            values = _read_array(archive, key, path)
            if values.shape == selected.shape and np.issubdtype(values.dtype, np.number):
                voxels[column] = values[selected].astype(np.float64)
    return voxels


def read_subject_arrays(path: str | os.PathLike[str], roi: str, n_train_images: int,
                        n_test_images: int) -> GodSubjectArrays:
    """Read and check one sbj_<n>.npz, keeping the voxels of mask `roi` (only the arrays needed are read)."""
    path = require_file(path, "GOD subject file", hint=HINT_RELEASE)
    with _open_archive(path) as archive:
        missing = [k for k in REQUIRED_ARRAYS if k not in archive.files]
        if missing:
            raise InputDataError("GOD subject file lacks required arrays", path=path, value=missing,
                                 expected=f"arrays {list(REQUIRED_ARRAYS)} (found {sorted(archive.files)})",
                                 hint=HINT_RELEASE)
        train_all = _read_array(archive, TRAIN_FMRI, path)
        n_voxels_all = train_all.shape[1] if train_all.ndim == 2 else 0
        train_all = _fmri_matrix(train_all, TRAIN_FMRI, path, n_voxels_all, "training trials")
        masks = _roi_masks(archive, path, roi, n_voxels_all)
        selected = masks[roi]
        train = train_all[:, selected]
        del train_all
        test_trials = _fmri_matrix(_read_array(archive, TEST_TRIALS, path), TEST_TRIALS, path, n_voxels_all,
                                   "test trials")[:, selected]
        test_averaged = _fmri_matrix(_read_array(archive, TEST_AVERAGED, path), TEST_AVERAGED, path, n_voxels_all,
                                     "averaged test trials")[:, selected]
        train_index = _image_index(_read_array(archive, TRAIN_IMAGE_INDEX, path), TRAIN_IMAGE_INDEX, path,
                                   train.shape[0], n_train_images, "training images")
        test_index = _image_index(_read_array(archive, TEST_IMAGE_INDEX, path), TEST_IMAGE_INDEX, path,
                                  test_trials.shape[0], n_test_images, "test images")
        voxels = _voxel_table(archive, path, masks, roi)
    if test_averaged.shape[0] != n_test_images:
        raise InputDataError(f"{TEST_AVERAGED} must hold one averaged row per test image", path=path,
                             value=test_averaged.shape[0], expected=f"{n_test_images} rows (test images)",
                             hint=f"{path.name} and {IMAGES_FILE} must come from the same release")
    for key, matrix in ((TRAIN_FMRI, train), (TEST_TRIALS, test_trials), (TEST_AVERAGED, test_averaged)):
        check_finite(matrix, path, f"{key} restricted to {roi} (index = trial, ROI voxel)")
    return GodSubjectArrays(train=train.astype(np.float32), test_trials=test_trials.astype(np.float32),
                            test_averaged=test_averaged.astype(np.float32), train_image_index=train_index,
                            test_image_index=test_index, voxels=voxels)


# ----------------------------------------------------------------------------------------------- assembly

def _samples(arrays: GodSubjectArrays, train_labels: list[ImageLabel], test_labels: list[ImageLabel],
             repeats: np.ndarray, source: str) -> pd.DataFrame:
    """samples.parquet rows: training trials, averaged test images, single test trials (in that order)."""
    n_train, n_avg, n_single = len(arrays.train), len(arrays.test_averaged), len(arrays.test_trials)
    image_index = np.concatenate([arrays.train_image_index, np.arange(n_avg), arrays.test_image_index])
    labels = ([train_labels[i] for i in arrays.train_image_index] + test_labels
              + [test_labels[i] for i in arrays.test_image_index])
    trial = pd.array(np.concatenate([np.arange(n_train), np.full(n_avg, -1), np.arange(n_single)]), dtype="Int64")
    trial[n_train:n_train + n_avg] = pd.NA
    return pd.DataFrame({
        "sample_id": np.arange(n_train + n_avg + n_single, dtype=np.int64),
        "split": ["train"] * n_train + ["test"] * (n_avg + n_single),
        "stimulus_id": [label.stimulus_id for label in labels],
        "category": [label.category for label in labels],
        "n_averaged": np.concatenate([np.ones(n_train), repeats, np.ones(n_single)]).astype(np.int32),
        "source": source,
        "raw_array": [TRAIN_FMRI] * n_train + [TEST_AVERAGED] * n_avg + [TEST_TRIALS] * n_single,
        "trial": trial,
        "image_index": image_index.astype(np.int64),
        "class_index": pd.array([label.class_index for label in labels], dtype="Int64"),
        "wnid": [label.wnid for label in labels],
        "image_file": [label.file_name for label in labels],
    })


def _check_labels_match_images(labels: list[ImageLabel], n_images: int, labels_path: Path, key: str) -> None:
    if len(labels) != n_images:
        raise InputDataError(f"label file rows do not match the images of {IMAGES_FILE}[{key!r}]", path=labels_path,
                             value=len(labels), expected=f"{n_images} rows, one per image, in the same order",
                             hint="label csv files and images_256.npz must come from the same release")


def _read_labels(folder: Path, images_path: Path) -> tuple[list[ImageLabel], list[ImageLabel]]:
    """The training and test image labels, checked against the image archive (one row per image, unique ids)."""
    class_index = read_class_index(folder / CLASS_INDEX_FILE)
    train_labels = read_image_labels(folder / TRAIN_LABELS_FILE, class_index, "training image labels")
    test_labels = read_image_labels(folder / TEST_LABELS_FILE, class_index, "test image labels")
    for labels, file, key in ((train_labels, TRAIN_LABELS_FILE, TRAIN_IMAGES_KEY),
                              (test_labels, TEST_LABELS_FILE, TEST_IMAGES_KEY)):
        _check_labels_match_images(labels, npz_array_shape(images_path, key, "GOD image archive")[0], folder / file,
                                   key)
    ids = [label.stimulus_id for label in train_labels + test_labels]
    if len(set(ids)) != len(ids):
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        raise InputDataError("stimulus ids of the label files are not unique", path=folder / TRAIN_LABELS_FILE,
                             value=duplicated[:5], expected="one distinct GOD stimulus id per image", hint=HINT_RELEASE)
    return train_labels, test_labels


def _read_stimuli(images_path: Path, train_rows: np.ndarray, train_labels: list[ImageLabel],
                  test_labels: list[ImageLabel], image_size: int) -> Stimuli:
    """The subject's stimuli at `image_size` px: the training images at `train_rows` (those it saw), then every
    test image, read row by row from the archive."""
    test_rows = np.arange(len(test_labels))
    images = np.empty((len(train_rows) + len(test_rows), image_size, image_size, 3), dtype=np.uint8)
    read_npz_image_rows(images_path, TRAIN_IMAGES_KEY, train_rows, image_size, "GOD image archive",
                        out=images[:len(train_rows)])
    read_npz_image_rows(images_path, TEST_IMAGES_KEY, test_rows, image_size, "GOD image archive",
                        out=images[len(train_rows):])
    stimulus_id = np.array([train_labels[i].stimulus_id for i in train_rows]
                           + [test_labels[i].stimulus_id for i in test_rows], dtype=str)
    return Stimuli(images=images, stimulus_id=stimulus_id)


def preprocess_subject(raw_root: str | os.PathLike[str], subject: str, cfg: GodPreprocessConfig, image_size: int,
                       out_dir: str | os.PathLike[str]) -> PreprocessedSubject:
    """Preprocess one GOD subject into `out_dir` (samples, fmri, voxels, stimuli; written atomically).

    Args:
        raw_root: folder holding Kamitani/npz/.
        subject: `sbj_<n>`.
        cfg: ROI and normalisation.
        image_size: side in px of the stored stimulus images (resized from 256 with a Lanczos filter).
        out_dir: the subject's preprocessed folder.
    Returns:
        The subject as written. Raises InputDataError (and writes nothing) on any inconsistency of the raw files.
    """
    raw_root = Path(raw_root)
    sbj_path = _require_subject(raw_root, subject)
    images_path = require_file(raw_root / GOD_DIR / IMAGES_FILE, "GOD image archive", hint=HINT_RELEASE)
    train_labels, test_labels = _read_labels(raw_root / GOD_DIR, images_path)
    n_test_images = len(test_labels)
    arrays = read_subject_arrays(sbj_path, cfg.roi, len(train_labels), n_test_images)
    repeats = np.bincount(arrays.test_image_index, minlength=n_test_images)
    if (repeats == 0).any():
        raise InputDataError(f"test images without any single trial in {TEST_IMAGE_INDEX}", path=sbj_path,
                             value=np.flatnonzero(repeats == 0)[:5].tolist(),
                             expected=f"trials in {TEST_TRIALS} for every test image ({TEST_AVERAGED} averages them)",
                             hint=HINT_RELEASE)

    stats = fit_zscore(arrays.train, cfg.normalization)
    fmri = np.concatenate([apply_zscore(arrays.train, stats), apply_zscore(arrays.test_averaged, stats),
                           apply_zscore(arrays.test_trials, stats)])
    mean, std = stats.per_voxel(fmri.shape[1])
    voxels = arrays.voxels.assign(mean=mean, std=std)[["roi", "mean", "std", *arrays.voxels.columns.drop("roi")]]
    samples = _samples(arrays, train_labels, test_labels, repeats, (GOD_DIR / sbj_path.name).as_posix())
    stimuli = _read_stimuli(images_path, np.unique(arrays.train_image_index), train_labels, test_labels, image_size)
    subject_data = PreprocessedSubject(samples=samples, fmri=fmri, voxels=voxels,
                                       stimuli=stimuli)
    write_subject(out_dir, subject_data)
    log.info("GOD %s: %d train, %d averaged test (%s trials each), %d single test trials; %d %s voxels; "
             "%s z-score fitted on the training trials", subject, len(arrays.train), n_test_images,
             "/".join(map(str, sorted(set(repeats.tolist())))), len(arrays.test_trials), fmri.shape[1], cfg.roi,
             cfg.normalization)
    return subject_data
