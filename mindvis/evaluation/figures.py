"""The evaluation job's figures: the comparison grid (MinD-Vis beside the baselines) and the metrics chart.

Grids are drawn by mindvis.figures.labelled_grid, the one grid layout of the run's figures.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mindvis.evaluation.inputs import GeneratedSamples  # noqa: E402
from mindvis.evaluation.metrics import HIGHER_IS_BETTER, METRIC_NAMES  # noqa: E402
from mindvis.evaluation.scoring import METHODS, MINDVIS, RETRIEVAL, RIDGE  # noqa: E402
from mindvis.figures import labelled_grid  # noqa: E402

METHOD_LABELS = {MINDVIS: "MinD-Vis", RIDGE: "ridge (pixels)", RETRIEVAL: "ridge retrieval", "chance": "chance"}
METHOD_COLOURS = {MINDVIS: "tab:blue", RIDGE: "tab:orange", RETRIEVAL: "tab:green"}
GRID_TILE_PX = 96


def comparison_grid(generated: GeneratedSamples, baselines: dict[str, np.ndarray]) -> np.ndarray:
    """uint8 image: one row per stimulus: ground truth, the K samples, then each baseline's reconstruction.

    Args:
        baselines: {method: uint8 (N, K_method, H, W, 3)}; the first reconstruction of each is shown.
    """
    k = generated.samples.shape[1]
    tiles = np.concatenate([generated.ground_truth[:, None], generated.samples,
                            *(recon[:, :1] for recon in baselines.values())], axis=1)
    columns = ["ground truth", *(f"MinD-Vis {s + 1}" for s in range(k)),
               *(METHOD_LABELS[name] for name in baselines)]
    return labelled_grid(tiles, list(generated.stimulus_id), columns, GRID_TILE_PX)


def metrics_chart(document: dict[str, Any], title: str = "") -> plt.Figure:
    """One panel per computed metric of a metrics.json document: a bar per method (MinD-Vis, baselines) and chance
    as a dashed line. The caller closes the figure."""
    methods = [m for m in METHODS if m in document]
    names = [name for name in METRIC_NAMES if name in document[MINDVIS]]
    n_cols = min(4, max(1, len(names)))
    n_rows = -(-len(names) // n_cols)
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 2.6 * n_rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):  # more panels than metrics
        values = [document[m].get(name, np.nan) for m in methods]
        ax.bar(range(len(methods)), values, color=[METHOD_COLOURS[m] for m in methods])
        chance = document["chance"].get(name)
        if chance is not None:
            ax.axhline(chance, color="0.3", linestyle="--", linewidth=1, label="chance")
        ax.set_xticks(range(len(methods)), [METHOD_LABELS[m] for m in methods], rotation=20, fontsize=7)
        ax.set_title(f"{name} ({'higher' if HIGHER_IS_BETTER[name] else 'lower'} is better)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    figure.suptitle(title or "reconstruction metrics", fontsize=10)
    figure.tight_layout()
    return figure
