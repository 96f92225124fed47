"""Demo NSD (Natural Scenes Dataset, Allen et al. 2022) files in the layout and formats of the official release.

Under `NSD/` (paths and formats as mindvis.preprocess.nsd reads them; `subjNN` = the demo's NSD subjects, `SS` = 01..
demo_data.nsd.sessions):
- `nsddata/experiments/nsd/nsd_expdesign.mat` (MATLAB v5, scipy.io.savemat), integer arrays (int32 here: indexing
  code written for the release uses them as indices directly, so they are integers there too), all indices 1-based:
  `masterordering` (1, sessions * trials_per_session): the trial sequence, shared by every subject, as columns of
  `subjectim`; `subjectim` (8, n_shared + n_own): the NSD ids of each subject's images, the shared images first (in
  `sharedix` order, identical for every subject, as in the release), then the subject's own images in ascending id
  order; `sharedix` (1, n_shared): the ascending NSD ids of the demo's "shared1000"; `stimpattern` (sessions, runs,
  slots), logical: 1 where a run slot holds a stimulus trial (per-session sums = trials_per_session; NSD: 40 x 12 x 75
  summing to 750).
- `nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5`: `imgBrick` uint8 (n_ids, S, S, 3) (S = image_size_px), the image
  of NSD id n at row n - 1. The demo's NSD ids are 1..n_ids and the brick holds exactly the images the design uses
  (the release's brick holds all 73,000 images at 425 px, uncompressed; the demo's is gzip-compressed one image per
  chunk to stay small, which h5py readers do not see).
- `nsddata/ppdata/subjNN/func1pt8mm/roi/nsdgeneral.nii.gz`: int16 (X, Y, Z) on demo_data.nsd.grid with 1.8 mm
  voxels (RAS+ affine, origin at the grid centre): 1 in the ROI (`roi_voxels` voxels, a contiguous blob of posterior
  cortex around the occipital pole), 0 in the rest of an ellipsoidal brain, -1 outside the brain (as the release).
- `nsddata_betas/ppdata/subjNN/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_sessionSS.nii.gz`: int16
  (X, Y, Z, trials_per_session), percent signal change x 300, trials in masterordering order. ROI voxels carry the
  virtual cortex's single-trial responses, other brain voxels noise, voxels outside the brain 0 (the release zeroes
  them). Each voxel's betas get a per-session offset and scale (scanner drift, as between real sessions), so per-
  session z-scoring matters.

Images. The demo LDM and n-way classifier know exactly the demo categories (mindvis.demo.images), so every NSD image
is a fresh image (own random stream, never a GOD or BOLD5000 image) of a demo category drawn uniformly from all of
them, GOD's train and test categories alike, as the BOLD5000 demo does: NSD's shared1000 are COCO images like the
rest, not held-out categories, so the demo's shared (test) images come from the same categories as its training
images. Every one of the design's 8 subject rows gets its own images (as the release's subjectim), so the design file
and the brick do not depend on which subjects the demo synthesizes; n_ids = n_shared + 8 * n_own.

Trials. Each subject sees the same trial structure (one masterordering, as NSD): every shared image `repeats` times,
every own image once (the training trials: sessions * trials_per_session - n_shared * repeats of them; NSD shows
all its 10,000 images up to 3 times, but the contract's train split holds single trials anyway). Shared
presentations are dealt to sessions round-robin in a random image order, so consecutive repeats of an image fall in
different sessions (when sessions >= repeats) and every session holds a balanced share of the test trials; the rest of
a session's trials are own images; each session's trials are then shuffled.

Cortex. One virtual cortex per subject (mindvis.demo.cortex, the same machinery and DemoCortexConfig as GOD and
BOLD5000) with GOD-like areas (V1-V4, LOC, FFA, PPA and other high-level cortex) in both hemispheres: a hemisphere's
ROI voxels (left: x < 0) are ordered by distance from the occipital pole and dealt to V1, V2, ... in that order, so
early areas sit at the pole. Responses are in the cortex's units (the drive has s.d. 1 before the gain) and become
percent signal change through a per-voxel mean and scale.
"""

from __future__ import annotations

