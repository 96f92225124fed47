"""Generation job: images from a subject's averaged test fMRI with a Stage-B model, written for evaluation.

`generate_subject` is what the workflow's `generate` rule calls. It writes the three outputs of `GenerationOutputs`
(together, atomically):
    samples.npz   samples uint8 (N, K, H, W, 3), ground_truth uint8 (N, H, W, 3), stimulus_id str (N,),
                  sample_id int64 (N,) (the contract's sample_id of each averaged test row)
    samples/      <stimulus_id>_<k>.png, one file per generated image
    grid.png      one row per test stimulus: its ground truth, then its K samples, with labels
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mindvis.checkpoints.stage_b import load_stage_b
from mindvis.config.stage_b import SamplingConfig
from mindvis.data.contract import read_subject
from mindvis.data.pairs import averaged_test_rows
from mindvis.devices import resolve_device
from mindvis.figures import sample_grid
from mindvis.models.sampling import generate
from mindvis.io import atomic_outputs
from mindvis.paths import EVAL_FILES

log = logging.getLogger(__name__)

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class GenerationOutputs:
    """Where generate_subject writes (the generate rule's outputs, same names; contents in the module docstring)."""

    samples: Path
    images: Path
    grid: Path

    @classmethod
    def in_dir(cls, directory: str | os.PathLike[str]) -> GenerationOutputs:
        """The workflow's file names (mindvis.paths.EVAL_FILES) in `directory`."""
        return cls(**{f.name: Path(directory, EVAL_FILES[f.name]) for f in fields(cls)})


@dataclass(frozen=True)
class HeldOutItems:
    """What is generated from: one subject's averaged test rows.

    Attributes:
        fmri: float32 (N, V), the rows' fMRI (the encoder pads / cuts V to its input).
        stimulus_id: str (N,); sample_id: int64 (N,), the contract's sample_id of each row.
        ground_truth: uint8 (N, S, S, 3), the rows' stimuli at the model's image size S.
    """

    fmri: np.ndarray
    stimulus_id: np.ndarray
    sample_id: np.ndarray
    ground_truth: np.ndarray


def image_file_name(stimulus_id: str, sample: int) -> str:
    """`<stimulus_id>_<k>.png`, with characters unsafe in file names replaced by `_`."""
    return f"{_UNSAFE_FILENAME.sub('_', stimulus_id)}_{sample}.png"


def read_held_out_items(subject_dir: str | os.PathLike[str], image_px: int) -> HeldOutItems:
    """The averaged test rows of a preprocessed subject (contract directory), stimuli resized to image_px."""
    subject = read_subject(subject_dir, mmap=True)
    rows = averaged_test_rows(subject, Path(subject_dir))
    stimulus_ids = subject.samples["stimulus_id"].iloc[rows].to_numpy().astype(str)
    return HeldOutItems(fmri=np.asarray(subject.fmri[rows], dtype=np.float32), stimulus_id=stimulus_ids,
                        sample_id=subject.samples["sample_id"].iloc[rows].to_numpy(dtype=np.int64),
                        ground_truth=subject.stimuli.images_of(stimulus_ids, image_px))


def generate_subject(stage_b_path: str | os.PathLike[str], subject_dir: str | os.PathLike[str],
                     outputs: GenerationOutputs, sampling: SamplingConfig, seed: int,
                     device: str | torch.device = "auto", run: Any = None) -> dict[str, Any]:
    """Generate K images for each averaged test fMRI row of one subject and write them for evaluation.

    Args:
        stage_b_path: an own-format Stage-B directory or a MinD-Vis `finetuned.pth` (mindvis.checkpoints.load_stage_b).
        subject_dir: the preprocessed GOD / BOLD5000 subject (contract directory).
        outputs: where samples.npz, samples/ and grid.png go (see module docstring), atomically.
        sampling: scheduler, steps, K = n_samples and batch size (resolved config section).
        seed: images depend only on (seed, test row, sample index), not on batch size or device.
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda", ...
        run: optional mindvis.tracking.JobRun receiving the grid, counts and throughput.
    Returns:
        summary: n_items, n_samples, n_images, scheduler, steps, seconds, images_per_s, image_size, device.
    """
    device = resolve_device(str(device))
    model = load_stage_b(stage_b_path)
    size = model.architecture.image_size
    items = read_held_out_items(subject_dir, size)
    log.info("generating %d x %d images of %s on %s (%s, %d steps)", len(items.fmri), sampling.n_samples,
             subject_dir, device, sampling.scheduler, sampling.steps)
    started = time.perf_counter()
    samples = generate(model, items.fmri, n_samples=sampling.n_samples, scheduler=sampling.scheduler,
                       steps=sampling.steps, seed=seed, batch_size=sampling.batch_size, device=device)
    seconds = time.perf_counter() - started
    grid = sample_grid(items.ground_truth, samples, items.stimulus_id)
    write_generation(outputs, items, samples, grid)

    n_images = int(samples.shape[0] * samples.shape[1])
    summary = {"n_items": len(items.fmri), "n_samples": sampling.n_samples, "n_images": n_images,
               "scheduler": sampling.scheduler, "steps": sampling.steps, "image_size": size, "device": str(device),
               "seconds": round(seconds, 2), "images_per_s": round(n_images / seconds, 3)}
    if run is not None:
        _log_to_run(run, summary, stage_b_path, grid)
    log.info("wrote %d images to %s (%.2f images/s)", n_images, outputs.images, summary["images_per_s"])
    return summary


def write_generation(outputs: GenerationOutputs, items: HeldOutItems, samples: np.ndarray, grid: np.ndarray) -> None:
    """Write samples.npz, one PNG per sample (uint8 (N, K, S, S, 3)) and the grid together: all, or none."""
    with atomic_outputs(outputs.samples, outputs.images, outputs.grid) as (samples_npz, images_dir, grid_png):
        np.savez(samples_npz, samples=samples, ground_truth=items.ground_truth, stimulus_id=items.stimulus_id,
                 sample_id=items.sample_id)
        images_dir.mkdir()
        for stimulus_id, images in zip(items.stimulus_id, samples, strict=True):
            for k, image in enumerate(images):
                Image.fromarray(image).save(images_dir / image_file_name(stimulus_id, k))
        Image.fromarray(grid).save(grid_png)


def _log_to_run(run: Any, summary: dict[str, Any], stage_b_path: str | os.PathLike[str], grid: np.ndarray) -> None:
    """The sampling settings, the counts and throughput of `summary`, and the grid."""
    run.log_params({"generation.scheduler": summary["scheduler"], "generation.steps": summary["steps"],
                    "generation.n_samples": summary["n_samples"], "generation.device": summary["device"],
                    "generation.stage_b": str(stage_b_path)})
    run.log_metrics({k: summary[k] for k in ("n_items", "n_images", "seconds", "images_per_s")})
    run.log_image(grid, f"generation/{EVAL_FILES['grid']}")
