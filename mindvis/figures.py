"""Labelled image grids (uint8 arrays) for the run's figures: samples beside their ground truth, class samples.

Used by Stage B validation, the demo LDM's training grids and evaluation; only numpy and Pillow, so any layer may
import it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GRID_TILE_PX = 128
LABEL_CHARS = 28


def _font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size_px)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _tile(image: np.ndarray, tile_px: int) -> Image.Image:
    picture = Image.fromarray(image)
    if picture.size == (tile_px, tile_px):
        return picture
    upscaling = tile_px > picture.size[0]
    return picture.resize((tile_px, tile_px), Image.Resampling.NEAREST if upscaling else Image.Resampling.LANCZOS)


def labelled_grid(tiles: np.ndarray, row_labels: Sequence[str], column_labels: Sequence[str],
                  tile_px: int = GRID_TILE_PX, gap_px: int = 4) -> np.ndarray:
    """An image grid with a label left of each row and above each column.

    Args:
        tiles: uint8 (R, C, H, W, 3); each tile is shown at tile_px x tile_px (nearest-neighbour when enlarged, so
            small demo images stay sharp; Lanczos when reduced).
        row_labels: R labels (cut to LABEL_CHARS characters); column_labels: C labels.
    Returns:
        uint8 (height, width, 3) RGB.
    """
    n_rows, n_cols = tiles.shape[:2]
    font = _font(max(10, tile_px // 10))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows = [label[:LABEL_CHARS] for label in row_labels]
    label_w = max([int(measure.textlength(text, font=font)) for text in rows] + [0]) + 2 * gap_px
    header_h = int(font.size if hasattr(font, "size") else 11) + 2 * gap_px
    width = label_w + n_cols * (tile_px + gap_px)
    height = header_h + n_rows * (tile_px + gap_px)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for col, text in enumerate(column_labels):
        draw.text((label_w + col * (tile_px + gap_px) + tile_px // 2, header_h // 2), text, fill="black",
                  font=font, anchor="mm")
    for row, text in enumerate(rows):
        top = header_h + row * (tile_px + gap_px)
        draw.text((gap_px, top + tile_px // 2), text, fill="black", font=font, anchor="lm")
        for col in range(n_cols):
            canvas.paste(_tile(tiles[row, col], tile_px), (label_w + col * (tile_px + gap_px), top))
    return np.asarray(canvas)


def sample_grid(ground_truth: np.ndarray, samples: np.ndarray, row_labels: Sequence[str],
                tile_px: int = GRID_TILE_PX) -> np.ndarray:
    """Grid of ground truth (N, H, W, 3) beside its samples (N, K, H, W, 3): N rows, 1 + K columns."""
    tiles = np.concatenate([ground_truth[:, None], samples], axis=1)
    columns = ["ground truth"] + [f"sample {k + 1}" for k in range(samples.shape[1])]
    return labelled_grid(tiles, row_labels, columns, tile_px)
