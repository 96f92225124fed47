"""A tiny NSD release in the official layout and formats, with betas a known function of the image shown.

Written independently of the demo writer (mindvis.demo.nsd), from the NSD data manual: nsd_expdesign.mat through
scipy.io.savemat (1-based masterordering / subjectim / sharedix, stimpattern), imgBrick in an HDF5 file, the ROI and
the betas as NIfTI (X, Y, Z[, trials]) int16 x 300, or as HDF5 `/betas` written in MATLAB's X x Y x Z x 750 order,
which h5py stores as (trials, Z, Y, X).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
from scipy.io import savemat

from mindvis.preprocess import nsd

GRID = (7, 6, 5)
SHARED_IDS = (3, 8, 11, 14)  # 1-based 73k ids of the fixture's shared1000


@dataclass(frozen=True)
class Release:
    root: Path
    trial_ids: np.ndarray  # 73k id of every trial, chronological (1-based ids)
    roi_coords: np.ndarray  # (V, 3) ROI voxels in C order
    sessions: int
    trials_per_session: int


def beta_of(nsd_id: np.ndarray, coords: np.ndarray, session: int) -> np.ndarray:
    """The fixture's response in percent signal change: (T,) ids x (V, 3) voxels -> (T, V), with a per-session
    offset and gain, so a per-session z-score is needed to recover the stimulus part."""
    v = coords @ np.array([1.0, 7.0, 43.0])
    stimulus = np.sin(np.outer(nsd_id, 0.37 + v / 97.0)) + 0.5 * np.cos(np.outer(nsd_id * 1.3, v / 31.0))
    return (1.0 + 0.25 * session) * stimulus + 0.5 * session


def write_release(root: Path, *, subject: str = "subj01", sessions: int = 2, trials_per_session: int = 12,
                  n_images: int = 16, hdf5_betas: bool = False, image_px: int = 20, roi_labels: bool = False
                  ) -> Release:
    """Write the fixture release below root/NSD and return what it holds."""
    rng = np.random.default_rng(0)
    number = nsd.subject_number(subject)
    n_trials = sessions * trials_per_session
    # the subject's images: ids 1..n_images in a shuffled order; shared ones shown 3 times, others once or so
    subject_images = rng.permutation(np.arange(1, n_images + 1))
    shared_cols = [int(np.flatnonzero(subject_images == i)[0]) + 1 for i in SHARED_IDS]
    others = [c for c in range(1, n_images + 1) if c not in shared_cols]
    order = (shared_cols * 3 + others * n_trials)[:n_trials]
    masterordering = rng.permutation(np.array(order))
    subjectim = np.tile(subject_images, (max(number, 2), 1))
    stimpattern = np.zeros((sessions, 2, trials_per_session), dtype=np.uint8)
    stimpattern[:, 0, :] = 1  # all trials in the first run (the reader only sums them per session)
    design = root / nsd.DESIGN_FILE
    design.parent.mkdir(parents=True, exist_ok=True)
    savemat(design, {"masterordering": masterordering[None, :].astype(np.float64),
                     "subjectim": subjectim.astype(np.float64),
                     "sharedix": np.array(SHARED_IDS, dtype=np.float64)[None, :], "stimpattern": stimpattern,
                     "basiccnt": np.zeros((3, sessions))})
    trial_ids = subject_images[masterordering - 1]

    brick = root / nsd.STIMULI_FILE
    brick.parent.mkdir(parents=True, exist_ok=True)
    images = np.stack([np.full((image_px, image_px, 3), (7 * i) % 256, dtype=np.uint8) for i in range(1, n_images + 1)])
    with h5py.File(brick, "w") as file:
        file.create_dataset(nsd.BRICK_KEY, data=images)

    volume = np.full(GRID, -1, dtype=np.int16)
    volume[1:6, 1:5, 1:4] = 0
    volume[2:5, 2:4, 1:3] = 1
    if roi_labels:
        volume[4, 3, 2] = 2
    roi_path = nsd.roi_file(root, subject, "nsdgeneral")
    roi_path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(volume, np.diag([1.8, 1.8, 1.8, 1.0])), roi_path)
    coords = np.argwhere(volume > 0)

    for session in range(1, sessions + 1):
        ids = trial_ids[(session - 1) * trials_per_session:session * trials_per_session]
        data = np.zeros((*GRID, trials_per_session), dtype=np.int16)
        brain = np.argwhere(volume >= 0)
        data[tuple(brain.T)] = rng.integers(-300, 300, size=(len(brain), trials_per_session))
        data[tuple(coords.T)] = np.round(nsd.BETA_SCALE * beta_of(ids, coords, session)).T.astype(np.int16)
        write_session(root, subject, session, data, hdf5=hdf5_betas)
    return Release(root=root, trial_ids=trial_ids, roi_coords=coords, sessions=sessions,
                   trials_per_session=trials_per_session)


def write_session(root: Path, subject: str, session: int, data: np.ndarray, *, hdf5: bool) -> Path:
    """Write one session's betas (X, Y, Z, T) as the release's NIfTI, or as its HDF5 twin in MATLAB's order."""
    if hdf5:
        path = nsd.session_file(root, subject, session, "hdf5")
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as file:  # MATLAB X x Y x Z x T = C-order (T, Z, Y, X)
            file.create_dataset(nsd.BETAS_KEY, data=np.transpose(data, (3, 2, 1, 0)), chunks=(data.shape[3], 1, 1, 1))
        return path
    path = nsd.session_file(root, subject, session)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([1.8, 1.8, 1.8, 1.0])), path)
    return path


def expected_zscores(release: Release) -> np.ndarray:
    """(n_trials, V): what the reader must produce for every trial, from the fixture's function alone."""
    rows = []
    for session in range(1, release.sessions + 1):
        ids = release.trial_ids[(session - 1) * release.trials_per_session:session * release.trials_per_session]
        betas = np.round(nsd.BETA_SCALE * beta_of(ids, release.roi_coords, session)) / nsd.BETA_SCALE
        rows.append((betas - betas.mean(axis=0)) / betas.std(axis=0))
    return np.concatenate(rows)
