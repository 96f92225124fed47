"""Where the workflow's results live below `results_root`: the one owner of every output path and file name.

The rules (via mindvis.plan) call these with the Snakemake wildcards `{dataset}` and `{subject}` left in (the
defaults); jobs receive the resulting paths. Library code that writes or reads one of these files takes its path as
an argument and uses the names below, so a name changes here and nowhere else. Light to import (no torch), as the
Snakefile imports it at every parse.
"""

from __future__ import annotations

import os
from pathlib import Path

from mindvis.data.contract import FMRI_FILE, SAMPLES_FILE, STIMULI_FILE, VOXELS_FILE, subject_dir

# The preprocessed-data contract (mindvis.data.contract), named by file stem as the rules name them.
CONTRACT_FILES: dict[str, str] = {Path(name).stem: name for name in (SAMPLES_FILE, FMRI_FILE, VOXELS_FILE,
                                                                     STIMULI_FILE)}

# What generate, ceilings and evaluate write into <results_root>/eval/<dataset>/<subject>/.
EVAL_FILES: dict[str, str] = {
    "samples": "samples.npz",         # generate: generated images, ground truth, ids
    "images": "samples",              # generate: one PNG per generated image
    "grid": "grid.png",               # generate: ground truth beside the samples
    "ceilings": "ceilings.npz",       # ceilings: the per-stage images
    "metrics": "metrics.json",        # evaluate: the public metrics document
    "per_image": "per_image.csv",     # evaluate: per-image scores
    "comparison": "comparison.png",   # evaluate: MinD-Vis beside the baselines
    "chart": "metrics_chart.png",     # evaluate: metrics against chance
}

# What report_summary writes into <results_root>/report/.
REPORT_DIR = "report"
REPORT_FILES: dict[str, str] = {"table": "metrics_table.html", "csv": "metrics_table.csv",
                                "curves": "training_curves.png"}

Root = str | os.PathLike[str]


def preprocessed(results_root: Root, *names: str, dataset: str = "{dataset}", subject: str = "{subject}",
                 ) -> dict[str, str]:
    """The contract files `names` (keys of CONTRACT_FILES) of one preprocessed subject: {name: path}."""
    folder = subject_dir(results_root, dataset, subject)
    return {name: str(folder / CONTRACT_FILES[name]) for name in names}


def eval_dir(results_root: Root, dataset: str = "{dataset}", subject: str = "{subject}") -> Path:
    """`<results_root>/eval/<dataset>/<subject>`."""
    return Path(results_root, "eval", dataset, subject)


def eval_file(results_root: Root, name: str, dataset: str = "{dataset}", subject: str = "{subject}") -> str:
    """One evaluation output (a key of EVAL_FILES) of one subject."""
    return str(eval_dir(results_root, dataset, subject) / EVAL_FILES[name])


def stage_a_finetune_file(results_root: Root, name: str, dataset: str = "{dataset}", subject: str = "{subject}"
                          ) -> str:
    """A file of the Stage A2 (finetuned encoder) output of one subject, e.g. "model.safetensors"."""
    return str(Path(results_root, "stage_a", "finetune", dataset, subject, name))


def report_file(results_root: Root, name: str) -> str:
    """One report_summary output (a key of REPORT_FILES)."""
    return str(Path(results_root, REPORT_DIR, REPORT_FILES[name]))
