"""File I/O at the edges: atomic writes and defensive readers that turn low-level failures into MindVisErrors."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from mindvis.errors import InputDataError


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it to `final` only if the block succeeds.

    The temporary name keeps `final`'s suffix (numpy and pyarrow pick formats by suffix). A failed or interrupted
    block leaves neither a partial `final` nor the temporary file behind.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=final.suffix or ".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory; on success its files replace those of `final` (created if needed).

    Files are moved one by one with os.replace after everything was written, so a failure while writing leaves
    `final` untouched. Files of `final` not produced by the block are left alone.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        final.mkdir(parents=True, exist_ok=True)
        for item in sorted(tmp.iterdir()):
            _move_into_place(item, final / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_outputs(*finals: str | os.PathLike[str]) -> Iterator[tuple[Path, ...]]:
    """Yield a temporary path for each of `finals`; move them all into place only if the block succeeds.

    For a job with several named outputs (anywhere, not one folder). Each temporary path has its final's name (numpy
    and pyarrow pick formats by suffix), in a hidden folder beside the final; the block writes it as a file or makes
    it a directory (which then replaces a final directory as a whole). Nothing is moved before the block has written
    everything, so a failure leaves every final untouched and no temporary file behind.
    """
    targets = [Path(final) for final in finals]
    staging: list[Path] = []
    try:
        for final in targets:
            final.parent.mkdir(parents=True, exist_ok=True)
            staging.append(Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent)))
        yield tuple(folder / final.name for folder, final in zip(staging, targets, strict=True))
        for folder, final in zip(staging, targets, strict=True):
            _move_into_place(folder / final.name, final)
    finally:
        for folder in staging:
            shutil.rmtree(folder, ignore_errors=True)


def _move_into_place(item: Path, target: Path) -> None:
    """Replace `target` (a file, a directory or nothing) by `item`, a file or a whole directory on its file system."""
    if target.is_dir():
        shutil.rmtree(target)
    elif item.is_dir() and target.exists():
        target.unlink()  # os.replace cannot put a directory over a file
    os.replace(item, target)


def require_file(path: str | os.PathLike[str], what: str, hint: str | None = None) -> Path:
    """Return `path` as a Path if it is an existing file, else raise InputDataError naming `what` it should be."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(
            f"missing {what}",
            path=path,
            expected="an existing, readable file",
            hint=hint or "check data_root in config.yaml and the dataset's download layout (README, 'Raw inputs')",
        )
    return path


def load_npz(path: str | os.PathLike[str], required: Sequence[str] = (), what: str = "npz file") -> dict[str, np.ndarray]:
    """Load every array of an .npz into memory, with clear errors for missing, truncated or incomplete files.

    Args:
        path: the .npz file.
        required: keys that must be present.
        what: a human name for the file, used in messages (e.g. "GOD subject file").
    Returns:
        dict key -> array (object arrays are refused: allow_pickle=False).
    """
    path = require_file(path, what)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise InputDataError(
            f"cannot read {what} ({type(exc).__name__}: {exc})",
            path=path,
            expected="a complete numpy .npz archive",
            hint="the file is probably truncated or corrupt: download or regenerate it",
        ) from exc
    missing = [key for key in required if key not in arrays]
    if missing:
        raise InputDataError(
            f"{what} lacks required arrays",
            path=path,
            value=missing,
            expected=f"keys {list(required)} (found {sorted(arrays)})",
            hint="is this the right file for this dataset/subject?",
        )
    return arrays


def check_finite(array: np.ndarray, path: str | os.PathLike[str], what: str) -> None:
    """Raise InputDataError if `array` holds NaN or inf, saying how many and where the first one is."""
    finite = np.isfinite(array)
    if finite.all():
        return
    bad = np.argwhere(~finite)
    raise InputDataError(
        f"{what} contains {bad.shape[0]} NaN/inf values",
        path=path,
        value=f"first at index {tuple(int(i) for i in bad[0])}: {array[tuple(bad[0])]}",
        expected="finite numbers only",
        hint="exclude the affected voxels/frames upstream, or fix the file",
    )
