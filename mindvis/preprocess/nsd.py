"""Natural Scenes Dataset (Allen et al. 2022), official release -> the preprocessed-data contract.

Raw layout under `<raw_root>/NSD/` (the release's own paths; `subjNN` = subj01..subj08, `SS` = 01..40):

- `nsddata/experiments/nsd/nsd_expdesign.mat` (MATLAB, read with scipy.io.loadmat), all indices 1-based:
  `masterordering` (1, 30000): for each trial in chronological order, the index (1..10000) of the subject's image,
  i.e. a column of `subjectim`; `subjectim` (8, 10000): the 73k NSD id (1..73000) of each subject's images;
  `sharedix` (1, 1000): the 73k ids of the shared1000 images seen by all subjects; `stimpattern` (40, 12, 75): 1
  where a run slot held a stimulus trial. Trial t of session s (both 1-based) is masterordering entry
  (trials before session s) + t; a session holds stimpattern[s].sum() trials (750; 750 when stimpattern is absent).
- `nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5`: `imgBrick` uint8 (73000, 425, 425, 3) as h5py shows it; the image
  of NSD id n is imgBrick[n - 1]. Only the subject's images are read, a chunk of rows at a time.
- `nsddata/ppdata/subjNN/func1pt8mm/roi/<roi>.nii.gz`: the ROI volume (X, Y, Z) on the betas' grid; nsdgeneral is 1
  inside the ROI, 0 outside it and -1 outside the brain. Voxels with a value > 0 are kept, in C order of (i, j, k).
- `nsddata_betas/ppdata/subjNN/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_sessionSS.nii.gz`: int16 (X, Y, Z, 750)
  (nibabel's axis order), or its twin `betas_sessionSS.hdf5`, whose `/betas` the manual describes in MATLAB's
  order as X x Y x Z x 750 and which h5py (C order) therefore shows as (750, Z, Y, X). Both hold percent signal
  change x 300: values are divided by 300. When both files exist the .hdf5 is read (random access, no
  decompression).

As MindEye: every session's betas are z-scored per voxel over that session's trials; `train` = single trials of the
subject's images outside shared1000 (n_averaged 1); `test` = each shared1000 image the subject saw more than once
in the sessions read, averaged over its repeats (n_averaged = repeats), plus every single shared1000 trial
(n_averaged 1), as for GOD and BOLD5000 (a shared image seen once appears as a single trial only).
`stimulus_id` is the 73k NSD id (1-based, as in the design file) as text; `category` is null (COCO images carry no
single class). Dataset-specific sample columns: `nsd_id` (int), `session` (1-based), `trial` (1-based within the
session; null for averaged rows); `source` is the betas file of the trial (the design file for averaged rows).
voxels.parquet: `roi` (the ROI name, with the label value for multi-label volumes), `mean` / `std` (the mean over
sessions of each session's per-voxel statistics, in percent signal change), `i`, `j`, `k` (voxel coordinates on the
func1pt8mm grid). Stimuli are stored at `image_size` px (centre square, Lanczos) in NSD id order.

One job per subject, streaming session by session: memory holds the ROI columns of the output matrix and a slice
of one session's betas (TRIAL_CHUNK trials of the ROI's bounding box, or one z-slab of an .hdf5), never a whole
session volume.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mindvis.config.data import NsdPreprocessConfig
from mindvis.data.contract import PreprocessedSubject, Stimuli, write_subject
from mindvis.data.images import resize_images
from mindvis.errors import InputDataError
from mindvis.io import require_file

log = logging.getLogger(__name__)

DATASET = "NSD"
NSD_DIR = Path("NSD")
DESIGN_FILE = NSD_DIR / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat"
STIMULI_FILE = NSD_DIR / "nsddata_stimuli" / "stimuli" / "nsd" / "nsd_stimuli.hdf5"
BRICK_KEY = "imgBrick"
BETAS_KEY = "betas"
RESOLUTION = "func1pt8mm"
BETA_VERSION = "betas_fithrf_GLMdenoise_RR"
BETA_SCALE = 300.0  # int16 betas are percent signal change x 300
TRIALS_PER_SESSION = 750  # when the design file has no stimpattern
SUBJECT_RE = re.compile(r"^subj(\d{2})$")
SESSION_RE = re.compile(r"^betas_session(\d{2})\.(nii\.gz|hdf5)$")
HINT_RELEASE = "files must come from the NSD release (README, 'Raw inputs': NSD)"
IMAGE_CHUNK = 64  # brick rows read per h5py call


# ----------------------------------------------------------------------------------------------- layout

def roi_file(raw_root: str | os.PathLike[str], subject: str, roi: str) -> Path:
    """`NSD/nsddata/ppdata/<subject>/func1pt8mm/roi/<roi>.nii.gz`."""
    return Path(raw_root) / NSD_DIR / "nsddata" / "ppdata" / subject / RESOLUTION / "roi" / f"{roi}.nii.gz"


def betas_dir(raw_root: str | os.PathLike[str], subject: str) -> Path:
    """`NSD/nsddata_betas/ppdata/<subject>/func1pt8mm/betas_fithrf_GLMdenoise_RR/`."""
    return Path(raw_root) / NSD_DIR / "nsddata_betas" / "ppdata" / subject / RESOLUTION / BETA_VERSION


def session_file(raw_root: str | os.PathLike[str], subject: str, session: int, suffix: str = "nii.gz") -> Path:
    """The betas of one session (1-based): `betas_sessionSS.nii.gz`, or the `.hdf5` twin with suffix "hdf5"."""
    return betas_dir(raw_root, subject) / f"betas_session{session:02d}.{suffix}"


def subject_number(subject: str) -> int:
    """`subjNN` -> NN (1-based row of subjectim); an InputDataError for other names."""
    match = SUBJECT_RE.match(subject)
    if match is None or int(match.group(1)) < 1:
        raise InputDataError("not an NSD subject name", value=subject, expected="subj01 .. subj08",
                             hint="set subjects.NSD to names like subj01")
    return int(match.group(1))


def find_subjects(raw_root: str | os.PathLike[str]) -> list[str]:
    """Subjects with a betas folder below `NSD/nsddata_betas/ppdata/` (sorted)."""
    ppdata = Path(raw_root) / NSD_DIR / "nsddata_betas" / "ppdata"
    if not ppdata.is_dir():
        return []
    return sorted(p.name for p in ppdata.iterdir() if SUBJECT_RE.match(p.name) and betas_dir(raw_root, p.name).is_dir())


def find_sessions(raw_root: str | os.PathLike[str], subject: str) -> list[int]:
    """Sessions (1-based, sorted) whose betas file (.nii.gz or .hdf5) is present."""
    folder = betas_dir(raw_root, subject)
    if not folder.is_dir():
        return []
    return sorted({int(m.group(1)) for p in folder.iterdir() if (m := SESSION_RE.match(p.name))})


def betas_file(raw_root: str | os.PathLike[str], subject: str, session: int) -> Path:
    """The file a session's betas are read from: the .hdf5 when present, else the .nii.gz (an error if neither)."""
    hdf5 = session_file(raw_root, subject, session, "hdf5")
    if hdf5.is_file():
        return hdf5
    return require_file(session_file(raw_root, subject, session), f"NSD betas of session {session}",
                        hint=f"download betas_session{session:02d}.nii.gz (or .hdf5), or leave session {session} "
                             "out of preprocess.nsd.sessions")


