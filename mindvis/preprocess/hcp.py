"""HCP resting state -> the preprocessed-data contract (MinD-Vis's Stage A pretraining data).

Raw layouts read (under `raw_root`):
- `HCP/<subject>/MNINonLinear/Results/rfMRI_<RUN>/<file>`: CIFTI-2 dense series, 91282 grayordinates, TR 0.72 s
  (1200 frames per run in the HCP release), where `<file>` is the one file matching `file_pattern` (config
  preprocess.hcp.file_pattern). The default pattern matches both names the HCP Young Adult release has used:
  S1200's `rfMRI_<RUN>_Atlas_MSMAll_hp2000_clean.dtseries.nii` and the current re-cleaned
  `rfMRI_<RUN>_Atlas_MSMAll_hp2000_clean_rclean_tclean.dtseries.nii`;
- `HCP/npz/<subject>/HCP_visual_voxel.npz`: the intermediate MinD-Vis trained from, arrays V1..V4 each
  (frames, voxels) of one run, without grayordinate indices.

One subject job: take the V1-V4 grayordinates of the Glasser atlas (4183) of each configured run, average
non-overlapping windows of `window_frames` frames (the incomplete tail window is dropped; windows never span two
runs), z-score the subject's whole window matrix (one scalar mean/std as MinD-Vis, or per grayordinate over time),
and write samples (split `pretrain`, no stimulus) with the contract.

Only the header and the V1-V4 columns of a run are read (neighbouring grayordinates at a time through a nibabel array
proxy), never the whole 438 MB matrix, and never as float64.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from nibabel.arrayproxy import ArrayProxy

from mindvis.config.data import HcpPreprocessConfig
from mindvis.data.contract import PreprocessedSubject, write_subject
from mindvis.preprocess.grayordinates import (
    VISUAL_AREAS,
    AtlasLabels,
    VisualGrayordinates,
    check_standard_layout,
    load_atlas,
    read_dense_series_header,
    visual_grayordinates,
)
from mindvis.errors import InputDataError
from mindvis.io import load_npz
from mindvis.preprocess.normalize import zscore
from mindvis.preprocess.windows import n_windows, window_means, window_starts

log = logging.getLogger(__name__)

HCP_DIR = "HCP"
NPZ_DIR = "npz"  # HCP/npz/<subject>/ holds the MinD-Vis intermediate; never a subject ID
NPZ_FILE = "HCP_visual_voxel.npz"
# A run's dense series, as a glob in its run folder ({run} = e.g. REST1_LR): S1200's "..._clean.dtseries.nii" and the
# current release's "..._clean_rclean_tclean.dtseries.nii" (config preprocess.hcp.file_pattern).
DEFAULT_FILE_PATTERN = "rfMRI_{run}_Atlas_MSMAll_hp2000_clean*.dtseries.nii"
SOURCES: tuple[str, ...] = ("auto", "cifti", "npz")
# Grayordinate columns read per proxy slice may include up to this many unwanted neighbours between two wanted
# ones: one slice over a small gap is cheaper than two file reads (a column is 4.8 kB at 1200 frames).
_MAX_GAP_COLUMNS = 16


# ----------------------------------------------------------------------------------------------------------------
# Layout


def run_dir(raw_root: str | os.PathLike[str], subject: str, run: str) -> Path:
    """The folder of one run (e.g. run "REST1_LR") in the HCP release layout."""
    return Path(raw_root) / HCP_DIR / subject / "MNINonLinear" / "Results" / f"rfMRI_{run}"


def run_path(raw_root: str | os.PathLike[str], subject: str, run: str) -> Path:
    """The S1200 name of one run's CIFTI dense series (what the demo writes; readers use `run_file`)."""
    return run_dir(raw_root, subject, run) / f"rfMRI_{run}_Atlas_MSMAll_hp2000_clean.dtseries.nii"