import gzip
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mindvis.config.data import DemoDataConfig
from mindvis.demo import cortex as vc
from mindvis.demo.images import Category, Instance, category_table, render_stimuli
from mindvis.demo.streams import stream
from mindvis.errors import ConfigError, InputDataError
from mindvis.io import atomic_path
from mindvis.preprocess.nsd import (
    BETA_SCALE,
    BRICK_KEY,
    DESIGN_FILE,
    STIMULI_FILE,
    roi_file,
    session_file,
    subject_number,
)

log = logging.getLogger(__name__)

DATASET = "NSD"
ROI = "nsdgeneral"
N_SUBJECT_ROWS = 8
"""Rows of subjectim: NSD's subj01..subj08."""
VOXEL_MM = 1.8
RUNS_PER_SESSION = 12  # NSD: 12 runs per session
SLOTS_PER_TRIAL = 75 / 62.5  # NSD: 75 slots per run, 62.5 stimulus trials per run on average
MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by: mindvis demo (NSD design)"
"""Header text of the design file (scipy writes the creation time there; a fixed text keeps the file byte-stable)."""
BRAIN_FILL = 0.46  # semi-axes of the brain ellipsoid, as a fraction of the grid's dimensions
MAX_ROI_FRACTION = 0.6  # at most this fraction of the brain is ROI, the rest is the brain region around it
# Fractions of the ROI per area (GOD's VC proportions) in the order they are laid out from the occipital pole.
AREAS: tuple[tuple[str, vc.AreaKind, float, float], ...] = (
    ("V1", "retinotopic", 0.0, 0.23), ("V2", "retinotopic", 0.25, 0.19), ("V3", "retinotopic", 0.5, 0.16),
    ("V4", "retinotopic", 0.8, 0.12), ("LOC", "object", 1.0, 0.13), ("FFA", "face", 1.0, 0.06),
    ("PPA", "scene", 1.0, 0.06), ("HVC_other", "object", 1.0, 0.05))
# Percent signal change: mean and scale of the responses per voxel, session drift, noise of non-ROI brain voxels.
PSC_MEAN, PSC_MEAN_SD = 1.0, 0.6
PSC_PER_UNIT = 0.4  # % per response unit (responses have s.d. ~4 units: ~1.7 % per trial)
PSC_PER_UNIT_LOG_SD = 0.2
SESSION_OFFSET_SD = 0.6  # % signal change
SESSION_LOG_SCALE_SD = 0.2
BRAIN_NOISE_MEAN_SD, BRAIN_NOISE_SD = 0.5, 1.5  # % signal change


@dataclass(frozen=True)
class Stimulus:
    """One demo NSD image: its NSD id (1-based, row id - 1 of imgBrick), its category and whether it is shared."""

    nsd_id: int
    category: Category
    shared: bool


@dataclass(frozen=True)
class ExperimentDesign:
    """The arrays of nsd_expdesign.mat (1-based, shapes as the release; see module docstring)."""

    masterordering: np.ndarray
    subjectim: np.ndarray
    sharedix: np.ndarray
    stimpattern: np.ndarray

    def trial_ids(self, subject: str) -> np.ndarray:
        """NSD id of every trial of `subject`, chronological: int64 (sessions * trials_per_session,)."""
        return self.subjectim[subject_row(subject), self.masterordering[0] - 1].astype(np.int64)


@dataclass(frozen=True)
class RoiLayout:
    """Where one subject's virtual cortex lies in its volume.

    Attributes:
        volume: int16 (X, Y, Z): the nsdgeneral volume (1 ROI, 0 brain, -1 outside).
        coords: int64 (n_roi, 3): ROI voxels in C order of (i, j, k) (the reader's column order).
        cortex_voxel: int64 (n_roi,): the virtual cortex's voxel at each ROI voxel.
        areas: the cortex's areas (left hemisphere first).
    """

    volume: np.ndarray
    coords: np.ndarray
    cortex_voxel: np.ndarray
    areas: list[vc.AreaSpec]


# ----------------------------------------------------------------------------------------------- sizes, files

