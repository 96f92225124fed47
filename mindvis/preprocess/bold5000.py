"""BOLD5000 (Chang et al. 2019), GLMsingle ROI betas release -> the preprocessed-data contract.

Raw layout under `<raw_root>/BOLD5000/`:

- `BOLD5000_GLMsingle_ROI_betas/py/CSI<n>_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_allses_<LH|RH><ROI>.npy`: one
  (n_trials, n_voxels) matrix of single-trial betas per hemisphere and ROI (EarlyVis, LOC, OPA, PPA, RSC), trials
  in presentation order over all sessions.
- `BOLD5000_Stimuli/Stimuli_Presentation_Lists/CSI<n>/CSI<n>_sess<NN>/*.txt`: the image file names shown, one per
  trial, one file per run; a `rep_` prefix marks the repeated images. Sessions and runs are read in natural sort
  order (numbers compared as numbers, which equals the plain sort for the zero-padded names of the release), so
  the concatenated lists line up with the beta rows.
- `BOLD5000_Stimuli/Scene_Stimuli/Presented_Stimuli/{COCO,ImageNet,Scene}/<file name>`: the images themselves
  (the release has no img_dict.npy; images are read, centre-cropped to a square and resized to `image_size`).
- `BOLD5000_Stimuli/Scene_Stimuli/repeated_stimuli_113_list.txt`: the 113 images shown repeatedly (4 times, one 3
  times in CSI1-3; CSI4 saw fewer sessions).

As MinD-Vis: voxels are the ROI files concatenated per ROI (config order), left then right hemisphere; the test set
is the repeated images this subject saw, averaged over their repeats (n_averaged = repeat count) and also kept as
single trials (n_averaged 1); every other trial is a training sample. A repeated image seen only once has just its
single-trial row. Normalisation (`Bold5000PreprocessConfig.normalization`): "scalar" (default, MinD-Vis) is one mean
and standard deviation over all the subject's trials, test included, as the reference computes it (before padding
the voxels to the patch size, which is not done here); "voxel" is per-voxel statistics of the training trials.
`category` is the image's source set (COCO, ImageNet or Scene). Dataset-specific columns: `trial` (row of the beta
files; null for averaged rows), `session`, `run` (run list file stem), `marked_repeat` (listed with `rep_`); `source`
is the run list a trial comes from (the repeated-stimuli list for averaged rows). voxels.parquet: `roi` (e.g.
LHEarlyVis), `mean`, `std`, `hemisphere`, `voxel_index` (column within its ROI file).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from mindvis.config.data import Bold5000PreprocessConfig
from mindvis.data.contract import PreprocessedSubject, Stimuli, write_subject
from mindvis.data.images import read_image_files
from mindvis.errors import InputDataError
from mindvis.io import check_finite, require_file
from mindvis.preprocess.average import average_by_key
from mindvis.preprocess.normalize import apply_zscore, fit_zscore

log = logging.getLogger(__name__)

DATASET = "BOLD5000"
BOLD_DIR = Path("BOLD5000")
BETAS_DIR = BOLD_DIR / "BOLD5000_GLMsingle_ROI_betas" / "py"
BETA_SUFFIX = "_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_allses_"
HEMISPHERES: tuple[str, ...] = ("LH", "RH")
STIMULI_DIR = BOLD_DIR / "BOLD5000_Stimuli"
PRESENTED_DIR = STIMULI_DIR / "Scene_Stimuli" / "Presented_Stimuli"
IMAGE_SETS: tuple[str, ...] = ("COCO", "ImageNet", "Scene")
REPEATED_LIST = STIMULI_DIR / "Scene_Stimuli" / "repeated_stimuli_113_list.txt"
LISTS_DIR = STIMULI_DIR / "Stimuli_Presentation_Lists"
REPEAT_PREFIX = "rep_"
DEFAULT_ROIS: tuple[str, ...] = Bold5000PreprocessConfig().rois

SUBJECT_RE = re.compile(r"^(CSI\d+)" + re.escape(BETA_SUFFIX) + r".+\.npy$")
HINT_RELEASE = "use the BOLD5000 release files unchanged (README, 'Raw inputs')"


def natural_key(name: str) -> list[object]:
    """Sort key comparing digit runs as numbers: run2 < run10; equals plain order for zero-padded names."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _relative(path: Path, raw_root: Path) -> str:
    try:
        return path.relative_to(raw_root).as_posix()
    except ValueError:
        return path.as_posix()