def run_file(raw_root: str | os.PathLike[str], subject: str, run: str,
             file_pattern: str = DEFAULT_FILE_PATTERN) -> Path:
    """The dense series of one run: the one file of its run folder matching `file_pattern` ({run} = the run).

    When no file matches, the pattern itself (as a path in the run folder) is returned: Snakemake and the reader
    report it as the missing input, naming what was looked for.

    Raises:
        InputDataError: several files match (e.g. both the S1200 and the current release's series were downloaded).
    """
    folder = run_dir(raw_root, subject, run)
    name = file_pattern.replace("{run}", run)
    found = sorted(folder.glob(name)) if folder.is_dir() else []
    if len(found) > 1:
        raise InputDataError(
            f"several HCP dense series of run {run} match preprocess.hcp.file_pattern", path=folder,
            value=[p.name for p in found], expected=f"exactly one file matching {name!r}",
            hint="set preprocess.hcp.file_pattern to the series to use, e.g. "
                 "'rfMRI_{run}_Atlas_MSMAll_hp2000_clean_rclean_tclean.dtseries.nii' (current release) or "
                 "'rfMRI_{run}_Atlas_MSMAll_hp2000_clean.dtseries.nii' (S1200)")
    return found[0] if found else folder / name


def npz_path(raw_root: str | os.PathLike[str], subject: str) -> Path:
    """The MinD-Vis intermediate file of one subject."""
    return Path(raw_root) / HCP_DIR / NPZ_DIR / subject / NPZ_FILE


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown HCP source {source!r}; expected one of {SOURCES}")


def find_subjects(raw_root: str | os.PathLike[str], runs: Sequence[str] = ("REST1_LR",),
                  source: str = "auto", file_pattern: str = DEFAULT_FILE_PATTERN) -> list[str]:
    """Sorted IDs of the subjects under `raw_root/HCP` that have every run of `runs` (CIFTI) or the npz.

    `source` "cifti" or "npz" counts only that kind of input; "auto" either. A run counts when a file of its
    folder matches `file_pattern` (several matching files are reported by `run_file`).
    """
    _check_source(source)
    hcp_root = Path(raw_root) / HCP_DIR
    found: set[str] = set()
    if source in ("auto", "cifti") and hcp_root.is_dir():
        for folder in sorted(hcp_root.iterdir()):
            if folder.is_dir() and folder.name != NPZ_DIR and all(
                    _has_run(raw_root, folder.name, run, file_pattern) for run in runs):
                found.add(folder.name)
    if source in ("auto", "npz") and (hcp_root / NPZ_DIR).is_dir():
        for folder in sorted((hcp_root / NPZ_DIR).iterdir()):
            if (folder / NPZ_FILE).is_file():
                found.add(folder.name)
    return sorted(found)


def _has_run(raw_root: str | os.PathLike[str], subject: str, run: str, file_pattern: str) -> bool:
    folder = run_dir(raw_root, subject, run)
    return folder.is_dir() and any(folder.glob(file_pattern.replace("{run}", run)))


def raw_files(raw_root: str | os.PathLike[str], subject: str, runs: Sequence[str] = ("REST1_LR",),
              source: str = "auto", file_pattern: str = DEFAULT_FILE_PATTERN) -> list[Path]:
    """The raw files one subject's preprocessing job reads (Snakemake inputs).

    "cifti": one dense series per run (`run_file`); "npz": the MinD-Vis intermediate; "auto": the CIFTI runs when
    all exist, else the npz when it exists, else the CIFTI runs (files another rule, e.g. the demo, may still write;
    a missing file is reported by Snakemake or by `preprocess_subject`).
    """
    _check_source(source)
    cifti = [run_file(raw_root, subject, run, file_pattern) for run in runs]
    npz = npz_path(raw_root, subject)
    if source == "npz" or (source == "auto" and not all(p.is_file() for p in cifti) and npz.is_file()):
        return [npz]
    return cifti