def subject_row(subject: str) -> int:
    """`subjNN` -> its 0-based row of subjectim (names parsed as the reader parses them)."""
    try:
        number = subject_number(subject)
    except InputDataError:
        number = 0
    if not 1 <= number <= N_SUBJECT_ROWS:
        raise ConfigError("not an NSD subject name", path="demo_data.nsd_subjects", value=subject,
                          expected="subj01 .. subj08", hint="name demo NSD subjects as NSD does")
    return number - 1


def n_trials(cfg: DemoDataConfig) -> int:
    return cfg.nsd.sessions * cfg.nsd.trials_per_session


def n_own_images(cfg: DemoDataConfig) -> int:
    """Images each subject sees once (its training images)."""
    n = cfg.nsd
    n_own = n_trials(cfg) - n.n_shared_images * n.repeats
    if n_own < 1:
        raise ConfigError("the NSD demo has no trials left for training images", path="demo_data.nsd",
                          value=f"{n.sessions} x {n.trials_per_session} trials, {n.n_shared_images} shared images "
                                f"x {n.repeats} repeats",
                          expected="sessions * trials_per_session > n_shared_images * repeats",
                          hint="add sessions or trials, or share fewer images")
    return n_own


def n_ids(cfg: DemoDataConfig) -> int:
    """Rows of the demo's imgBrick: the shared images and each subject row's own images."""
    return cfg.nsd.n_shared_images + N_SUBJECT_ROWS * n_own_images(cfg)


def files(cfg: DemoDataConfig) -> list[Path]:
    """Every NSD file the demo writes."""
    _check_volume(cfg)
    n_own_images(cfg)
    paths = [cfg.root / DESIGN_FILE, cfg.root / STIMULI_FILE]
    for subject in cfg.nsd_subjects:
        subject_row(subject)
        paths.append(roi_file(cfg.root, subject, ROI))
        paths += [session_file(cfg.root, subject, s) for s in range(1, cfg.nsd.sessions + 1)]
    return paths


# ----------------------------------------------------------------------------------------------- design

def stimuli(cfg: DemoDataConfig) -> list[Stimulus]:
    """Every image of the design, in NSD id order (entry k has id k + 1)."""
    table = category_table(cfg)
    rng = stream(cfg.seed, DATASET, "stimuli")
    total = n_ids(cfg)
    shared = set(design_ids(cfg)[0].tolist())
    categories = rng.integers(len(table), size=total)
    return [Stimulus(k + 1, table[int(categories[k])], k + 1 in shared) for k in range(total)]


def design_ids(cfg: DemoDataConfig) -> tuple[np.ndarray, np.ndarray]:
    """(sharedix (n_shared,) ascending, own (8, n_own) ascending per row): NSD ids scattered over 1..n_ids."""
    n_shared, n_own = cfg.nsd.n_shared_images, n_own_images(cfg)
    ids = stream(cfg.seed, DATASET, "ids").permutation(n_ids(cfg)) + 1
    own = np.sort(ids[n_shared:].reshape(N_SUBJECT_ROWS, n_own), axis=1)
    return np.sort(ids[:n_shared]), own


def experiment_design(cfg: DemoDataConfig) -> ExperimentDesign:
    """The design file's arrays (see module docstring for how trials are spread)."""
    n = cfg.nsd
    n_own = n_own_images(cfg)
    sharedix, own = design_ids(cfg)
    subjectim = np.hstack([np.broadcast_to(sharedix, (N_SUBJECT_ROWS, n.n_shared_images)), own])
    rng = stream(cfg.seed, DATASET, "design")
    # shared presentations, image-major in a random image order, dealt to sessions round-robin
    shared_columns = np.repeat(rng.permutation(n.n_shared_images), n.repeats)
    session_of_shared = np.arange(len(shared_columns)) % n.sessions
    own_columns = n.n_shared_images + rng.permutation(n_own)
    order, used_own = [], 0
    for session in range(n.sessions):
        shared_here = shared_columns[session_of_shared == session]
        n_own_here = n.trials_per_session - len(shared_here)
        trials = np.concatenate([shared_here, own_columns[used_own:used_own + n_own_here]])
        used_own += n_own_here
        order.append(rng.permutation(trials))
    masterordering = np.concatenate(order)[None, :] + 1
    return ExperimentDesign(masterordering=masterordering.astype(np.int32), subjectim=subjectim.astype(np.int32),
                            sharedix=sharedix[None, :].astype(np.int32), stimpattern=_stimpattern(cfg, rng))


