"""Stimulus images: read image files or rows of an image array, centre-crop to a square, resize, as uint8 RGB.

All functions return uint8 arrays (n, size, size, 3) or (size, size, 3). Resizing uses PIL's Lanczos filter
(antialiased when shrinking, so fine textures do not alias); a square image already at `size` is copied unchanged.
"""

from __future__ import annotations

import logging
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from mindvis.errors import InputDataError
from mindvis.io import require_file

log = logging.getLogger(__name__)

RESAMPLE = Image.Resampling.LANCZOS
# Rows of an .npy member read per chunk when streaming an image array out of an .npz (bounded memory).
STREAM_CHUNK_ROWS = 32


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a gray (H, W), RGB or RGBA image; float images in [0, 1] are scaled by 255.

    Float images with values above 1 are taken to be on the 0..255 scale already. Never modifies `image`.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {image.shape}")
    image = image[..., :3]
    if image.dtype == np.uint8:
        return image.copy()
    values = image.astype(np.float64)
    if np.issubdtype(image.dtype, np.floating) and values.size and values.max() <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def center_crop_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop of an (H, W, 3) uint8 image, resized to (size, size, 3) with a Lanczos filter."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(square).copy()
    return np.asarray(Image.fromarray(np.ascontiguousarray(square)).resize((size, size), RESAMPLE))


def _pil_square_resized(picture: Image.Image, size: int) -> np.ndarray:
    """Centre-crop and resize a PIL image within PIL (no full-size numpy copy of large photographs)."""
    picture = picture.convert("RGB")
    width, height = picture.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # Crop before resizing: resize(box=...) would let the filter reach into the discarded margins.
    square = picture.crop((left, top, left + side, top + side))
    return np.asarray(square if side == size else square.resize((size, size), RESAMPLE))


def read_image_file(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """Read a JPEG/PNG/... stimulus file as (size, size, 3) uint8 RGB (centre square crop, Lanczos resize).

    Grayscale, palette and CMYK files are converted to RGB. A missing or undecodable file raises InputDataError.
    """
    path = require_file(path, "stimulus image", hint="check that the stimulus folders were downloaded completely")
    try:
        with Image.open(path) as picture:
            return _pil_square_resized(picture, size)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputDataError(
            f"cannot decode stimulus image ({type(exc).__name__}: {exc})",
            path=path, value=path.name, expected="a readable image file (JPEG, PNG, ...)",
            hint="the file is probably truncated or corrupt: download it again") from exc


def read_image_files(paths: Sequence[str | os.PathLike[str]], size: int, desc: str = "images") -> np.ndarray:
    """Read many stimulus files (see read_image_file) into uint8 (n, size, size, 3), with a progress bar."""
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(tqdm(paths, desc=desc, unit="img", disable=None)):
        images[i] = read_image_file(path, size)
    return images


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(n, H, W[, C]) images of any numeric type -> uint8 (n, size, size, 3), centre-cropped and resized."""
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = center_crop_resize(to_uint8_rgb(image), size)
    return out


def _corrupt(path: Path, key: str, exc: BaseException | str) -> InputDataError:
    detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return InputDataError(
        f"cannot read array {key!r} of the image archive ({detail})", path=path, value=key,
        expected="a complete numpy .npz archive with an (n, H, W, 3) image array",
        hint="the file is probably truncated or corrupt: download it again")


def npz_array_shape(path: str | os.PathLike[str], key: str, what: str) -> tuple[int, ...]:
    """Shape of array `key` of an .npz, read from its header only (nothing else is decompressed)."""
    path = require_file(path, what)
    try:
        with zipfile.ZipFile(path) as archive:
            if f"{key}.npy" not in archive.namelist():
                raise InputDataError(
                    f"{what} lacks the array {key!r}", path=path, value=key,
                    expected=f"arrays {sorted(n[:-4] for n in archive.namelist() if n.endswith('.npy'))} to include it",
                    hint="is this the right file?")
            with archive.open(f"{key}.npy") as member:
                shape, _, _ = _read_npy_header(member)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise _corrupt(path, key, exc) from exc
    return shape


def _read_npy_header(member) -> tuple[tuple[int, ...], bool, np.dtype]:
    major, _ = np.lib.format.read_magic(member)
    if major == 1:
        return np.lib.format.read_array_header_1_0(member)
    if major == 2:
        return np.lib.format.read_array_header_2_0(member)
    raise ValueError(f"unsupported .npy format version {major}")


def read_npz_image_rows(path: str | os.PathLike[str], key: str, rows: Sequence[int] | np.ndarray, size: int,
                        what: str = "image archive", out: np.ndarray | None = None) -> np.ndarray:
    """Rows `rows` of the (n, H, W[, C]) image array `key` of an .npz, as uint8 (len(rows), size, size, 3).

    The array is streamed out of the archive in chunks of rows and each image is resized as it arrives, so memory
    holds the output and one chunk, never the whole array (images_256.npz holds ~240 MB of training images).
    Rows may repeat and come in any order; an index outside [0, n) raises InputDataError.

    Args:
        out: optional uint8 (len(rows), size, size, 3) array to fill (e.g. a slice of a larger stack).
    """
    path = require_file(path, what)
    rows = np.asarray(rows, dtype=np.int64)
    wanted = np.unique(rows)
    out = np.empty((len(rows), size, size, 3), dtype=np.uint8) if out is None else out
    if out.shape != (len(rows), size, size, 3) or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 {(len(rows), size, size, 3)}, got {out.dtype} {out.shape}")
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as member:
            shape, fortran_order, dtype = _read_npy_header(member)
            if dtype.hasobject or len(shape) not in (3, 4):
                raise _corrupt(path, key, f"array of {dtype} {shape} is not an image stack")
            if wanted.size and (wanted[0] < 0 or wanted[-1] >= shape[0]):
                bad = int(wanted[0]) if wanted[0] < 0 else int(wanted[-1])
                raise InputDataError(f"image index out of range for {what} array {key!r}", path=path, value=bad,
                                     expected=f"indices in [0, {shape[0]})", hint="the index file and the image "
                                     "archive do not belong together: check that both come from the same release")
            if fortran_order:  # rows are not contiguous on disk: fall back to reading the whole array
                out[:] = resize_images(np.load(path, allow_pickle=False)[key][rows], size)
                return out
            row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
            last = int(wanted[-1]) if wanted.size else -1
            with tqdm(total=len(wanted), desc=f"{path.name}[{key}]", unit="img", disable=None) as progress:
                for start in range(0, last + 1, STREAM_CHUNK_ROWS):
                    count = min(STREAM_CHUNK_ROWS, last + 1 - start)
                    buffer = member.read(count * row_bytes)
                    if len(buffer) != count * row_bytes:
                        raise _corrupt(path, key, f"archive ends inside image {start + len(buffer) // row_bytes}")
                    chunk = np.frombuffer(buffer, dtype=dtype).reshape((count, *shape[1:]))
                    for row in wanted[(wanted >= start) & (wanted < start + count)]:
                        out[rows == row] = center_crop_resize(to_uint8_rgb(chunk[row - start]), size)
                        progress.update()
    except KeyError as exc:
        raise InputDataError(f"{what} lacks the array {key!r}", path=path, value=key,
                             expected=f"an array named {key!r}", hint="is this the right file?") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise _corrupt(path, key, exc) from exc
    log.info("read %d images of %s[%s] at %d px", len(wanted), path.name, key, size)
    return out