# ----------------------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class VisualSeries:
    """The visual-cortex time series of one raw file.

    Attributes:
        path: the raw file.
        run: run name (e.g. "REST1_LR"); None for the npz intermediate, which does not record it.
        series: float32 (frames, voxels), MinD-Vis column order (V1, V2, V3, V4).
        voxels: one row per column: roi, grayordinate, hemisphere, glasser_label, area (nullable for the npz).
    """

    path: Path
    run: str | None
    series: np.ndarray
    voxels: pd.DataFrame


def _voxel_table(visual: VisualGrayordinates) -> pd.DataFrame:
    return pd.DataFrame({
        "roi": pd.array(visual.roi, dtype="string"),
        "grayordinate": pd.array(visual.index, dtype="Int64"),
        "hemisphere": pd.array(visual.hemisphere, dtype="string"),
        "glasser_label": pd.array(visual.label, dtype="Int64"),
        "area": pd.array(visual.area, dtype="string"),
    })


def _column_groups(sorted_columns: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """[start, stop) column ranges covering `sorted_columns`, merging neighbours at most `max_gap` apart."""
    breaks = np.flatnonzero(np.diff(sorted_columns) > max_gap + 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [sorted_columns.size]])
    return [(int(sorted_columns[a]), int(sorted_columns[b - 1]) + 1) for a, b in zip(starts, stops)]


def read_columns(dataobj: ArrayProxy, columns: np.ndarray, path: Path) -> np.ndarray:
    """float32 (frames, len(columns)): the given grayordinate columns of a CIFTI array proxy, in `columns` order.

    CIFTI stores each grayordinate's time series contiguously, so a slice over neighbouring columns is one
    contiguous read; the proxy never materialises the whole matrix.
    """
    order = np.argsort(columns, kind="stable")
    sorted_columns = columns[order]
    n_frames = dataobj.shape[0]
    out = np.empty((n_frames, columns.size), dtype=np.float32)
    filled = 0
    try:
        for start, stop in _column_groups(sorted_columns, _MAX_GAP_COLUMNS):
            wanted = sorted_columns[filled:np.searchsorted(sorted_columns, stop)]
            block = np.asarray(dataobj[:, start:stop])
            out[:, filled:filled + wanted.size] = block[:, wanted - start]
            filled += wanted.size
    except (OSError, ValueError, EOFError) as exc:
        raise InputDataError(f"cannot read the data of the CIFTI file ({type(exc).__name__}: {exc})", path=path,
                             expected="a complete CIFTI-2 dense series",
                             hint="the file is probably truncated or corrupt: download it again") from exc
    restored = np.empty_like(out)
    restored[:, order] = out
    return restored


def _check_finite(series: np.ndarray, voxels: pd.DataFrame, path: Path) -> None:
    finite = np.isfinite(series)
    if finite.all():
        return
    bad_frames, bad_columns = np.nonzero(~finite)
    column = int(bad_columns[0])
    where = f"column {column}" if voxels["grayordinate"].isna().iloc[column] else \
        f"grayordinate {int(voxels['grayordinate'].iloc[column])}"
    raise InputDataError(
        f"{bad_frames.size} NaN/inf values in the visual-cortex voxels",
        path=path,
        value=f"first at frame {int(bad_frames[0])}, {where} ({voxels['roi'].iloc[column]}): "
              f"{series[bad_frames[0], column]}",
        expected="finite values at every V1-V4 grayordinate",
        hint="this subject's run is damaged: exclude the subject (config `subjects.HCP`) or re-download the run",
    )


def _check_frames(n_frames: int, window_frames: int, path: Path) -> None:
    if n_windows(n_frames, window_frames) == 0:
        raise InputDataError("too few frames for one averaging window", path=path, value=n_frames,
                             expected=f"at least window_frames = {window_frames} frames",
                             hint="lower preprocess.hcp.window_frames or exclude this run/subject")