def _stimpattern(cfg: DemoDataConfig, rng: np.random.Generator) -> np.ndarray:
    """bool (sessions, runs, slots): the stimulus trials of each run among its slots (the others are blank)."""
    n = cfg.nsd
    runs = min(RUNS_PER_SESSION, n.trials_per_session)
    per_run = [len(part) for part in np.array_split(np.arange(n.trials_per_session), runs)]
    slots = int(np.ceil(max(per_run) * SLOTS_PER_TRIAL))
    pattern = np.zeros((n.sessions, runs, slots), dtype=bool)
    for session in range(n.sessions):
        for run, count in enumerate(per_run):
            pattern[session, run, np.sort(rng.choice(slots, count, replace=False))] = True
    return pattern


def _design_bytes(design: ExperimentDesign) -> bytes:
    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, {"masterordering": design.masterordering, "subjectim": design.subjectim,
                     "sharedix": design.sharedix, "stimpattern": design.stimpattern}, format="5")
    data = bytearray(buffer.getvalue())
    data[:116] = MAT_HEADER.ljust(116)  # the descriptive text of the 128-byte MAT v5 header
    return bytes(data)


# ----------------------------------------------------------------------------------------------- volume

def _check_volume(cfg: DemoDataConfig) -> np.ndarray:
    """The brain mask (bool (X, Y, Z)); a ConfigError when the grid cannot hold the ROI with brain around it."""
    grid = tuple(int(g) for g in cfg.nsd.grid)
    if len(grid) != 3 or min(grid) < 6:
        raise ConfigError("the NSD demo grid is too small", path="demo_data.nsd.grid", value=grid,
                          expected="three dimensions of at least 6 voxels", hint="e.g. [24, 28, 22]")
    brain = brain_mask(grid)
    capacity = int(MAX_ROI_FRACTION * brain.sum())
    if cfg.nsd.roi_voxels > capacity:
        raise ConfigError("the NSD demo ROI does not fit its brain", path="demo_data.nsd.roi_voxels",
                          value=cfg.nsd.roi_voxels, expected=f"at most {capacity} voxels on the grid {grid}",
                          hint="enlarge demo_data.nsd.grid or lower roi_voxels")
    return brain


def brain_mask(grid: tuple[int, int, int]) -> np.ndarray:
    """bool (X, Y, Z): an ellipsoid centred in the grid."""
    axes = [(np.arange(g) - (g - 1) / 2) / (BRAIN_FILL * g) for g in grid]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    return x**2 + y**2 + z**2 <= 1.0


def affine(grid: tuple[int, int, int]) -> np.ndarray:
    """RAS+ voxel-to-mm affine: 1.8 mm isotropic voxels, the grid's centre at the origin."""
    result = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    result[:3, 3] = -VOXEL_MM * (np.asarray(grid) - 1) / 2
    return result


