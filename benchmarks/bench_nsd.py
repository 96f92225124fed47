"""NSD preprocessing benchmark: per-session ROI extraction throughput and peak memory of one subject job. Prints JSON.

A synthetic subject is written in the release's layout and formats (mindvis/preprocess/nsd.py describes them) on the
real func1pt8mm grid of subj01 (81 x 104 x 83): a liberal brain mask (an ellipsoid; betas are zero outside it, as in
the release), an nsdgeneral-like ROI volume (1 in ~15,000 posterior cortical voxels, 0 elsewhere in the brain, -1
outside it), `--sessions` sessions of `--trials` int16 betas (percent signal change x 300) as `.nii.gz` (nibabel,
gzip level 1) and/or as the `.hdf5` twin (`/betas` (T, Z, Y, X) in h5py's view, chunks of one voxel's 750 trials,
uncompressed, as the release's MATLAB chunk size [1 1 1 750]), nsd_expdesign.mat (scipy.io.savemat: 1-based
masterordering over 40 sessions, subjectim 8 x 10000 with the shared1000 in its first 1000 columns, sharedix,
stimpattern 40 x 12 x 75) and a stimulus brick declared (73000, px, px, 3) that holds only the used ids (tiny images
by default: the brick is not the point). Then, per betas format:

- extraction throughput: the reader's per-session work (`nsd.read_session_betas` on the ROI: box read, checks,
  gather, / 300) timed against a plain read of the same file (.nii.gz: nibabel's full load
  `np.asanyarray(img.dataobj)`; .hdf5: h5py reading the whole `/betas`), median of `--repeats` alternating trials
  on session 1, with the file in the page cache (warm: the headline) and with its pages dropped before each trial
  (cold, posix_fadvise DONTNEED; null where unavailable). `throughput_ratio` = plain read time / extraction time;
  MiB/s figures are of uncompressed int16 betas (the whole volume for the plain read, the same volume for the
  extraction, so the ratio is a throughput ratio).
- peak memory: one `preprocess_subject` job in a fresh Python process, its RSS high-water mark (VmHWM of
  /proc/self/status, Linux) against the size of the betas it read (uncompressed int16 bytes, and the files' bytes on
  disk) and against the interpreter + imports alone; one session's read + z-score alone in another fresh process
  gives the per-session working set.
- full_subject_estimate: an ESTIMATE (a model, not a measurement) of a full 40 x 750-trial subject job: the
  output matrix (rows of the design's full trial plan x V float32), the averaged-test sums (float64), the
  per-session statistics, and the larger of the measured per-session working set and the stimulus output
  (10,000 images at `--image-size`, plus one brick chunk of 425 px images); the same model evaluated at the measured
  sessions is printed beside the measured peak as a check.

Usage: python benchmarks/bench_nsd.py [--sessions 3] [--trials 750] [--format nii.gz|hdf5|both] [--repeats 3]
       [--image-px 32] [--image-size 256] [--roi-voxels 15000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
from scipy.io import savemat

from measure import alternating_medians, run_child
from mindvis.preprocess import nsd

SUBJECT = "subj01"
GRID = (81, 104, 83)  # subj01 func1pt8mm (NSD data manual, technical notes)
AFFINE = np.diag([1.8, 1.8, 1.8, 1.0])
DESIGN_SESSIONS = 40
RUN_SLOTS = (12, 75)  # stimpattern: 12 runs x 75 trial slots per session
SUBJECT_IMAGES = 10_000
SHARED_IMAGES = 1_000
NSD_IDS = 73_000
RELEASE_IMAGE_PX = 425
BETA_SD = 600.0  # int16 units: 2 % signal change x 300
WRITE_CHUNK_TRIALS = 50
MIB = 2**20

# Runs in a child process (measure.run_child): imports, then one session's extraction or one subject job, then its
# RSS high-water mark (kB) as JSON. The reader's lazy imports are made up front, so imports_kb covers them.
_JOB = """
import json, sys, time
from pathlib import Path
import h5py, nibabel, scipy.io, tqdm.auto
from mindvis.config.data import NsdPreprocessConfig
from mindvis.data import contract, images
from mindvis.preprocess import nsd
imports_kb = high_water_kb()
mode, raw_root, target, image_size = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
start = time.perf_counter()
if mode == "session":
    roi = nsd.read_roi(nsd.roi_file(raw_root, "subj01", "nsdgeneral"), "nsdgeneral")
    n_trials = int(nsd.read_design(raw_root, "subj01").session_trials[0])
    nsd.zscore_session(nsd.read_session_betas(target, roi, n_trials))