# ----------------------------------------------------------------------------------------------- file layout

def beta_file(raw_root: str | os.PathLike[str], subject: str, hemisphere: str, roi: str) -> Path:
    """`.../py/<subject>_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_allses_<hemisphere><roi>.npy`."""
    return Path(raw_root) / BETAS_DIR / f"{subject}{BETA_SUFFIX}{hemisphere}{roi}.npy"


def beta_files(raw_root: str | os.PathLike[str], subject: str, rois: tuple[str, ...] = DEFAULT_ROIS) -> list[Path]:
    """The subject's beta files in concatenation order: per ROI (given order), LH then RH."""
    return [beta_file(raw_root, subject, hemisphere, roi) for roi in rois for hemisphere in HEMISPHERES]


def find_subjects(raw_root: str | os.PathLike[str]) -> list[str]:
    """Subjects (`CSI<n>`) with at least one GLMsingle beta file, sorted by n."""
    folder = Path(raw_root) / BETAS_DIR
    if not folder.is_dir():
        return []
    found = {match.group(1) for path in folder.iterdir() if (match := SUBJECT_RE.match(path.name))}
    return sorted(found, key=natural_key)


def presentation_list_files(raw_root: str | os.PathLike[str], subject: str) -> list[Path]:
    """The subject's run lists `<subject>/<session>/*.txt`, sessions then runs in natural order."""
    folder = Path(raw_root) / LISTS_DIR / subject
    sessions = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name))
    return [run for session in sessions
            for run in sorted((p for p in session.iterdir() if p.suffix == ".txt" and p.is_file()),
                              key=lambda p: natural_key(p.name))]


def raw_files(raw_root: str | os.PathLike[str], subject: str, rois: tuple[str, ...] = DEFAULT_ROIS) -> list[Path]:
    """What one subject's preprocessing reads (Snakemake inputs), for data already on disk.

    The beta files and the repeated-stimuli list always; the run lists and the stimulus images the subject saw when
    the lists can be read (else the lists folder itself, so that Snakemake reports it missing).
    """
    raw_root = Path(raw_root)
    files = [*beta_files(raw_root, subject, rois), raw_root / REPEATED_LIST]
    lists_dir = raw_root / LISTS_DIR / subject
    if not lists_dir.is_dir():
        return [*files, lists_dir]
    run_files = presentation_list_files(raw_root, subject)
    names = {name for run in run_files for name, _ in _read_run_list(run)}
    located = _locate_images(raw_root, names, strict=False)
    return [*files, *run_files, *(located[name] for name in sorted(located))]


# ----------------------------------------------------------------------------------------------- readers

def _read_run_list(path: Path) -> list[tuple[str, bool]]:
    """(image file name without `rep_`, whether it was marked `rep_`) for each trial of one run file."""
    try:
        tokens = path.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputDataError(f"cannot read presentation list ({type(exc).__name__}: {exc})", path=path,
                             expected="a text file with one image file name per line", hint=HINT_RELEASE) from exc
    return [(token[len(REPEAT_PREFIX):], True) if token.startswith(REPEAT_PREFIX) else (token, False)
            for token in tokens]