def chosen_sessions(raw_root: str | os.PathLike[str], subject: str, sessions: Sequence[int] | None) -> list[int]:
    """The sessions to read: the configured ones, else every one present (an error when there is none)."""
    if sessions is not None:
        return sorted(set(sessions))
    found = find_sessions(raw_root, subject)
    if not found:
        raise InputDataError("no NSD betas sessions found", path=betas_dir(raw_root, subject), value=subject,
                             expected="betas_session01.nii.gz (or .hdf5) and following", hint=HINT_RELEASE)
    return found


def raw_files(raw_root: str | os.PathLike[str], subject: str, cfg: NsdPreprocessConfig) -> list[Path]:
    """Every raw file one subject's preprocessing reads (the Snakemake inputs of its job)."""
    raw_root = Path(raw_root)
    files = [raw_root / DESIGN_FILE, raw_root / STIMULI_FILE, roi_file(raw_root, subject, cfg.roi)]
    for session in (cfg.sessions if cfg.sessions is not None else find_sessions(raw_root, subject)):
        hdf5 = session_file(raw_root, subject, session, "hdf5")
        files.append(hdf5 if hdf5.is_file() else session_file(raw_root, subject, session))
    return files


# ----------------------------------------------------------------------------------------------- design

@dataclass(frozen=True)
class NsdDesign:
    """The experimental design of one subject (from nsd_expdesign.mat), 0-based where it says so.

    Attributes:
        trial_ids: int64 (n_trials,): the 73k NSD id (1-based, as the release) shown at each trial, chronological.
        session_trials: int64 (n_sessions,): trials per session (session s = entry s - 1).
        shared: the 73k ids (1-based) of shared1000.
    """

    trial_ids: np.ndarray
    session_trials: np.ndarray
    shared: frozenset[int]

    def session_rows(self, session: int) -> np.ndarray:
        """Indices (0-based, into trial_ids) of the trials of `session` (1-based)."""
        start = int(self.session_trials[:session - 1].sum())
        return np.arange(start, start + int(self.session_trials[session - 1]))