elif mode == "job":
    nsd.preprocess_subject(raw_root, "subj01", NsdPreprocessConfig(), image_size, target)
print(json.dumps({"imports_kb": imports_kb, "peak_kb": high_water_kb(), "seconds": time.perf_counter() - start}))
"""


# ----------------------------------------------------------------------------------------------- synthesis

def write_design(root: Path, trials_per_session: int, rng: np.random.Generator) -> np.ndarray:
    """nsd_expdesign.mat for 40 sessions of `trials_per_session` trials; returns the subject's 73k id per trial."""
    sharedix = np.sort(rng.choice(np.arange(1, NSD_IDS + 1), SHARED_IMAGES, replace=False))
    others = rng.permutation(np.setdiff1d(np.arange(1, NSD_IDS + 1), sharedix))
    per_subject = SUBJECT_IMAGES - SHARED_IMAGES
    subjectim = np.stack([np.concatenate([sharedix, others[s * per_subject:(s + 1) * per_subject]])
                          for s in range(8)])  # (8, 10000): shared1000 first, then 9000 own images per subject
    n_trials = DESIGN_SESSIONS * trials_per_session
    repeats = -(-n_trials // SUBJECT_IMAGES)  # 3 at 750 trials per session: every image 3 times
    masterordering = rng.permutation(np.tile(np.arange(1, SUBJECT_IMAGES + 1), repeats))[:n_trials]
    stimpattern = np.zeros((DESIGN_SESSIONS, *RUN_SLOTS), dtype=np.uint8)
    slots = RUN_SLOTS[0] * RUN_SLOTS[1]
    for session in range(DESIGN_SESSIONS):
        stimpattern[session].flat[np.sort(rng.choice(slots, trials_per_session, replace=False))] = 1
    path = root / nsd.DESIGN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"masterordering": masterordering[None, :].astype(np.float64),
                   "subjectim": subjectim.astype(np.float64),
                   "sharedix": sharedix[None, :].astype(np.float64),
                   "stimpattern": stimpattern.astype(np.float64)})
    return subjectim[0, masterordering - 1]


def write_roi(root: Path, roi_voxels: int) -> tuple[np.ndarray, nsd.RoiVoxels]:
    """nsdgeneral.nii.gz: an ellipsoidal brain (0) in -1, with the `roi_voxels` most posterior voxels of its cortical
    ribbon set to 1 (both hemispheres, occipital to parietal/ventral, as nsdgeneral; at 15,000 voxels the bounding
    box is 73 x 38 x 56, ~22 % of the grid). Returns the brain's voxel coordinates and the ROI as the reader reads
    it."""
    axes = np.indices(GRID, dtype=np.float64)
    centre = (np.array(GRID) - 1) / 2
    semi = np.array([38.0, 49.0, 38.0])
    radius = np.sqrt(sum(((axes[d] - centre[d]) / semi[d]) ** 2 for d in range(3)))
    brain = radius <= 1.0
    shell = brain & (radius >= 0.94) & (axes[2] >= centre[2] - 0.5 * semi[2])  # a ~2.5-voxel cortical ribbon
    candidates = np.argwhere(shell)
    posterior = candidates[np.argsort(candidates[:, 1], kind="stable")][:roi_voxels]
    volume = np.full(GRID, -1, dtype=np.int16)
    volume[brain] = 0
    volume[tuple(posterior.T)] = 1
    path = nsd.roi_file(root, SUBJECT, "nsdgeneral")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(volume, AFFINE), path)
    return np.argwhere(brain), nsd.read_roi(path, "nsdgeneral")


def write_brick(root: Path, nsd_ids: np.ndarray, image_px: int, rng: np.random.Generator) -> None:
    """nsd_stimuli.hdf5: imgBrick declared (73000, px, px, 3) uint8, one chunk per image; only `nsd_ids` written."""
    path = root / nsd.STIMULI_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = np.unique(nsd_ids)
    with h5py.File(path, "w") as file:
        brick = file.create_dataset(nsd.BRICK_KEY, shape=(NSD_IDS, image_px, image_px, 3), dtype=np.uint8,
                                    chunks=(1, image_px, image_px, 3))
        for start in range(0, len(ids), 256):
            chunk = ids[start:start + 256]
            brick[chunk - 1] = rng.integers(0, 256, size=(len(chunk), image_px, image_px, 3), dtype=np.uint8)


