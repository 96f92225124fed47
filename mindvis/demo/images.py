"""Procedural demo stimuli: colour images of categories that differ in shape, colour and texture.

A category is a fixed combination of an object shape, a hue and a surface texture (plus the texture's angle, period
and second colour). An image of a category varies the nuisance variables a classifier must learn to ignore:
position, scale, a small rotation, colour jitter, texture phase and the background (uniform, gradient or blotchy,
of a random low-saturation colour). Categories are disjoint combinations, so a classifier can learn them, and the
virtual cortex (mindvis.demo.cortex) can respond to them.

Categories carry made-up WordNet-style ids `n9xxxxxxx` (WordNet noun offsets stay below n16000000, so these never
collide with a real ImageNet synset) and names like `red_striped_disk`.

The datasets' images and "fresh" images (`generate_category_images`, for training demo generators/classifiers)
come from different random streams, so fresh images are never the datasets' test images.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mindvis.config.data import DemoDataConfig
from mindvis.demo.streams import stream
from mindvis.errors import ConfigError

SHAPES: tuple[str, ...] = ("disk", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon", "crescent",
                           "bar")
TEXTURES: tuple[str, ...] = ("solid", "striped", "checkered", "dotted", "ringed", "gridded")
HUE_NAMES: tuple[str, ...] = ("red", "orange", "yellow", "lime", "green", "jade", "cyan", "azure", "blue", "violet",
                              "purple", "magenta")
BACKGROUNDS: tuple[str, ...] = ("uniform", "gradient", "blotchy")
MAX_CATEGORIES = len(SHAPES) * len(TEXTURES) * len(HUE_NAMES)
MIN_CATEGORIES = 100
FAKE_WNID_BASE = 90_000_000
ATTRIBUTE_SIZES: tuple[int, int, int] = (len(SHAPES), len(TEXTURES), len(HUE_NAMES))
"""Number of values of each category attribute, in the order of `Category.attributes`."""
GENERATOR_VERSION = 1
"""Bump when a change here alters what is drawn: the shipped demo weights (mindvis.demo.pretrained) record it."""


@dataclass(frozen=True)
class Category:
    """One demo category.

    Attributes:
        index: position in `category_table` (train categories first, then test categories).
        wnid: WordNet-style id, e.g. "n93120457" (made up; see module docstring).
        name: e.g. "red_striped_disk".
        split: "train" or "test" (GOD's split: test categories never appear in training images).
        shape, texture: entries of SHAPES / TEXTURES.
        hue: in [0, 1) (HSV hue of the object's main colour).
        texture_angle_rad: orientation of the texture in the object's frame.
        texture_period: texture period in object radii.
        dark_pattern: the texture's second colour is a dark (True) or a light (False) version of the main colour.
    """

    index: int
    wnid: str
    name: str
    split: str
    shape: str
    texture: str
    hue: float
    texture_angle_rad: float
    texture_period: float
    dark_pattern: bool

    @property
    def attributes(self) -> tuple[int, int, int]:
        """(shape, texture, hue) as indices into SHAPES, TEXTURES and HUE_NAMES (sizes: ATTRIBUTE_SIZES)."""
        return SHAPES.index(self.shape), TEXTURES.index(self.texture), round(self.hue * len(HUE_NAMES))


@dataclass(frozen=True)
class Instance:
    """Nuisance variables of one image (all in image-relative units).

    Attributes:
        center_xy: object centre in [-1, 1]^2 (x right, y down; 0 = image centre).
        scale: object radius as a fraction of the half-width of the image.
        rotation_rad: object rotation.
        hue_shift, saturation_gain, value_gain: colour jitter of the object.
        texture_phase: shift of the texture in periods, (2,).
        background: entry of BACKGROUNDS.
        background_rgb: (2, 3) the background's two colours in [0, 1] (the second is used by gradient/blotchy).
        background_waves: (3, 3) blotchy background: per wave (kx, ky, phase).
    """

    center_xy: tuple[float, float]
    scale: float
    rotation_rad: float
    hue_shift: float
    saturation_gain: float
    value_gain: float
    texture_phase: tuple[float, float]
    background: str
    background_rgb: np.ndarray
    background_waves: np.ndarray


def n_categories(cfg: DemoDataConfig) -> int:
    """Number of demo categories: GOD's train categories plus its test categories."""
    return cfg.god.n_train_categories + cfg.god.n_test_categories


def category_table(cfg: DemoDataConfig) -> tuple[Category, ...]:
    """Every demo category, train categories first (index 0..n_train-1), then test categories."""
    return _category_table(cfg.seed, cfg.god.n_train_categories, cfg.god.n_test_categories)


@lru_cache(maxsize=8)
def _category_table(seed: int, n_train: int, n_test: int) -> tuple[Category, ...]:
    total = n_train + n_test
    if not MIN_CATEGORIES <= total <= MAX_CATEGORIES:
        raise ConfigError("the demo needs between 100 and 720 categories in all",
                          path="demo_data.god.n_train_categories + demo_data.god.n_test_categories", value=total,
                          expected=f"{MIN_CATEGORIES}..{MAX_CATEGORIES}",
                          hint="change n_train_categories or n_test_categories")
    rng = stream(seed, "categories")
    combos = rng.permutation(MAX_CATEGORIES)[:total]
    wnid_numbers = FAKE_WNID_BASE + rng.choice(9_999_999, size=total, replace=False)
    categories = []
    for index, (combo, number) in enumerate(zip(combos.tolist(), wnid_numbers.tolist(), strict=True)):
        shape_i, rest = divmod(combo, len(TEXTURES) * len(HUE_NAMES))
        texture_i, hue_i = divmod(rest, len(HUE_NAMES))
        shape, texture, hue_name = SHAPES[shape_i], TEXTURES[texture_i], HUE_NAMES[hue_i]
        categories.append(Category(
            index=index,
            wnid=f"n{number:08d}",
            name=f"{hue_name}_{texture}_{shape}",
            split="train" if index < n_train else "test",
            shape=shape,
            texture=texture,
            hue=hue_i / len(HUE_NAMES),
            texture_angle_rad=float(rng.uniform(0.0, np.pi)),
            texture_period=float(rng.uniform(0.3, 0.6)),
            dark_pattern=bool(rng.integers(2)),
        ))
    return tuple(categories)


def sample_instance(rng: np.random.Generator) -> Instance:
    """Draw the nuisance variables of one image."""
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    colours = np.array([colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.35), rng.uniform(0.2, 0.95))
                        for _ in range(2)], dtype=np.float32)
    waves = np.column_stack([rng.uniform(-2.5, 2.5, 3), rng.uniform(-2.5, 2.5, 3), rng.uniform(0, 2 * np.pi, 3)])
    return Instance(
        center_xy=(float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.3, 0.3))),
        scale=float(rng.uniform(0.35, 0.6)),
        rotation_rad=float(rng.uniform(-0.35, 0.35)),
        hue_shift=float(rng.uniform(-0.02, 0.02)),
        saturation_gain=float(rng.uniform(0.8, 1.1)),
        value_gain=float(rng.uniform(0.8, 1.1)),
        texture_phase=(float(rng.uniform()), float(rng.uniform())),
        background=background,
        background_rgb=colours,
        background_waves=waves.astype(np.float32),
    )