def read_presentation_lists(raw_root: str | os.PathLike[str], subject: str) -> pd.DataFrame:
    """One row per trial in presentation order: stimulus_id, marked_repeat, session, run, list_file (relative)."""
    raw_root = Path(raw_root)
    folder = raw_root / LISTS_DIR / subject
    if not folder.is_dir():
        raise InputDataError(f"no presentation lists for {subject}", path=folder,
                             expected=f"folders {subject}/{subject}_sess<NN>/ with one .txt per run",
                             hint="download BOLD5000_Stimuli completely (Stimuli_Presentation_Lists)")
    rows = []
    for run_file in presentation_list_files(raw_root, subject):
        for name, marked in _read_run_list(run_file):
            rows.append((name, marked, run_file.parent.name, run_file.stem, _relative(run_file, raw_root)))
    if not rows:
        raise InputDataError(f"the presentation lists of {subject} hold no trials", path=folder, value=0,
                             expected="session folders with run .txt files naming the images shown",
                             hint="download BOLD5000_Stimuli completely (Stimuli_Presentation_Lists)")
    return pd.DataFrame(rows, columns=["stimulus_id", "marked_repeat", "session", "run", "list_file"])


def read_betas(raw_root: str | os.PathLike[str], subject: str,
               rois: tuple[str, ...] = DEFAULT_ROIS) -> tuple[np.ndarray, pd.DataFrame]:
    """The subject's ROI betas concatenated along voxels (per ROI: LH then RH).

    Returns:
        betas: float32 (n_trials, n_voxels).
        voxels: one row per column: roi (e.g. "LHEarlyVis"), hemisphere, voxel_index (column within its file).
    """
    matrices, tables = [], []
    reference: tuple[Path, int] | None = None
    for roi in rois:
        for hemisphere in HEMISPHERES:
            path = require_file(beta_file(raw_root, subject, hemisphere, roi), f"{hemisphere} {roi} beta file",
                                hint="download BOLD5000_GLMsingle_ROI_betas/py completely, or change "
                                     "preprocess.bold5000.rois")
            try:
                betas = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise InputDataError(f"cannot read beta file ({type(exc).__name__}: {exc})", path=path,
                                     value=f"{path.stat().st_size} bytes",
                                     expected="a complete .npy (n_trials, n_voxels) matrix",
                                     hint="the file is probably truncated or corrupt: download it again") from exc
            if betas.ndim != 2 or not np.issubdtype(betas.dtype, np.number) or betas.shape[1] == 0:
                raise InputDataError("beta file is not a (n_trials, n_voxels) matrix", path=path,
                                     value=f"{betas.dtype} {betas.shape}", expected="a numeric 2-D matrix",
                                     hint=HINT_RELEASE)
            if reference is None:
                reference = (path, betas.shape[0])
            elif betas.shape[0] != reference[1]:
                raise InputDataError("beta files disagree on the number of trials", path=path, value=betas.shape[0],
                                     expected=f"{reference[1]} trials, as {reference[0].name}",
                                     hint="all ROI files of a subject must come from the same GLMsingle release")
            betas = np.asarray(betas, dtype=np.float32)
            check_finite(betas, path, f"{hemisphere}{roi} betas (index = trial, voxel)")
            matrices.append(betas)
            tables.append(pd.DataFrame({"roi": f"{hemisphere}{roi}", "hemisphere": hemisphere,
                                        "voxel_index": np.arange(betas.shape[1], dtype=np.int64)}))
    if reference[1] == 0:
        raise InputDataError(f"the beta files of {subject} hold no trials", path=reference[0], value=0,
                             expected="at least one trial", hint=HINT_RELEASE)
    return np.concatenate(matrices, axis=1), pd.concat(tables, ignore_index=True)


def read_repeated_list(raw_root: str | os.PathLike[str]) -> list[str]:
    """Image file names of repeated_stimuli_113_list.txt, in file order."""
    path = require_file(Path(raw_root) / REPEATED_LIST, "list of repeated stimuli", hint=HINT_RELEASE)
    return [name for name, _ in _read_run_list(path)]