def read_cifti_run(path: str | os.PathLike[str], run: str | None, atlas: AtlasLabels,
                   window_frames: int) -> VisualSeries:
    """The V1-V4 time series of one HCP dense-series file, checked (layout, length, completeness, finiteness)."""
    path = Path(path)
    header = read_dense_series_header(path)
    check_standard_layout(header.structures, path)
    _check_frames(header.n_frames, window_frames, path)
    visual = visual_grayordinates(header.structures, atlas, path)
    series = read_columns(header.array_proxy(), visual.index, path)
    voxels = _voxel_table(visual)
    _check_finite(series, voxels, path)
    log.info("%s: %d frames, %d visual grayordinates", path, series.shape[0], series.shape[1])
    return VisualSeries(path=path, run=run, series=series, voxels=voxels)


def read_visual_npz(path: str | os.PathLike[str], window_frames: int) -> VisualSeries:
    """The MinD-Vis intermediate (arrays V1..V4, each (frames, voxels)) as one visual series, checked."""
    path = Path(path)
    arrays = load_npz(path, required=VISUAL_AREAS, what="MinD-Vis HCP intermediate (HCP_visual_voxel.npz)")
    parts = [arrays[roi] for roi in VISUAL_AREAS]
    shapes = {roi: part.shape for roi, part in zip(VISUAL_AREAS, parts)}
    if any(part.ndim != 2 or part.shape[1] == 0 or not np.issubdtype(part.dtype, np.number) for part in parts) \
            or len({part.shape[0] for part in parts}) != 1:
        raise InputDataError("V1..V4 are not numeric (frames, voxels) matrices of one run", path=path,
                             value={roi: f"{arrays[roi].dtype} {shape}" for roi, shape in shapes.items()},
                             expected="2-D numeric arrays with the same number of frames (rows)",
                             hint="regenerate the file: one run's frames x the area's grayordinates per key")
    _check_frames(parts[0].shape[0], window_frames, path)
    series = np.concatenate([part.astype(np.float32, copy=False) for part in parts], axis=1)
    n_voxels = [part.shape[1] for part in parts]
    voxels = pd.DataFrame({
        "roi": pd.array(np.repeat(VISUAL_AREAS, n_voxels), dtype="string"),
        "grayordinate": pd.array([None] * series.shape[1], dtype="Int64"),
        "hemisphere": pd.array([None] * series.shape[1], dtype="string"),
        "glasser_label": pd.array([None] * series.shape[1], dtype="Int64"),
        "area": pd.array([None] * series.shape[1], dtype="string"),
    })
    _check_finite(series, voxels, path)
    log.info("%s: %d frames, %d visual voxels", path, series.shape[0], series.shape[1])
    return VisualSeries(path=path, run=None, series=series, voxels=voxels)


# ----------------------------------------------------------------------------------------------------------------
# One subject


def _subject_series(raw_root: Path, subject: str, cfg: HcpPreprocessConfig) -> list[VisualSeries]:
    """Read every raw file of `subject`; raises InputDataError when the subject or one of its files is missing."""
    files = raw_files(raw_root, subject, cfg.runs, cfg.source, cfg.file_pattern)
    if not (raw_root / HCP_DIR / subject).is_dir() and not npz_path(raw_root, subject).is_file():
        known = find_subjects(raw_root, cfg.runs, cfg.source, cfg.file_pattern)
        raise InputDataError(
            f"HCP subject {subject!r} not found", path=raw_root / HCP_DIR, value=subject,
            expected=f"HCP/{subject}/ (CIFTI runs) or HCP/npz/{subject}/{NPZ_FILE}",
            hint=f"subjects found: {known[:10]}{' ...' if len(known) > 10 else ''}; "
                 "fix `subjects.HCP` or data_root in config.yaml")
    if files == [npz_path(raw_root, subject)]:
        return [read_visual_npz(files[0], cfg.window_frames)]
    for path, run in zip(files, cfg.runs, strict=True):
        if not path.is_file():
            raise InputDataError(
                "missing HCP resting-state CIFTI file", path=path,
                expected=f"one file matching preprocess.hcp.file_pattern ({cfg.file_pattern!r}) in {path.parent}",
                hint="check data_root, preprocess.hcp.runs and preprocess.hcp.file_pattern (README, 'Raw inputs')")
    atlas = load_atlas(cfg.atlas)
    return [read_cifti_run(path, run, atlas, cfg.window_frames) for path, run in zip(files, cfg.runs, strict=True)]