def session_volume(brain: np.ndarray, n_trials: int, rng: np.random.Generator) -> np.ndarray:
    """One session's betas (X, Y, Z, T) int16 in Fortran order (NIfTI's): noise in the brain, zero outside it."""
    volume = np.zeros((*GRID, n_trials), dtype=np.int16, order="F")
    flat = volume.reshape(-1, n_trials, order="F")  # a view: (voxels in F order, trials)
    rows = np.ravel_multi_index(tuple(brain.T), GRID, order="F")
    for start in range(0, n_trials, WRITE_CHUNK_TRIALS):
        stop = min(start + WRITE_CHUNK_TRIALS, n_trials)
        noise = rng.standard_normal((len(rows), stop - start), dtype=np.float32) * BETA_SD
        flat[rows, start:stop] = np.clip(np.rint(noise), -32768, 32767).astype(np.int16)
    return volume


def write_session(root: Path, session: int, volume: np.ndarray, fmt: str) -> Path:
    """Write a session's betas as the release's .nii.gz, or as the .hdf5 twin ((T, Z, Y, X) chunks of (T, 1, 1, 1))."""
    path = nsd.session_file(root, SUBJECT, session, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "nii.gz":
        nib.save(nib.Nifti1Image(volume, AFFINE), path)
        return path
    n_trials = volume.shape[3]
    with h5py.File(path, "w") as file:
        betas = file.create_dataset(nsd.BETAS_KEY, shape=(n_trials, *GRID[::-1]), dtype=np.int16,
                                    chunks=(n_trials, 1, 1, 1))
        for k in range(GRID[2]):  # one z slab of whole chunks at a time
            betas[:, k, :, :] = volume[:, :, k, :].T
    return path


def link_common(common: Path, root: Path) -> None:
    """A per-format raw root sharing the design, ROI and brick of `common` through symlinks."""
    for part in ("nsddata", "nsddata_stimuli"):
        link = root / nsd.NSD_DIR / part
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(common / nsd.NSD_DIR / part, target_is_directory=True)


# ----------------------------------------------------------------------------------------------- timing

def plain_read(path: Path) -> np.ndarray:
    """The whole betas volume as the usual NSD code reads it: nibabel's full load, or h5py's whole `/betas`."""
    if path.name.endswith(".nii.gz"):
        return np.asanyarray(nib.load(str(path)).dataobj)
    with h5py.File(path, "r") as file:
        return file[nsd.BETAS_KEY][()]


def plain_read_s(path: Path, roi: nsd.RoiVoxels, n_trials: int) -> float:
    start = time.perf_counter()
    data = plain_read(path)
    elapsed = time.perf_counter() - start
    assert data.dtype == np.int16 and data.size == np.prod(GRID) * n_trials
    return elapsed


def extraction_s(path: Path, roi: nsd.RoiVoxels, n_trials: int) -> float:
    start = time.perf_counter()
    betas = nsd.read_session_betas(path, roi, n_trials)
    elapsed = time.perf_counter() - start
    assert betas.shape == (n_trials, len(roi.coords))
    return elapsed


def timed_trials(path: Path, roi: nsd.RoiVoxels, n_trials: int, repeats: int, cold: bool) -> tuple[float, float]:
    """Median seconds of (plain read, extraction) over `repeats` alternating trials."""
    return alternating_medians(lambda: plain_read_s(path, roi, n_trials), lambda: extraction_s(path, roi, n_trials),
                               repeats, cold, path)


def extraction_matches_plain_read(path: Path, roi: nsd.RoiVoxels, n_trials: int) -> bool:
    """The reader's ROI betas equal the plain read's ROI voxels / 300 (axis order of each format minded)."""
    data = plain_read(path)
    i, j, k = roi.coords.T
    voxels = data[i, j, k, :].T if path.name.endswith(".nii.gz") else data[:, k, j, i]  # (T, V)
    expected = voxels.astype(np.float32) / np.float32(nsd.BETA_SCALE)
    return bool(np.array_equal(nsd.read_session_betas(path, roi, n_trials), expected))


def child(mode: str, raw_root: Path, target: Path, image_size: int) -> dict:
    return run_child(_JOB, mode, raw_root, target, image_size)


# ----------------------------------------------------------------------------------------------- memory model

def memory_model_mib(plan: nsd.TrialPlan, n_voxels: int, imports_mib: float, session_working_mib: float,
                     image_size: int, brick_px: int, n_sessions: int) -> dict:
    """The job's peak by the model: imports + output matrix + averaged-test sums + per-session statistics +
    max(one session's working set, the stimulus output + one brick chunk read and resized)."""
    n_avg = len(plan.averaged_ids)
    rows = plan.n_train + n_avg + int(plan.test.sum())
    n_images = len(np.unique(plan.ids))
    fmri = rows * n_voxels * 4 / MIB
    test_sums = n_avg * n_voxels * 8 / MIB
    statistics_ = 2 * n_sessions * n_voxels * 8 / MIB
    stimuli = n_images * image_size**2 * 3 / MIB
    brick_chunk = nsd.IMAGE_CHUNK * (brick_px**2 * 3 + image_size**2 * 3) / MIB
    streaming = max(session_working_mib, stimuli + brick_chunk)
    return {
        "fmri_rows": rows, "stimuli_images": n_images,
        "imports_mib": round(imports_mib, 1), "fmri_matrix_mib": round(fmri, 1),
        "averaged_test_sums_mib": round(test_sums, 1), "session_statistics_mib": round(statistics_, 1),
        "one_session_working_set_mib": round(session_working_mib, 1),
        "stimuli_output_plus_brick_chunk_mib": round(stimuli + brick_chunk, 1),
        "peak_rss_mib": round(imports_mib + fmri + test_sums + statistics_ + streaming, 1),
    }


# ----------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--trials", type=int, default=750, help="trials per session (at most 900 slots)")
    parser.add_argument("--format", choices=("nii.gz", "hdf5", "both"), default="nii.gz")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-px", type=int, default=32, help="side of the synthetic brick's images")
    parser.add_argument("--image-size", type=int, default=256, help="preprocess image_size (paper preset: 256)")
    parser.add_argument("--roi-voxels", type=int, default=15_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="write the raw roots here and keep them")
    args = parser.parse_args()
    if not 1 <= args.sessions <= DESIGN_SESSIONS or not 1 <= args.trials <= RUN_SLOTS[0] * RUN_SLOTS[1]:
        parser.error(f"--sessions must be 1..{DESIGN_SESSIONS} and --trials 1..{RUN_SLOTS[0] * RUN_SLOTS[1]}")
    formats = ("nii.gz", "hdf5") if args.format == "both" else (args.format,)
    wall_start = time.perf_counter()
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory(prefix="bench_nsd_") as tmp:
        base = args.keep or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        common = base / "common"
        roots = {fmt: base / fmt.replace(".", "_") for fmt in formats}

        start = time.perf_counter()
        trial_ids = write_design(common, args.trials, rng)
        brain, roi = write_roi(common, args.roi_voxels)
        write_brick(common, trial_ids[:args.sessions * args.trials], args.image_px, rng)
        for fmt, root in roots.items():
            link_common(common, root)
        files: dict[str, list[Path]] = {fmt: [] for fmt in formats}
        for session in range(1, args.sessions + 1):
            volume = session_volume(brain, args.trials, rng)
            for fmt, root in roots.items():
                files[fmt].append(write_session(root, session, volume, fmt))
            del volume
        write_s = time.perf_counter() - start

        lo, hi = roi.box
        volume_bytes = int(np.prod(GRID)) * args.trials * 2  # one session, uncompressed int16
        design = nsd.read_design(common, SUBJECT)
        plan_measured = nsd.plan_trials(design, range(1, args.sessions + 1))
        plan_full = nsd.plan_trials(design, range(1, DESIGN_SESSIONS + 1))
        baseline = child("imports", roots[formats[0]], base / "unused", args.image_size)
        imports_mib = baseline["imports_kb"] / 1024

        results = {}
        for fmt in formats:
            path = files[fmt][0]
            verified = extraction_matches_plain_read(path, roi, args.trials)  # also warms the page cache
            figures = {}
            for cache in ("warm", "cold"):
                if cache == "cold" and not hasattr(os, "posix_fadvise"):
                    figures[cache] = None
                    continue
                read_s, extract_s = timed_trials(path, roi, args.trials, args.repeats, cold=cache == "cold")
                figures[cache] = {
                    "plain_read_s": round(read_s, 3),
                    "plain_read_mib_s": round(volume_bytes / MIB / read_s, 1),
                    "extraction_s": round(extract_s, 3),
                    "extraction_mib_s": round(volume_bytes / MIB / extract_s, 1),
                    "throughput_ratio": round(read_s / extract_s, 2),
                }
            session_run = child("session", roots[fmt], path, args.image_size)
            job = child("job", roots[fmt], base / f"out_{fmt.replace('.', '_')}", args.image_size)
            session_working_mib = session_run["peak_kb"] / 1024 - session_run["imports_kb"] / 1024
            betas_bytes = volume_bytes * args.sessions
            disk_bytes = sum(p.stat().st_size for p in files[fmt])
            job_mib = job["peak_kb"] / 1024
            model_measured = memory_model_mib(plan_measured, len(roi.coords), job["imports_kb"] / 1024,
                                              session_working_mib, args.image_size, args.image_px, args.sessions)
            full = memory_model_mib(plan_full, len(roi.coords), job["imports_kb"] / 1024, session_working_mib,
                                    args.image_size, RELEASE_IMAGE_PX, DESIGN_SESSIONS)
            full_betas = volume_bytes * DESIGN_SESSIONS
            full_disk = disk_bytes / args.sessions * DESIGN_SESSIONS
            results[fmt] = {
                "file_bytes_session1": path.stat().st_size,
                "extraction_equals_plain_read": verified,
                "extraction": {
                    "page_cache_warm": figures["warm"],
                    "page_cache_cold": figures["cold"],
                    "throughput_ratio": figures["warm"]["throughput_ratio"],
                    "repeats": args.repeats,
                    "session": 1,
                },
                "peak_memory": {
                    "job_peak_rss_mib": round(job_mib, 1),
                    "job_imports_rss_mib": round(job["imports_kb"] / 1024, 1),
                    "job_minus_imports_mib": round(job_mib - job["imports_kb"] / 1024, 1),
                    "betas_uncompressed_mib": round(betas_bytes / MIB, 1),
                    "betas_on_disk_mib": round(disk_bytes / MIB, 1),
                    "ratio_to_betas_uncompressed": round(job_mib * MIB / betas_bytes, 3),
                    "ratio_to_betas_on_disk": round(job_mib * MIB / disk_bytes, 3),
                    "one_session_peak_rss_mib": round(session_run["peak_kb"] / 1024, 1),
                    "one_session_working_set_mib": round(session_working_mib, 1),
                    "job_s": round(job["seconds"], 2),
                    "job_betas_mib_s": round(betas_bytes / MIB / job["seconds"], 1),
                    "model_at_measured_sessions": model_measured,
                    "model_error_mib": round(job_mib - model_measured["peak_rss_mib"], 1),  # measured - model
                },
                "full_subject_estimate": {
                    "label": "ESTIMATE from the memory model and the per-session figures measured above, "
                             f"not a measurement: {DESIGN_SESSIONS} sessions x {args.trials} trials, "
                             f"stimuli at {args.image_size} px read from a {RELEASE_IMAGE_PX} px brick",
                    "sessions": DESIGN_SESSIONS,
                    **full,
                    "betas_uncompressed_mib": round(full_betas / MIB, 1),
                    "betas_on_disk_mib": round(full_disk / MIB, 1),
                    "ratio_to_betas_uncompressed": round(full["peak_rss_mib"] * MIB / full_betas, 3),
                    "ratio_to_betas_on_disk": round(full["peak_rss_mib"] * MIB / full_disk, 3),
                    "job_s": round(job["seconds"] / args.sessions * DESIGN_SESSIONS, 0),
                },
            }

    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "nibabel": nib.__version__, "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version},
        "subject": {
            "grid": list(GRID), "sessions": args.sessions, "trials_per_session": args.trials,
            "brain_voxels": len(brain), "roi_voxels": len(roi.coords),
            "roi_box": [int(n) for n in hi - lo],
            "roi_box_fraction_of_grid": round(float(np.prod(hi - lo)) / np.prod(GRID), 3),
            "roi_box_int16_mib": round(float(np.prod(hi - lo)) * args.trials * 2 / MIB, 1),
            "session_uncompressed_mib": round(volume_bytes / MIB, 1),
            "brick": [NSD_IDS, args.image_px, args.image_px, 3], "image_size": args.image_size,
            "write_s": round(write_s, 1),
        },
        "imports_only_rss_mib": round(imports_mib, 1),
        "formats": results,
        "wall_s": round(time.perf_counter() - wall_start, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