def _design_array(design: dict, key: str, path: Path) -> np.ndarray:
    if key not in design:
        raise InputDataError(f"NSD design file lacks {key!r}", path=path, value=sorted(k for k in design
                                                                                       if not k.startswith("__")),
                             expected="masterordering, subjectim and sharedix (1-based indices)", hint=HINT_RELEASE)
    array = np.asarray(design[key])
    if not np.issubdtype(array.dtype, np.number):
        raise InputDataError(f"NSD design array {key!r} is not numeric", path=path, value=str(array.dtype),
                             expected="integer indices", hint=HINT_RELEASE)
    return array


def read_design(raw_root: str | os.PathLike[str], subject: str) -> NsdDesign:
    """The subject's trial sequence from nsd_expdesign.mat (73k ids per trial, trials per session, shared1000)."""
    from scipy.io import loadmat

    path = require_file(Path(raw_root) / DESIGN_FILE, "NSD experimental design", hint=HINT_RELEASE)
    try:
        design = loadmat(path)
    except (ValueError, OSError, NotImplementedError) as exc:  # NotImplementedError: a v7.3 (HDF5) .mat
        raise InputDataError(f"cannot read the NSD design file ({type(exc).__name__}: {exc})", path=path,
                             expected="the release's nsd_expdesign.mat (MATLAB v5)", hint=HINT_RELEASE) from exc
    order = _design_array(design, "masterordering", path).ravel().astype(np.int64)
    subjectim = _design_array(design, "subjectim", path).astype(np.int64)
    shared = _design_array(design, "sharedix", path).ravel().astype(np.int64)
    number = subject_number(subject)
    if subjectim.ndim != 2 or number > subjectim.shape[0]:
        raise InputDataError(f"{subject} is not in the design's subjectim", path=path,
                             value=f"subjectim {subjectim.shape}", expected=f"a row for subject {number}",
                             hint="check the subject name (subj01 .. subj08)")
    if order.size == 0 or order.min() < 1 or order.max() > subjectim.shape[1]:
        raise InputDataError("masterordering refers outside subjectim's columns", path=path,
                             value=f"{order.min() if order.size else None}..{order.max() if order.size else None}",
                             expected=f"1-based indices 1..{subjectim.shape[1]}", hint=HINT_RELEASE)
    trial_ids = subjectim[number - 1, order - 1]
    if "stimpattern" in design:
        pattern = np.asarray(design["stimpattern"])
        session_trials = pattern.reshape(pattern.shape[0], -1).sum(axis=1).astype(np.int64)
    else:
        session_trials = np.full(len(trial_ids) // TRIALS_PER_SESSION, TRIALS_PER_SESSION, dtype=np.int64)
    if session_trials.sum() != len(trial_ids):
        raise InputDataError("stimpattern and masterordering disagree on the number of trials", path=path,
                             value=f"{int(session_trials.sum())} vs {len(trial_ids)}",
                             expected="one masterordering entry per stimulus trial of stimpattern", hint=HINT_RELEASE)
    return NsdDesign(trial_ids=trial_ids, session_trials=session_trials, shared=frozenset(shared.tolist()))


# ----------------------------------------------------------------------------------------------- voxels

@dataclass(frozen=True)
class RoiVoxels:
    """The voxels of an ROI volume: integer coordinates (n, 3) in C order of (i, j, k), label values (n,), the
    grid shape (X, Y, Z) and the bounding box (lo, hi) of the coordinates (inclusive lo, exclusive hi)."""

    coords: np.ndarray
    labels: np.ndarray
    grid: tuple[int, int, int]

    @property
    def box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.coords.min(axis=0), self.coords.max(axis=0) + 1


def read_roi(path: str | os.PathLike[str], roi: str) -> RoiVoxels:
    """Voxels with a value > 0 in an ROI volume (nsdgeneral: 1 = in the ROI, 0 = not, -1 = outside the brain)."""
    import nibabel as nib

    path = require_file(path, f"NSD ROI volume {roi}", hint="set preprocess.nsd.roi to a file of roi/ (nsdgeneral)")
    try:
        volume = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception as exc:  # nibabel raises many types for a damaged file
        raise InputDataError(f"cannot read the NSD ROI volume ({type(exc).__name__}: {exc})", path=path,
                             expected="a NIfTI volume (X, Y, Z)", hint=HINT_RELEASE) from exc
    volume = np.squeeze(volume)
    if volume.ndim != 3:
        raise InputDataError("the NSD ROI volume is not 3-D", path=path, value=volume.shape,
                             expected="(X, Y, Z) on the func1pt8mm grid", hint=HINT_RELEASE)
    coords = np.argwhere(volume > 0)
    if len(coords) == 0:
        raise InputDataError(f"the ROI {roi} selects no voxel", path=path, value=0,
                             expected="voxels with a value > 0", hint="choose another preprocess.nsd.roi")
    return RoiVoxels(coords=coords.astype(np.int64), labels=volume[tuple(coords.T)].astype(np.int64),
                     grid=tuple(int(n) for n in volume.shape))


# ----------------------------------------------------------------------------------------------- betas

TRIAL_CHUNK = 50  # NIfTI trials decompressed and gathered per slice


@dataclass(frozen=True)
class SessionBetas:
    """One session's ROI betas as stored: (trials, voxels) in the file's dtype, the file's full (X, Y, Z, T), and
    whether the file stores integers (the release's int16 x 300; NIfTI: the on-disk type, whatever scaling its
    header asks nibabel to apply)."""

    values: np.ndarray
    shape: tuple[int, ...]
    stored_integer: bool


def _gather_hdf5(path: Path, roi: RoiVoxels) -> SessionBetas:
    """ROI betas of an HDF5 twin, whose `/betas` h5py shows as (T, Z, Y, X): one z-slab of the ROI's box at a time
    (a box read in one call makes HDF5 keep per-chunk state for every one-voxel chunk of the release's layout)."""
    import h5py

    lo, hi = roi.box
    try:
        with h5py.File(path, "r") as file:
            data = file[BETAS_KEY]
            if data.ndim != 4:
                raise InputDataError("NSD betas are not 4-D", path=path, value=data.shape,
                                     expected="(750, Z, Y, X) as h5py shows MATLAB's X x Y x Z x 750",
                                     hint=HINT_RELEASE)
            shape = tuple(int(n) for n in data.shape[::-1])  # -> (X, Y, Z, T)
            stored_integer = bool(np.issubdtype(data.dtype, np.integer))
            values = np.empty((shape[3], len(roi.coords)), dtype=data.dtype)
            if shape[:3] == roi.grid:
                for k in range(lo[2], hi[2]):
                    in_slab = np.flatnonzero(roi.coords[:, 2] == k)
                    if in_slab.size:
                        slab = data[:, k, lo[1]:hi[1], lo[0]:hi[0]]  # (T, y, x)
                        local = roi.coords[in_slab] - lo
                        values[:, in_slab] = slab[:, local[:, 1], local[:, 0]]
    except (OSError, KeyError) as exc:
        raise InputDataError(f"cannot read the NSD betas ({type(exc).__name__}: {exc})", path=path,
                             expected=f"an HDF5 file with a 4-D '/{BETAS_KEY}' dataset",
                             hint="the file is probably truncated: download it again") from exc
    return SessionBetas(values, shape, stored_integer)


def _gather_nifti(path: Path, roi: RoiVoxels) -> SessionBetas:
    """ROI betas of a NIfTI session (X, Y, Z, T): the ROI's box, TRIAL_CHUNK trials at a time, from one open file
    (gzip cannot seek: reopening it per slice would decompress from the start every time)."""
    import nibabel as nib

    lo, hi = roi.box
    try:
        image = nib.load(str(path), keep_file_open=True)
        shape = tuple(int(n) for n in image.shape)
        if len(shape) != 4:
            raise InputDataError("NSD betas are not 4-D", path=path, value=shape, expected="(X, Y, Z, 750)",
                                 hint=HINT_RELEASE)
        stored_integer = bool(np.issubdtype(image.get_data_dtype(), np.integer))
        if shape[:3] != roi.grid:
            return SessionBetas(np.empty((shape[3], 0)), shape, stored_integer)
        local = roi.coords - lo
        chunks = []
        for t0 in range(0, shape[3], TRIAL_CHUNK):
            box = np.asanyarray(image.dataobj[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2], t0:t0 + TRIAL_CHUNK])
            chunks.append(box[local[:, 0], local[:, 1], local[:, 2], :].T)  # (trials, voxels)
    except InputDataError:
        raise
    except Exception as exc:  # nibabel / gzip / zlib errors of a damaged file
        raise InputDataError(f"cannot read the NSD betas ({type(exc).__name__}: {exc})", path=path,
                             expected="a NIfTI volume (X, Y, Z, 750)",
                             hint="the file is probably truncated: download it again") from exc
    return SessionBetas(np.concatenate(chunks), shape, stored_integer)