def _shape_distance(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Approximate signed distance (object radii; negative inside) to the outline of `shape` centred at 0."""
    if shape == "disk":
        return np.hypot(x, y) - 1.0
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) - 0.8
    if shape == "diamond":
        return (np.abs(x) + np.abs(y) - 1.1) * np.float32(np.sqrt(0.5))
    if shape == "triangle":  # apex up (y grows downwards)
        edges = [y, 0.866 * x - 0.5 * y, -0.866 * x - 0.5 * y]
        return np.maximum.reduce(edges) - 0.55
    if shape == "hexagon":
        faces = [np.abs(x), np.abs(0.5 * x + 0.866 * y), np.abs(0.5 * x - 0.866 * y)]
        return np.maximum.reduce(faces) - 0.85
    if shape == "star":
        radius = np.hypot(x, y)
        outline = 0.62 + 0.38 * np.cos(5.0 * np.arctan2(x, -y))
        return (radius - outline) * 0.6
    if shape == "cross":
        ax, ay = np.abs(x), np.abs(y)
        return np.minimum(np.maximum(ax - 1.0, ay - 0.3), np.maximum(ax - 0.3, ay - 1.0))
    if shape == "ring":
        return np.abs(np.hypot(x, y) - 0.72) - 0.28
    if shape == "crescent":
        return np.maximum(np.hypot(x, y) - 1.0, 0.8 - np.hypot(x - 0.45, y + 0.1))
    if shape == "bar":
        return np.maximum(np.abs(x) - 1.05, np.abs(y) - 0.35)
    raise ValueError(f"unknown shape {shape!r}")


def _texture_weight(category: Category, x: np.ndarray, y: np.ndarray, phase: tuple[float, float]) -> np.ndarray:
    """Weight in [0, 1] of the texture's second colour at object-frame coordinates (x, y)."""
    if category.texture == "solid":
        return np.zeros_like(x)
    cos_a, sin_a = np.float32(np.cos(category.texture_angle_rad)), np.float32(np.sin(category.texture_angle_rad))
    a = (x * cos_a + y * sin_a) / category.texture_period + phase[0]
    b = (-x * sin_a + y * cos_a) / category.texture_period + phase[1]
    two_pi = np.float32(2 * np.pi)
    if category.texture == "striped":
        return 0.5 + 0.5 * np.tanh(4.0 * np.sin(two_pi * a))
    if category.texture == "checkered":
        return 0.5 + 0.5 * np.tanh(6.0 * np.sin(two_pi * a) * np.sin(two_pi * b))
    if category.texture == "dotted":
        dist = np.hypot(a - np.round(a), b - np.round(b))
        return 0.5 + 0.5 * np.tanh(12.0 * (0.28 - dist))
    if category.texture == "ringed":
        return 0.5 + 0.5 * np.tanh(4.0 * np.sin(two_pi * (np.hypot(x, y) / category.texture_period + phase[0])))
    if category.texture == "gridded":
        line = np.minimum(np.abs(a - np.round(a)), np.abs(b - np.round(b)))
        return 0.5 + 0.5 * np.tanh(20.0 * (0.1 - line))
    raise ValueError(f"unknown texture {category.texture!r}")


def _background(instance: Instance, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(H, W, 3) background in [0, 1]."""
    first, second = instance.background_rgb
    if instance.background == "uniform":
        mix = np.zeros_like(u)
    elif instance.background == "gradient":
        mix = 0.5 + 0.5 * v
    else:
        # sin(kx*u + ky*v + p) = sin(kx*u) cos(ky*v + p) + cos(kx*u) sin(ky*v + p): outer products of 1-D waves
        x, y = u[0], v[:, 0]
        mix = np.zeros_like(u)
        for kx, ky, phase in instance.background_waves.tolist():
            mix += np.outer(np.cos(ky * y + phase), np.sin(kx * x)) + np.outer(np.sin(ky * y + phase), np.cos(kx * x))
        mix = 0.5 + mix / 6.0
    return first + mix[..., None] * (second - first)


def render(category: Category, instance: Instance, size_px: int) -> np.ndarray:
    """Draw one image.

    Returns:
        uint8 (size_px, size_px, 3), RGB.
    """
    coords = (np.arange(size_px, dtype=np.float32) + 0.5) / size_px * 2.0 - 1.0
    u, v = np.meshgrid(coords, coords)  # u: x (columns), v: y (rows, downwards)
    cos_r, sin_r = np.float32(np.cos(instance.rotation_rad)), np.float32(np.sin(instance.rotation_rad))
    du, dv = (u - instance.center_xy[0]) / instance.scale, (v - instance.center_xy[1]) / instance.scale
    x, y = du * cos_r + dv * sin_r, -du * sin_r + dv * cos_r

    distance = _shape_distance(category.shape, x, y)
    pixels_per_radius = instance.scale * size_px / 2.0
    alpha = np.clip(0.5 - distance * pixels_per_radius, 0.0, 1.0)[..., None]  # 1-px anti-aliased edge

    hue = (category.hue + instance.hue_shift) % 1.0
    main = np.array(colorsys.hsv_to_rgb(hue, min(0.9 * instance.saturation_gain, 1.0),
                                        min(0.9 * instance.value_gain, 1.0)), dtype=np.float32)
    second = main * 0.3 if category.dark_pattern else main + 0.7 * (1.0 - main)
    weight = _texture_weight(category, x, y, instance.texture_phase)[..., None]
    surface = main + weight * (second - main)

    image = _background(instance, u, v) * (1.0 - alpha) + surface * alpha
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_stimuli(cfg: DemoDataConfig, dataset: str, stimuli: Sequence[tuple[int, int]], size_px: int,
                   ) -> tuple[np.ndarray, list[Instance]]:
    """Images of a dataset's stimuli.

    Args:
        dataset: the dataset's name (its images never coincide with another dataset's).
        stimuli: (category index, image number) per image; with `dataset`, the pair alone fixes the image.
        size_px: side of the images.
    Returns:
        images uint8 (n, size_px, size_px, 3) and the Instance of each image.
    """
    table = category_table(cfg)
    images = np.empty((len(stimuli), size_px, size_px, 3), dtype=np.uint8)
    instances = []
    for row, (category_index, image_number) in enumerate(stimuli):
        instance = sample_instance(stream(cfg.seed, "stimulus", dataset, category_index, image_number))
        images[row] = render(table[category_index], instance, size_px)
        instances.append(instance)
    return images, instances


def generate_category_images(cfg: DemoDataConfig, category_index: int, n: int, seed: int,
                             size_px: int | None = None) -> np.ndarray:
    """Fresh images of one demo category, never any of the datasets' images (e.g. to train a demo classifier/LDM).

    Args:
        category_index: 0..n_categories(cfg)-1 (see category_table).
        n: number of images.
        seed: selects the images; the same (cfg.seed, category_index, seed) always gives the same images.
        size_px: image side; default cfg.god.image_size_px.
    Returns:
        uint8 (n, size_px, size_px, 3), RGB.
    """
    table = category_table(cfg)
    if not 0 <= category_index < len(table):
        raise ConfigError("no such demo category", value=category_index, expected=f"0..{len(table) - 1}",
                          hint="see mindvis.demo.images.category_table")
    if seed < 0:
        raise ConfigError("image seed must be non-negative", value=seed, expected="an integer >= 0")
    size_px = size_px or cfg.god.image_size_px
    rng = stream(cfg.seed, "fresh", seed, category_index)
    images = np.empty((n, size_px, size_px, 3), dtype=np.uint8)
    for row in range(n):
        images[row] = render(table[category_index], sample_instance(rng), size_px)
    return images