def roi_layout(cfg: DemoDataConfig, subject: str) -> RoiLayout:
    """The subject's nsdgeneral volume and where its cortex's voxels lie in it (see module docstring)."""
    brain = _check_volume(cfg)
    grid = brain.shape
    rng = stream(cfg.seed, DATASET, subject, "roi")
    # the occipital pole: posterior (low j), a little below the centre, jittered per subject
    brain_j = np.flatnonzero(brain.any(axis=(0, 2)))
    pole = np.array([(grid[0] - 1) / 2 + rng.uniform(-0.5, 0.5), brain_j[0] + rng.uniform(0.0, 1.0),
                     0.4 * (grid[2] - 1) + rng.uniform(-0.5, 0.5)])
    candidates = np.argwhere(brain)  # C order
    # wider across the hemispheres than deep: a cap of posterior cortex
    distance = np.sqrt((((candidates - pole) / np.array([1.6, 1.0, 1.2])) ** 2).sum(axis=1))
    chosen = candidates[np.sort(np.argsort(distance, kind="stable")[:cfg.nsd.roi_voxels])]
    volume = np.where(brain, 0, -1).astype(np.int16)
    volume[tuple(chosen.T)] = 1
    coords = np.argwhere(volume == 1).astype(np.int64)
    pole_distance = np.sqrt((((coords - pole) / np.array([1.6, 1.0, 1.2])) ** 2).sum(axis=1))
    left = coords[:, 0] < (grid[0] - 1) / 2  # RAS+: x < 0 is the left hemisphere
    areas: list[vc.AreaSpec] = []
    cortex_voxel = np.empty(len(coords), dtype=np.int64)
    start = 0
    for hemisphere, in_hemisphere, field in (("LH", left, "right"), ("RH", ~left, "left")):
        members = np.flatnonzero(in_hemisphere)
        members = members[np.argsort(pole_distance[members], kind="stable")]
        counts = _apportion(len(members), [fraction for *_, fraction in AREAS])
        for (name, kind, hierarchy, _), count in zip(AREAS, counts, strict=True):
            if count:
                areas.append(vc.AreaSpec(name, count, kind, hierarchy, field))
        cortex_voxel[members] = start + np.arange(len(members))
        start += len(members)
    return RoiLayout(volume=volume, coords=coords, cortex_voxel=cortex_voxel, areas=areas)


def _apportion(total: int, fractions: list[float]) -> list[int]:
    """Integer counts summing to `total` in proportion to `fractions` (largest remainders)."""
    share = np.asarray(fractions) / np.sum(fractions) * total
    counts = np.floor(share).astype(int)
    counts[np.argsort(-(share - counts), kind="stable")[:total - counts.sum()]] += 1
    return counts.tolist()


def _nifti_bytes(data: np.ndarray, grid_affine: np.ndarray) -> bytes:
    """A gzipped NIfTI-1 image (no gzip timestamp, so the bytes depend on the data only)."""
    import nibabel as nib

    image = nib.Nifti1Image(data, grid_affine)
    image.header.set_data_dtype(data.dtype)
    image.header.set_xyzt_units("mm")
    image.header.set_qform(grid_affine, code=1)
    image.header.set_sform(grid_affine, code=1)
    return gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)


# ----------------------------------------------------------------------------------------------- responses

def subject_cortex(cfg: DemoDataConfig, subject: str, layout: RoiLayout | None = None) -> vc.VirtualCortex:
    """The subject's virtual cortex (voxels in area order; RoiLayout.cortex_voxel places them in the volume)."""
    layout = layout or roi_layout(cfg, subject)
    return vc.build_cortex(stream(cfg.seed, DATASET, subject, "cortex"), layout.areas, cfg.cortex)


def subject_drive(cfg: DemoDataConfig, subject: str, images: np.ndarray, instances: list[Instance]) -> np.ndarray:
    """Noise-free drive of the subject's cortex by its images (subjectim row order, as rendered by
    `render_stimuli(cfg, "NSD", ...)`): float64 (n_shared + n_own, cortex voxels)."""
    codes = vc.semantic_codes(stream(cfg.seed, "semantic"), len(category_table(cfg)))
    table = stimuli(cfg)
    ids = experiment_design(cfg).subjectim[subject_row(subject)]
    features_high = vc.stimulus_features([table[i - 1].category for i in ids], instances, codes)
    return vc.stimulus_drive(subject_cortex(cfg, subject), vc.image_features(images), features_high)