def _source_name(path: Path, raw_root: Path) -> str:
    """`path` relative to the raw root when inside it (portable across machines), else as given."""
    try:
        return path.relative_to(raw_root).as_posix()
    except ValueError:
        return str(path)


def _windows(inputs: list[VisualSeries], window_frames: int, raw_root: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Window means of every input, stacked: float32 (n_windows_total, voxels) and per window source, run,
    frame_start (windows never span two runs)."""
    means, rows = [], []
    for item in inputs:
        run_means = window_means(item.series, window_frames)  # (n_windows, voxels)
        means.append(run_means)
        rows.append(pd.DataFrame({
            "source": [_source_name(item.path, raw_root)] * len(run_means),
            "run": pd.array([item.run] * len(run_means), dtype="string"),
            "frame_start": window_starts(item.series.shape[0], window_frames),
        }))
    return np.concatenate(means, axis=0), pd.concat(rows, ignore_index=True)


def preprocess_subject(raw_root: str | os.PathLike[str], subject: str, cfg: HcpPreprocessConfig,
                       out_dir: str | os.PathLike[str]) -> PreprocessedSubject:
    """One HCP subject's raw files -> `out_dir` in the preprocessed-data contract (written atomically).

    Args:
        raw_root: folder holding `HCP/`.
        subject: HCP subject ID (e.g. "100206").
        cfg: runs, window_frames, normalization ("scalar" | "voxel"), atlas, source, file_pattern.
        out_dir: the subject's contract folder (results/preprocessed/HCP/<subject>).
    Returns:
        The written subject: fmri float32 (n_windows_total, n_visual), one `pretrain` row per window with columns
        run and frame_start (first frame of the window in its run), voxels with roi, mean, std, grayordinate,
        hemisphere, glasser_label, area.
    Raises:
        InputDataError: missing subject/file, several files matching file_pattern, not a dense series, wrong
            layout, NaN/inf, too few frames, bad npz.
    """
    raw_root = Path(raw_root)
    inputs = _subject_series(raw_root, subject, cfg)
    windows, per_window = _windows(inputs, cfg.window_frames, raw_root)
    # One z-score over the subject's whole window matrix (all runs together), as MinD-Vis does per subject.
    fmri, stats = zscore(windows, cfg.normalization)
    mean, std = stats.per_voxel(fmri.shape[1])
    samples = pd.concat([pd.DataFrame({
        "sample_id": np.arange(len(fmri), dtype=np.int64),
        "split": "pretrain",
        "stimulus_id": pd.array([None] * len(fmri), dtype="string"),
        "category": pd.array([None] * len(fmri), dtype="string"),
        "n_averaged": np.full(len(fmri), cfg.window_frames, dtype=np.int32),
    }), per_window], axis=1)
    voxels = inputs[0].voxels  # every run of a subject has the same (checked) layout, hence the same columns
    voxel_table = pd.concat([voxels[["roi"]], pd.DataFrame({"mean": mean, "std": std}),
                             voxels.drop(columns="roi")], axis=1)
    subject_data = PreprocessedSubject(samples=samples, fmri=fmri, voxels=voxel_table)
    write_subject(out_dir, subject_data)
    log.info("HCP %s: %d samples x %d voxels -> %s", subject, fmri.shape[0], fmri.shape[1], out_dir)
    return subject_data