def _locate_images(raw_root: Path, names: set[str], strict: bool = True) -> dict[str, Path]:
    """Path of each image name in the COCO/ImageNet/Scene folders (file names are unique across them)."""
    folder = raw_root / PRESENTED_DIR
    located: dict[str, Path] = {}
    for image_set in IMAGE_SETS:
        set_dir = folder / image_set
        if not set_dir.is_dir():
            continue
        for path in sorted(set_dir.iterdir()):
            if path.name not in names:
                continue
            if path.name in located:
                raise InputDataError("stimulus file name found in two image folders", path=path, value=path.name,
                                     expected=f"unique names across {list(IMAGE_SETS)}, also in {located[path.name]}",
                                     hint="remove the stray copy")
            located[path.name] = path
    missing = sorted(names - set(located))
    if strict and missing:
        raise InputDataError(
            f"{len(missing)} presented stimulus image(s) not found", path=folder / "{COCO,ImageNet,Scene}" / missing[0],
            value=missing[:5], expected=f"every image of the presentation lists in one of {list(IMAGE_SETS)}",
            hint="download BOLD5000_Stimuli/Scene_Stimuli/Presented_Stimuli completely")
    return located


def _require_subject(raw_root: Path, subject: str) -> None:
    """Raise unless `subject` has beta files (a missing ROI file is reported by read_betas, naming the file)."""
    found = find_subjects(raw_root)
    if subject in found:
        return
    raise InputDataError(
        f"BOLD5000 subject {subject!r} not found", path=raw_root / BETAS_DIR, value=subject,
        expected=f"one of the subjects with beta files: {found}" if found else f"{subject}{BETA_SUFFIX}*.npy files",
        hint="check `subjects.BOLD5000` and data_root in config.yaml" if found else
        "download BOLD5000_GLMsingle_ROI_betas into <data_root>/BOLD5000")


# ----------------------------------------------------------------------------------------------- assembly