def session_betas(cfg: DemoDataConfig, subject: str, images: np.ndarray, instances: list[Instance],
                  sessions: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(session, betas volume) of each of `sessions` (1-based; default all), one at a time: int16
    (X, Y, Z, trials_per_session) in percent signal change x 300, trials in masterordering order.

    Args:
        images, instances: the subject's images in subjectim row order (see `subject_drive`).
    """
    layout = roi_layout(cfg, subject)
    cortex = subject_cortex(cfg, subject, layout)
    drive = subject_drive(cfg, subject, images, instances)
    design = experiment_design(cfg)
    responses = vc.trial_responses(stream(cfg.seed, DATASET, subject, "trials"), cortex, drive,
                                   design.masterordering[0] - 1)[:, layout.cortex_voxel]  # (trials, ROI voxels)
    n, n_roi = cfg.nsd, len(layout.coords)
    rng = stream(cfg.seed, DATASET, subject, "percent")
    mean = PSC_MEAN + rng.normal(0, PSC_MEAN_SD, n_roi)
    scale = PSC_PER_UNIT * np.exp(rng.normal(0, PSC_PER_UNIT_LOG_SD, n_roi))
    other = np.argwhere(layout.volume == 0)
    other_mean = rng.normal(0, BRAIN_NOISE_MEAN_SD, len(other))
    for session in (range(1, n.sessions + 1) if sessions is None else sessions):
        drift = stream(cfg.seed, DATASET, subject, "session", session)
        offset = drift.normal(0, SESSION_OFFSET_SD, n_roi)
        gain = np.exp(drift.normal(0, SESSION_LOG_SCALE_SD, n_roi))
        trials = responses[(session - 1) * n.trials_per_session:session * n.trials_per_session]
        percent = mean + offset + scale * gain * trials  # (T, ROI voxels)
        noise = other_mean + drift.normal(0, BRAIN_NOISE_SD, (n.trials_per_session, len(other)))
        volume = np.zeros((*layout.volume.shape, n.trials_per_session), dtype=np.int16)
        volume[tuple(layout.coords.T)] = _to_int16(percent).T
        volume[tuple(other.T)] = _to_int16(noise).T
        yield session, volume


def _to_int16(percent: np.ndarray) -> np.ndarray:
    info = np.iinfo(np.int16)
    return np.clip(np.rint(percent * BETA_SCALE), info.min, info.max).astype(np.int16)


def render_subject_images(cfg: DemoDataConfig, subject: str) -> tuple[np.ndarray, list[Instance]]:
    """The subject's images in subjectim row order (the drive's stimulus order) and their instances."""
    table = stimuli(cfg)
    ids = experiment_design(cfg).subjectim[subject_row(subject)]
    return render_stimuli(cfg, DATASET, [(table[i - 1].category.index, int(i)) for i in ids], cfg.nsd.image_size_px)


# ----------------------------------------------------------------------------------------------- writing

def write(cfg: DemoDataConfig) -> list[Path]:
    """Write the NSD files that do not exist yet; returns the files written."""
    todo = {path for path in files(cfg) if not path.exists()}
    if not todo:
        return []
    written = []
    design = experiment_design(cfg)
    design_path = cfg.root / DESIGN_FILE
    if design_path in todo:
        with atomic_path(design_path) as tmp:
            tmp.write_bytes(_design_bytes(design))
        written.append(design_path)
    brick_path = cfg.root / STIMULI_FILE
    if brick_path in todo:
        written.append(_write_brick(cfg, brick_path))
    grid_affine = affine(tuple(cfg.nsd.grid))
    for subject in cfg.nsd_subjects:
        path = roi_file(cfg.root, subject, ROI)
        if path in todo:
            with atomic_path(path) as tmp:
                tmp.write_bytes(_nifti_bytes(roi_layout(cfg, subject).volume, grid_affine))
            written.append(path)
        sessions = [s for s in range(1, cfg.nsd.sessions + 1) if session_file(cfg.root, subject, s) in todo]
        if not sessions:
            continue
        log.info("NSD demo: %s betas of %d sessions", subject, len(sessions))
        for session, volume in session_betas(cfg, subject, *render_subject_images(cfg, subject), sessions):
            path = session_file(cfg.root, subject, session)
            with atomic_path(path) as tmp:
                tmp.write_bytes(_nifti_bytes(volume, grid_affine))
            written.append(path)
    return written


def _write_brick(cfg: DemoDataConfig, path: Path) -> Path:
    import h5py

    table = stimuli(cfg)
    size = cfg.nsd.image_size_px
    log.info("NSD demo: rendering %d images", len(table))
    images, _ = render_stimuli(cfg, DATASET, [(s.category.index, s.nsd_id) for s in table], size)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as file:
            file.create_dataset(BRICK_KEY, data=images, chunks=(1, size, size, 3), compression="gzip",
                                compression_opts=4)
    return path
