"""Where the workflow's results live below `results_root`: the one owner of every output path and file name.

The rules (via mindvis.plan) call these with the Snakemake wildcards `{dataset}` and `{subject}` left in (the
defaults); jobs receive the resulting paths. Library code that writes or reads one of these files takes its path as
an argument and uses the names below, so a name changes here and nowhere else. Light to import (no torch), as the
Snakefile imports it at every parse.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
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

# The trained models' folders below results_root (each a directory format: mindvis.checkpoints own format,
# the label2img layout, the own Stage-B format) and the file of each that the rules name as its output.
STAGE_A_PRETRAIN_DIR = ("stage_a", "pretrain")
STAGE_A_FINETUNE_DIR = ("stage_a", "finetune")
STAGE_B_DIR = "stage_b"
STAGE_B_INDEX = "stage_b.json"  # mindvis.checkpoints.stage_b's manifest: written last, so it marks a whole model
DEMO_LDM_DIR = "ldm_pretrain"
DEMO_CLASSIFIER_DIR = "demo_classifier"
LOG_DIR = "logs"
RESUME_DIR = ".resume"  # training state outside the declared outputs (mindvis.training.runner)
LAUNCH_DIR = ".launch"  # multi-node srun call specs (mindvis.training.launch)

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


def subject_dirs_by_dataset(contract_files: Iterable[Root]) -> dict[str, list[str]]:
    """The preprocessed subject directories holding `contract_files` (paths made by `preprocessed`), grouped by
    dataset: {dataset: sorted directories}, datasets sorted. The inverse of `preprocessed` for a job's inputs."""
    by_dataset: dict[str, set[str]] = {}
    for file in contract_files:
        folder = Path(file).parent
        by_dataset.setdefault(folder.parent.name, set()).add(str(folder))
    return {dataset: sorted(folders) for dataset, folders in sorted(by_dataset.items())}


def stage_a_pretrain_file(results_root: Root, name: str) -> str:
    """A file of the Stage A1 (pretrained masked brain model) output, e.g. "model.safetensors"."""
    return str(Path(results_root, *STAGE_A_PRETRAIN_DIR, name))


def stage_a_finetune_file(results_root: Root, name: str, dataset: str = "{dataset}", subject: str = "{subject}"
                          ) -> str:
    """A file of the Stage A2 (finetuned encoder) output of one subject, e.g. "model.safetensors"."""
    return str(Path(results_root, *STAGE_A_FINETUNE_DIR, dataset, subject, name))


def stage_b_file(results_root: Root, dataset: str = "{dataset}", subject: str = "{subject}") -> str:
    """The manifest of one subject's fine-tuned Stage-B model (its directory is the manifest's parent)."""
    return str(Path(results_root, STAGE_B_DIR, dataset, subject, STAGE_B_INDEX))


def demo_ldm_dir(results_root: Root) -> Path:
    """Where ldm_pretrain writes the demo LDM (label2img layout + class_index.json + recipe.json)."""
    return Path(results_root, DEMO_LDM_DIR)


def demo_classifier_dir(results_root: Root) -> Path:
    """Where demo_classifier writes the demo classifier (own format)."""
    return Path(results_root, DEMO_CLASSIFIER_DIR)


def log_file(results_root: Root, rule: str, *wildcards: str) -> str:
    """A job's log: `logs/<rule>.log`, or `logs/<rule>/<wildcard>/.../<last wildcard>.log` for per-subject rules."""
    if not wildcards:
        return str(Path(results_root, LOG_DIR, f"{rule}.log"))
    return str(Path(results_root, LOG_DIR, rule, *wildcards[:-1], f"{wildcards[-1]}.log"))


def resume_dir(results_root: Root, rule: str, *parts: str) -> str:
    """Where a training rule keeps its resume state: outside the declared outputs, so a failed job's rerun resumes."""
    return str(Path(results_root, RESUME_DIR, rule, *parts))


def launch_dir(results_root: Root) -> Path:
    """Where multi-node training writes its srun call specs: under results_root, which every node must share."""
    return Path(results_root, LAUNCH_DIR)


def report_file(results_root: Root, name: str) -> str:
    """One report_summary output (a key of REPORT_FILES)."""
    return str(Path(results_root, REPORT_DIR, REPORT_FILES[name]))