def split_trials(trial_names: pd.Series, repeated: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Test stimuli and the trial rows of each split.

    Args:
        trial_names: image name of each trial (presentation order).
        repeated: the repeated-stimuli list.
    Returns:
        test_names: repeated images this subject saw, in list order.
        test_rows: int64 trial rows of those images, grouped by image (list order), chronological within.
        train_rows: int64 every other trial row, chronological.
    """
    seen = set(trial_names)
    test_names = [name for name in dict.fromkeys(repeated) if name in seen]
    rank = {name: i for i, name in enumerate(test_names)}
    trial_rank = trial_names.map(rank)
    is_test = trial_rank.notna().to_numpy()
    test_rows = np.flatnonzero(is_test)
    test_rows = test_rows[np.argsort(trial_rank.to_numpy()[is_test], kind="stable")]
    return test_names, test_rows.astype(np.int64), np.flatnonzero(~is_test).astype(np.int64)


def _read_trials(raw_root: Path, subject: str, rois: tuple[str, ...]
                 ) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray, np.ndarray]:
    """The subject's trials (presentation lists), betas (trial, voxel) and voxel table, and the row indices of its
    test trials (images of the repeated-stimuli list) and training trials; errors when they do not fit together."""
    trials = read_presentation_lists(raw_root, subject)
    betas, voxels = read_betas(raw_root, subject, rois)
    if len(trials) != betas.shape[0]:
        raise InputDataError(
            "presentation lists and beta files disagree on the number of trials", path=raw_root / LISTS_DIR / subject,
            value=f"{len(trials)} listed trials vs {betas.shape[0]} beta rows",
            expected=f"one listed image per row of {beta_files(raw_root, subject, rois)[0].name}",
            hint="a session or run list is missing or extra: compare the lists folder with the release")
    repeated = read_repeated_list(raw_root)
    test_names, test_rows, train_rows = split_trials(trials["stimulus_id"], repeated)
    if not test_names:
        raise InputDataError(f"{subject} saw none of the repeated stimuli", path=raw_root / REPEATED_LIST,
                             value=repeated[:3], expected="some listed images among the subject's trials",
                             hint="the list and the presentation lists must come from the same release")
    if train_rows.size == 0:
        raise InputDataError(f"{subject} has no training trials", path=raw_root / LISTS_DIR / subject, value=0,
                             expected="trials of images outside the repeated-stimuli list", hint=HINT_RELEASE)
    return trials, betas, voxels, test_rows, train_rows


def _samples_table(trials: pd.DataFrame, train_rows: np.ndarray, test_rows: np.ndarray,
                   averaged_names: np.ndarray, repeats: np.ndarray, image_set: dict[str, str]) -> pd.DataFrame:
    """samples.parquet rows: training trials, averaged test images, single test trials (in that order);
    `image_set` maps a stimulus to its image set (the category column)."""
    single = trials.assign(trial=np.arange(len(trials), dtype=np.int64))
    train_part = single.iloc[train_rows].assign(split="train", n_averaged=1)
    test_part = single.iloc[test_rows].assign(split="test", n_averaged=1)
    averaged_part = pd.DataFrame({"stimulus_id": averaged_names.astype(str), "split": "test", "n_averaged": repeats,
                                  "list_file": REPEATED_LIST.as_posix()})
    samples = pd.concat([train_part, averaged_part, test_part], ignore_index=True)
    return pd.DataFrame({
        "sample_id": np.arange(len(samples), dtype=np.int64),
        "split": samples["split"],
        "stimulus_id": samples["stimulus_id"],
        "category": samples["stimulus_id"].map(image_set),
        "n_averaged": samples["n_averaged"].astype(np.int32),
        "source": samples["list_file"],
        "trial": samples["trial"].astype("Int64"),
        "session": samples["session"],
        "run": samples["run"],
        "marked_repeat": samples["marked_repeat"].astype("boolean"),
    })


def preprocess_subject(raw_root: str | os.PathLike[str], subject: str, cfg: Bold5000PreprocessConfig,
                       image_size: int, out_dir: str | os.PathLike[str]) -> PreprocessedSubject:
    """Preprocess one BOLD5000 subject into `out_dir` (samples, fmri, voxels, stimuli; written atomically).

    Rows: training trials (chronological), averaged test images (repeated-list order), single test trials (grouped
    by image in the same order). Raises InputDataError (and writes nothing) on any inconsistency of the raw files.
    """
    raw_root = Path(raw_root)
    rois = tuple(cfg.rois)
    _require_subject(raw_root, subject)
    trials, betas, voxels, test_rows, train_rows = _read_trials(raw_root, subject, rois)
    images_by_name = _locate_images(raw_root, set(trials["stimulus_id"]))

    stats = fit_zscore(betas if cfg.normalization == "scalar" else betas[train_rows], cfg.normalization)
    z = apply_zscore(betas, stats)
    averaged, averaged_names, repeats = average_by_key(z[test_rows], trials["stimulus_id"].to_numpy()[test_rows])
    keep = repeats > 1
    if not keep.all():
        log.info("%s: %d repeated stimuli were seen once; they appear as single trials only",
                 subject, int((~keep).sum()))
    averaged, averaged_names, repeats = averaged[keep], averaged_names[keep], repeats[keep]
    samples = _samples_table(trials, train_rows, test_rows, averaged_names, repeats,
                             {name: path.parent.name for name, path in images_by_name.items()})
    fmri = np.concatenate([z[train_rows], averaged, z[test_rows]])
    mean, std = stats.per_voxel(fmri.shape[1])
    voxels = voxels.assign(mean=mean, std=std)[["roi", "mean", "std", "hemisphere", "voxel_index"]]

    stimulus_id = pd.unique(samples["stimulus_id"])
    images = read_image_files([images_by_name[name] for name in stimulus_id], image_size, desc=f"{subject} stimuli")
    subject_data = PreprocessedSubject(samples=samples, fmri=fmri, voxels=voxels,
                                       stimuli=Stimuli(images=images, stimulus_id=np.asarray(stimulus_id, dtype=str)))
    write_subject(out_dir, subject_data)
    log.info("BOLD5000 %s: %d train trials, %d averaged test images (%s repeats), %d single test trials; %d voxels "
             "(%s); %s z-score", subject, train_rows.size, len(averaged), "/".join(map(str, sorted(set(repeats)))),
             test_rows.size, fmri.shape[1], ", ".join(rois), cfg.normalization)
    return subject_data
