"""A virtual visual cortex: voxel responses to the demo images, organised like the ventral stream.

Early (retinotopic) voxels have Gaussian population receptive fields (pRFs) in the visual field whose size grows with
eccentricity and along the hierarchy (V1 < V2 < V3 < V4); each sums local luminance, colour-opponent signals and
contrast energy inside its pRF with its own weights (V1 mostly luminance/contrast, V4 mostly colour).
Higher voxels (object-, face- and scene-like areas) ignore position: they respond to the stimulus category (its
shape, texture, hue and a per-category "semantic" code), the object's size and, for scene areas, the background.

A voxel's response is `baseline + gain * drive + noise`, with its stimulus drive standardised across the stimulus
set, a log-normal hemodynamic gain, trial noise shared across voxels (low rank; spatially smooth over the visual
field for retinotopic voxels) and private noise. Noise s.d.s are in units of the drive's s.d.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from mindvis.config.data import DemoCortexConfig
from mindvis.demo.images import BACKGROUNDS, SHAPES, TEXTURES, Category, Instance

AreaKind = Literal["retinotopic", "object", "face", "scene"]
VisualField = Literal["full", "left", "right"]

FEATURE_GRID_PX = 24
"""Early-area features are computed on a FEATURE_GRID_PX x FEATURE_GRID_PX grid over the image."""
SEMANTIC_DIM = 8
ROUND_SHAPES = ("disk", "ring", "hexagon", "star")
"""Shapes the face-like area prefers (faces are round blobs)."""


@dataclass(frozen=True)
class AreaSpec:
    """One visual area of a virtual cortex.

    Attributes:
        name: label written to the dataset's ROI files/masks (e.g. "V1", "LOC", "LHEarlyVis").
        n_voxels: voxels in the area.
        kind: retinotopic (early) or the preference of a high-level area.
        hierarchy: 0..1, position along the ventral stream; sets pRF sizes and colour vs luminance weights.
        field: visual field the area represents (a hemisphere sees the opposite half-field).
    """

    name: str
    n_voxels: int
    kind: AreaKind
    hierarchy: float = 0.0
    field: VisualField = "full"


@dataclass(frozen=True)
class VirtualCortex:
    """Voxel parameters of one subject, voxels in area order (all arrays have n_voxels rows).

    Attributes:
        area: str (V,), the AreaSpec name of each voxel.
        prf_xy: float (V, 2), pRF centre in the visual field ([-1, 1]^2, x right, y down); NaN for high-level voxels.
        prf_sigma: float (V,), pRF s.d. in the same units; NaN for high-level voxels.
        early_weights: float (V, 4), weights of luminance, red-green, blue-yellow and contrast (0 for high-level).
        high_weights: float (V, F), weights of the stimulus features of `stimulus_features` (0 for early voxels).
        gain: float (V,), hemodynamic gain.
        baseline: float (V,), response offset.
        noise_loadings: float (rank, V), loadings of the shared noise (each voxel's column has norm noise_shared).
        noise_private: s.d. of the private noise.
    """

    area: np.ndarray
    prf_xy: np.ndarray
    prf_sigma: np.ndarray
    early_weights: np.ndarray
    high_weights: np.ndarray
    gain: np.ndarray
    baseline: np.ndarray
    noise_loadings: np.ndarray
    noise_private: float

    @property
    def n_voxels(self) -> int:
        return len(self.area)


def _prf_centres(rng: np.random.Generator, n: int, field: VisualField) -> np.ndarray:
    """pRF centres, denser near the fovea (cortical magnification). Returns (n, 2)."""
    eccentricity = 1.1 * rng.uniform(0, 1, n) ** 1.6
    angle = rng.uniform(-np.pi / 2, np.pi / 2, n)  # right half-field
    x, y = eccentricity * np.cos(angle), eccentricity * np.sin(angle)
    if field == "left":
        x = -x
    elif field == "full":
        x = np.where(rng.uniform(size=n) < 0.5, -x, x)
    # Neighbouring voxels of a real volume have neighbouring pRFs: order by polar-angle sector, then eccentricity.
    sector = np.floor((np.arctan2(y, x) + np.pi) / (np.pi / 8))
    order = np.lexsort((eccentricity, sector))
    return np.clip(np.column_stack([x, y]), -1.0, 1.0)[order]


def _high_feature_groups() -> dict[str, slice]:
    names = {"shape": len(SHAPES), "texture": len(TEXTURES), "hue": 2, "semantic": SEMANTIC_DIM, "scale": 1,
             "background": len(BACKGROUNDS) + 1}
    groups, start = {}, 0
    for name, width in names.items():
        groups[name] = slice(start, start + width)
        start += width
    return groups


HIGH_FEATURE_GROUPS = _high_feature_groups()
N_HIGH_FEATURES = max(s.stop for s in HIGH_FEATURE_GROUPS.values())

# How strongly each kind of high-level area weighs each feature group (s.d. of its random weights).
_GROUP_WEIGHTS: dict[str, dict[str, float]] = {
    "object": {"shape": 1.0, "texture": 0.8, "hue": 0.6, "semantic": 1.0, "scale": 0.3, "background": 0.1},
    "face": {"shape": 0.6, "texture": 0.3, "hue": 0.4, "semantic": 1.0, "scale": 0.3, "background": 0.1},
    "scene": {"shape": 0.2, "texture": 0.8, "hue": 0.3, "semantic": 0.6, "scale": 0.6, "background": 1.0},
}


def build_cortex(rng: np.random.Generator, areas: Sequence[AreaSpec], cfg: DemoCortexConfig) -> VirtualCortex:
    """Draw the voxel parameters of one subject's virtual cortex."""
    names, prf_xy, prf_sigma, early_w, high_w = [], [], [], [], []
    for spec in areas:
        n = spec.n_voxels
        names += [spec.name] * n
        if spec.kind == "retinotopic":
            centres = _prf_centres(rng, n, spec.field)
            eccentricity = np.hypot(centres[:, 0], centres[:, 1])
            prf_xy.append(centres)
            prf_sigma.append((0.04 + 0.12 * spec.hierarchy) + (0.08 + 0.25 * spec.hierarchy) * eccentricity)
            # luminance (signed: ON/OFF-like), red-green, blue-yellow (colour grows along the hierarchy), contrast
            colour = 0.3 + 1.2 * spec.hierarchy
            early_w.append(np.column_stack([rng.normal(0, 1.0, n), rng.normal(0, colour, n),
                                            rng.normal(0, colour, n), np.abs(rng.normal(0.8, 0.4, n))]))
            high_w.append(np.zeros((n, N_HIGH_FEATURES)))
        else:
            prf_xy.append(np.full((n, 2), np.nan))
            prf_sigma.append(np.full(n, np.nan))
            early_w.append(np.zeros((n, 4)))
            weights = np.zeros((n, N_HIGH_FEATURES))
            for group, group_slice in HIGH_FEATURE_GROUPS.items():
                width = group_slice.stop - group_slice.start
                weights[:, group_slice] = rng.normal(0, _GROUP_WEIGHTS[spec.kind][group], (n, width))
            if spec.kind == "face":  # face-like voxels prefer round shapes
                for shape in ROUND_SHAPES:
                    weights[:, HIGH_FEATURE_GROUPS["shape"].start + SHAPES.index(shape)] += 1.5
            high_w.append(weights)
    prf_xy_all = np.concatenate(prf_xy)
    n_voxels = len(names)
    return VirtualCortex(
        area=np.array(names),
        prf_xy=prf_xy_all,
        prf_sigma=np.concatenate(prf_sigma),
        early_weights=np.concatenate(early_w),
        high_weights=np.concatenate(high_w),
        gain=np.exp(rng.normal(0.0, cfg.gain_sd, n_voxels)),
        baseline=rng.normal(0.0, 0.5, n_voxels),
        noise_loadings=_shared_noise_loadings(rng, prf_xy_all, cfg.noise_rank, cfg.noise_shared),
        noise_private=cfg.noise_private,
    )


def _shared_noise_loadings(rng: np.random.Generator, prf_xy: np.ndarray, rank: int, size: float) -> np.ndarray:
    """(rank, V) loadings: smooth over the visual field for retinotopic voxels, random for high-level voxels."""
    centres = rng.uniform(-1, 1, (rank, 2))
    signs = rng.choice([-1.0, 1.0], rank)
    retinotopic = ~np.isnan(prf_xy[:, 0])
    loadings = rng.normal(0, 1.0, (rank, len(prf_xy)))
    dist2 = ((prf_xy[None, retinotopic, :] - centres[:, None, :]) ** 2).sum(-1)
    loadings[:, retinotopic] = signs[:, None] * np.exp(-dist2 / (2 * 0.5**2)) + 0.2 * loadings[:, retinotopic]
    loadings *= size / np.linalg.norm(loadings, axis=0, keepdims=True)
    return loadings


def image_features(images: np.ndarray) -> np.ndarray:
    """Local luminance, colour-opponent and contrast maps of RGB images.

    Args:
        images: uint8 (n, H, W, 3).
    Returns:
        float32 (n, 4, FEATURE_GRID_PX**2): luminance, red-green, blue-yellow, contrast energy, each in [0, ~1].
    """
    grid = FEATURE_GRID_PX
    fine = np.stack([np.asarray(Image.fromarray(img).resize((2 * grid, 2 * grid), Image.BOX), dtype=np.float32)
                     for img in images]) / 255.0  # (n, 2g, 2g, 3)
    red, green, blue = fine[..., 0], fine[..., 1], fine[..., 2]
    luminance = 0.299 * red + 0.587 * green + 0.114 * blue
    # contrast energy: luminance gradient magnitude at the finer grid, pooled like the other maps
    gy, gx = np.gradient(luminance, axis=(1, 2))
    contrast = np.sqrt(np.hypot(gx, gy))
    maps = np.stack([luminance, red - green, blue - 0.5 * (red + green), contrast], axis=1)  # (n, 4, 2g, 2g)
    pooled = maps.reshape(len(images), 4, grid, 2, grid, 2).mean(axis=(3, 5))
    return pooled.reshape(len(images), 4, grid * grid).astype(np.float32)


def stimulus_features(categories: Sequence[Category], instances: Sequence[Instance],
                      semantic_codes: np.ndarray) -> np.ndarray:
    """Position-invariant features of each stimulus (what high-level voxels respond to).

    Args:
        categories, instances: per stimulus.
        semantic_codes: float (n_categories, SEMANTIC_DIM), indexed by Category.index.
    Returns:
        float64 (n, N_HIGH_FEATURES).
    """
    features = np.zeros((len(categories), N_HIGH_FEATURES))
    groups = HIGH_FEATURE_GROUPS
    for row, (category, instance) in enumerate(zip(categories, instances, strict=True)):
        features[row, groups["shape"].start + SHAPES.index(category.shape)] = 1.0
        features[row, groups["texture"].start + TEXTURES.index(category.texture)] = 1.0
        hue = 2 * np.pi * (category.hue + instance.hue_shift)
        features[row, groups["hue"]] = [np.cos(hue), np.sin(hue)]
        features[row, groups["semantic"]] = semantic_codes[category.index]
        features[row, groups["scale"].start] = (instance.scale - 0.475) / 0.07
        background = groups["background"]
        features[row, background.start + BACKGROUNDS.index(instance.background)] = 1.0
        features[row, background.stop - 1] = (instance.background_rgb.mean() - 0.5) * 4.0
    return features


def semantic_codes(rng: np.random.Generator, n_categories: int) -> np.ndarray:
    """A random code per category: what each category "means", shared by every subject. (n_categories, SEMANTIC_DIM)."""
    return rng.normal(0, 1.0, (n_categories, SEMANTIC_DIM))


def stimulus_drive(cortex: VirtualCortex, features_early: np.ndarray, features_high: np.ndarray) -> np.ndarray:
    """Noise-free response of every voxel to every stimulus, standardised per voxel across the stimuli.

    Args:
        features_early: (n, 4, G*G) from image_features.
        features_high: (n, F) from stimulus_features.
    Returns:
        float64 (n, V), zero mean and unit s.d. per voxel (before gain).
    """
    grid = (np.arange(FEATURE_GRID_PX) + 0.5) / FEATURE_GRID_PX * 2 - 1
    gx, gy = np.meshgrid(grid, grid)
    points = np.column_stack([gx.ravel(), gy.ravel()])  # (G*G, 2), row-major like the feature maps
    retinotopic = ~np.isnan(cortex.prf_xy[:, 0])
    drive = features_high.astype(np.float64) @ cortex.high_weights.T  # (n, V)
    if retinotopic.any():
        dist2 = ((points[None, :, :] - cortex.prf_xy[retinotopic, None, :]) ** 2).sum(-1)  # (Vr, G*G)
        prf = np.exp(-dist2 / (2 * cortex.prf_sigma[retinotopic, None] ** 2))
        prf /= prf.sum(axis=1, keepdims=True)
        pooled = np.einsum("ncp,vp->nvc", features_early.astype(np.float64), prf)  # (n, Vr, 4)
        # compressive contrast response, as measured in early visual cortex
        pooled[..., 3] = np.sqrt(np.maximum(pooled[..., 3], 0.0))
        drive[:, retinotopic] = np.einsum("nvc,vc->nv", pooled, cortex.early_weights[retinotopic])
    drive -= drive.mean(axis=0)
    std = drive.std(axis=0)
    return drive / np.where(std > 0, std, 1.0)


def trial_responses(rng: np.random.Generator, cortex: VirtualCortex, drive: np.ndarray,
                    stimulus_of_trial: np.ndarray) -> np.ndarray:
    """Single-trial responses (arbitrary units: the drive's s.d. is 1 before the gain).

    Args:
        drive: (n_stimuli, V) from stimulus_drive.
        stimulus_of_trial: int (n_trials,), row of `drive` shown on each trial.
    Returns:
        float32 (n_trials, V).
    """
    n_trials = len(stimulus_of_trial)
    shared = rng.normal(0, 1.0, (n_trials, cortex.noise_loadings.shape[0])) @ cortex.noise_loadings
    private = rng.normal(0, cortex.noise_private, (n_trials, cortex.n_voxels))
    responses = cortex.baseline + cortex.gain * drive[stimulus_of_trial] + shared + private
    return responses.astype(np.float32)