def read_session_betas(path: str | os.PathLike[str], roi: RoiVoxels, n_trials: int) -> np.ndarray:
    """One session's betas of the ROI voxels in percent signal change: float32 (n_trials, n_voxels).

    Files stored as integers (the release's int16) are divided by 300; float files are taken as percent signal
    change. Raises InputDataError when the file's grid is not the ROI's, its trial count is not the design's
    `n_trials`, or ROI voxels hold NaN / inf.
    """
    path = Path(path)
    session = _gather_hdf5(path, roi) if path.suffix == ".hdf5" else _gather_nifti(path, roi)
    if session.shape[:3] != roi.grid:
        raise InputDataError("NSD betas and the ROI volume are on different grids", path=path,
                             value=f"betas {session.shape[:3]}", expected=f"the ROI's grid {roi.grid}",
                             hint="use betas and ROI of the same subject and the same resolution (func1pt8mm)")
    if session.shape[3] != n_trials:
        raise InputDataError("NSD session has another number of trials than the design", path=path,
                             value=session.shape[3], expected=f"{n_trials} trials (nsd_expdesign.mat)",
                             hint=HINT_RELEASE)
    betas = session.values.astype(np.float32)
    if session.stored_integer:
        betas /= BETA_SCALE
    finite = np.isfinite(betas)
    if not finite.all():
        trial, voxel = np.argwhere(~finite)[0]
        raise InputDataError("NaN or infinite NSD betas in ROI voxels", path=path,
                             value=f"{int((~finite).sum())} values, first at trial {trial + 1}, voxel "
                                   f"(i, j, k) = {tuple(int(c) for c in roi.coords[voxel])}",
                             expected="finite betas in every ROI voxel",
                             hint="the file is damaged, or choose an ROI without these voxels")
    return betas


def zscore_session(betas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-voxel z-score over one session's trials: (z float32 (T, V), mean (V,), std (V,) float64); a constant
    voxel gets std 1 (its z is 0)."""
    mean = betas.mean(axis=0, dtype=np.float64)
    std = betas.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return ((betas - mean) / std).astype(np.float32), mean, std


# ----------------------------------------------------------------------------------------------- stimuli

def read_stimuli(raw_root: str | os.PathLike[str], nsd_ids: np.ndarray, image_size: int) -> Stimuli:
    """The images of `nsd_ids` (1-based 73k ids, unique) from the stimulus brick at `image_size` px, read a chunk of
    sorted rows at a time (the brick is 37 GB; memory holds the output and one chunk)."""
    import h5py

    path = require_file(Path(raw_root) / STIMULI_FILE, "NSD stimulus brick", hint=HINT_RELEASE)
    ids = np.sort(np.asarray(nsd_ids, dtype=np.int64))
    images = np.empty((len(ids), image_size, image_size, 3), dtype=np.uint8)
    try:
        with h5py.File(path, "r") as file:
            brick = file[BRICK_KEY]
            if brick.ndim != 4 or brick.shape[-1] != 3:
                raise InputDataError("the NSD stimulus brick is not (n, H, W, 3)", path=path, value=brick.shape,
                                     expected="imgBrick (73000, 425, 425, 3) uint8", hint=HINT_RELEASE)
            outside = ids[(ids < 1) | (ids > brick.shape[0])]
            if outside.size:
                raise InputDataError("NSD ids outside the stimulus brick", path=path, value=outside[:5].tolist(),
                                     expected=f"73k ids 1..{brick.shape[0]} (imgBrick rows + 1)", hint=HINT_RELEASE)
            for start in range(0, len(ids), IMAGE_CHUNK):
                chunk = ids[start:start + IMAGE_CHUNK]
                images[start:start + len(chunk)] = resize_images(brick[chunk - 1], image_size)
    except (OSError, KeyError) as exc:
        raise InputDataError(f"cannot read the NSD stimulus brick ({type(exc).__name__}: {exc})", path=path,
                             expected=f"an HDF5 file with '/{BRICK_KEY}'",
                             hint="the file is probably truncated: download it again") from exc
    return Stimuli(images=images, stimulus_id=ids.astype(str))


# ----------------------------------------------------------------------------------------------- assembly

@dataclass(frozen=True)
class TrialPlan:
    """Where each read trial goes: the trials (rows of NsdDesign.trial_ids, in session order), their session and
    1-based trial number, whether their image is shared1000, and the output row of each (train trials first, then
    the averaged test rows, then the single test trials)."""

    rows: np.ndarray
    session: np.ndarray
    trial: np.ndarray
    ids: np.ndarray
    test: np.ndarray
    averaged_ids: np.ndarray
    repeats: np.ndarray

    @property
    def n_train(self) -> int:
        return int((~self.test).sum())

    def output_rows(self) -> np.ndarray:
        """The fmri row of each read trial: train trials in order, single test trials after the averaged rows."""
        out = np.empty(len(self.rows), dtype=np.int64)
        out[~self.test] = np.arange(self.n_train)
        out[self.test] = self.n_train + len(self.averaged_ids) + np.arange(int(self.test.sum()))
        return out


def plan_trials(design: NsdDesign, sessions: Sequence[int]) -> TrialPlan:
    """The trials of `sessions` and how they split (see TrialPlan); an error when a session is not in the design."""
    for session in sessions:
        if not 1 <= session <= len(design.session_trials):
            raise InputDataError("session outside the NSD design", value=session,
                                 expected=f"sessions 1..{len(design.session_trials)}",
                                 hint="fix preprocess.nsd.sessions")
    parts = [design.session_rows(s) for s in sessions]
    rows = np.concatenate(parts)
    session = np.concatenate([np.full(len(p), s) for p, s in zip(parts, sessions, strict=True)])
    trial = np.concatenate([np.arange(1, len(p) + 1) for p in parts])
    ids = design.trial_ids[rows]
    test = np.isin(ids, np.fromiter(design.shared, dtype=np.int64))
    test_ids, repeats = np.unique(ids[test], return_counts=True)
    return TrialPlan(rows=rows, session=session, trial=trial, ids=ids, test=test,
                     averaged_ids=test_ids[repeats > 1], repeats=repeats[repeats > 1])


def _samples(plan: TrialPlan, sources: dict[int, str], design_source: str) -> pd.DataFrame:
    """samples.parquet rows in fmri row order: train trials, averaged test images, single test trials."""
    n_avg, n_single = len(plan.averaged_ids), int(plan.test.sum())

    def in_row_order(per_trial: np.ndarray, averaged: np.ndarray) -> np.ndarray:
        return np.concatenate([per_trial[~plan.test], averaged, per_trial[plan.test]])

    ids = in_row_order(plan.ids, plan.averaged_ids)
    no_trial = np.full(n_avg, None, dtype=object)  # averaged rows belong to no session / trial
    return pd.DataFrame({
        "sample_id": np.arange(len(ids), dtype=np.int64),
        "split": ["train"] * plan.n_train + ["test"] * (n_avg + n_single),
        "stimulus_id": ids.astype(str),
        "category": pd.Series([None] * len(ids), dtype="string"),
        "n_averaged": in_row_order(np.ones(len(plan.ids)), plan.repeats).astype(np.int32),
        "source": in_row_order(np.array([sources[s] for s in plan.session], dtype=object),
                               np.full(n_avg, design_source, dtype=object)),
        "nsd_id": ids,
        "session": pd.array(in_row_order(plan.session.astype(object), no_trial), dtype="Int64"),
        "trial": pd.array(in_row_order(plan.trial.astype(object), no_trial), dtype="Int64"),
    })


def _stream_sessions(files: dict[int, Path], subject: str, design: NsdDesign, roi: RoiVoxels
                     ) -> Iterator[tuple[int, Path, np.ndarray, np.ndarray, np.ndarray]]:
    """For each session (of `files`: session -> betas file): (session, file, z-scored ROI betas (T, V), per-voxel
    mean, std)."""
    from tqdm.auto import tqdm

    for session, path in tqdm(files.items(), desc=f"{subject} sessions", unit="session", disable=None):
        betas = read_session_betas(path, roi, int(design.session_trials[session - 1]))
        yield (session, path, *zscore_session(betas))


def preprocess_subject(raw_root: str | os.PathLike[str], subject: str, cfg: NsdPreprocessConfig, image_size: int,
                       out_dir: str | os.PathLike[str]) -> PreprocessedSubject:
    """Preprocess one NSD subject into `out_dir` (samples, fmri, voxels, stimuli; written atomically).

    Raises InputDataError (and writes nothing) on a missing or unreadable file, a subject absent from the design,
    betas on another grid than the ROI, a session whose trial count disagrees with the design, NSD ids outside the
    stimulus brick, or NaN betas in ROI voxels.
    """
    raw_root = Path(raw_root)
    design = read_design(raw_root, subject)
    roi = read_roi(roi_file(raw_root, subject, cfg.roi), cfg.roi)
    sessions = chosen_sessions(raw_root, subject, cfg.sessions)
    plan = plan_trials(design, sessions)
    files = {session: betas_file(raw_root, subject, session) for session in sessions}  # all present before reading
    n_avg = len(plan.averaged_ids)
    fmri = np.empty((plan.n_train + n_avg + int(plan.test.sum()), len(roi.coords)), dtype=np.float32)
    test_sums = np.zeros((n_avg, len(roi.coords)), dtype=np.float64)
    averaged_row = {int(i): r for r, i in enumerate(plan.averaged_ids)}
    out_rows, means, stds, sources, start = plan.output_rows(), [], [], {}, 0
    for session, path, z, mean, std in _stream_sessions(files, subject, design, roi):
        rows = out_rows[start:start + len(z)]
        fmri[rows] = z
        for k in np.flatnonzero(plan.test[start:start + len(z)]):
            target = averaged_row.get(int(plan.ids[start + k]))
            if target is not None:
                test_sums[target] += z[k]
        means.append(mean)
        stds.append(std)
        sources[session] = path.relative_to(raw_root).as_posix()
        start += len(z)
    fmri[plan.n_train:plan.n_train + n_avg] = (test_sums / plan.repeats[:, None]).astype(np.float32)
    voxels = pd.DataFrame({"roi": _roi_names(cfg.roi, roi.labels), "mean": np.mean(means, axis=0),
                           "std": np.mean(stds, axis=0), "i": roi.coords[:, 0], "j": roi.coords[:, 1],
                           "k": roi.coords[:, 2]})
    samples = _samples(plan, sources, DESIGN_FILE.as_posix())
    stimuli = read_stimuli(raw_root, np.unique(plan.ids), image_size)
    subject_data = PreprocessedSubject(samples=samples, fmri=fmri, voxels=voxels, stimuli=stimuli)
    write_subject(out_dir, subject_data)
    log.info("NSD %s: %d sessions, %d train trials, %d averaged shared1000 images, %d single test trials; %d %s voxels",
             subject, len(sessions), plan.n_train, n_avg, int(plan.test.sum()), fmri.shape[1], cfg.roi)
    return subject_data


def _roi_names(roi: str, labels: np.ndarray) -> np.ndarray:
    """The roi column: the ROI's name, with the label value when the volume has several labels (prf-visualrois)."""
    if np.unique(labels).size == 1:
        return np.full(len(labels), roi, dtype=object)
    return np.array([f"{roi}_{label}" for label in labels], dtype=object)
