"""Generation job: images from a subject's averaged test fMRI with a Stage-B model, written for evaluation.

`generate_subject` is what the workflow's `generate` rule calls. Outputs (written together, atomically):
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
from mindvis.io import atomic_directory
from mindvis.paths import EVAL_FILES

log = logging.getLogger(__name__)

SAMPLES_FILE = EVAL_FILES["samples"]
SAMPLES_DIR = EVAL_FILES["images"]
GRID_FILE = EVAL_FILES["grid"]
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def image_file_name(stimulus_id: str, sample: int) -> str:
    """`<stimulus_id>_<k>.png`, with characters unsafe in file names replaced by `_`."""
    return f"{_UNSAFE_FILENAME.sub('_', stimulus_id)}_{sample}.png"


def generate_subject(stage_b_path: str | os.PathLike[str], subject_dir: str | os.PathLike[str],
                     out_dir: str | os.PathLike[str], sampling: SamplingConfig, seed: int,
                     device: str | torch.device = "auto", run: Any = None) -> dict[str, Any]:
    """Generate K images for each averaged test fMRI row of one subject and write them for evaluation.

    Args:
        stage_b_path: an own-format Stage-B directory or a MinD-Vis `finetuned.pth` (mindvis.checkpoints.load_stage_b).
        subject_dir: the preprocessed GOD / BOLD5000 subject (contract directory).
        out_dir: receives samples.npz, samples/ and grid.png (see module docstring), atomically.
        sampling: scheduler, steps, K = n_samples and batch size (resolved config section).
        seed: images depend only on (seed, test row, sample index), not on batch size or device.
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda", ...
        run: optional mindvis.tracking.JobRun receiving the grid, counts and throughput.
    Returns:
        summary: n_items, n_samples, n_images, scheduler, steps, seconds, images_per_s, image_size, device.
    """
    subject_dir, out_dir = Path(subject_dir), Path(out_dir)
    device = resolve_device(str(device))
    scheduler, steps = sampling.scheduler, sampling.steps
    n_samples = sampling.n_samples
    model = load_stage_b(stage_b_path)
    subject = read_subject(subject_dir, mmap=True)
    rows = averaged_test_rows(subject, subject_dir)
    stimulus_ids = subject.samples["stimulus_id"].iloc[rows].to_numpy().astype(str)
    sample_ids = subject.samples["sample_id"].iloc[rows].to_numpy(dtype=np.int64)
    fmri = np.asarray(subject.fmri[rows], dtype=np.float32)  # (N, V); the encoder pads / cuts V to its input
    size = model.architecture.image_size
    ground_truth = subject.stimuli.images_of(stimulus_ids, size)
    log.info("generating %d x %d images of %s on %s (%s, %d steps)", len(rows), n_samples, subject_dir, device,
             scheduler, steps)

    started = time.perf_counter()
    samples = generate(model, fmri, n_samples=n_samples, scheduler=scheduler, steps=steps, seed=seed,
                       batch_size=sampling.batch_size, device=device)
    seconds = time.perf_counter() - started
    grid = sample_grid(ground_truth, samples, stimulus_ids)

    with atomic_directory(out_dir) as tmp:
        np.savez(tmp / SAMPLES_FILE, samples=samples, ground_truth=ground_truth, stimulus_id=stimulus_ids,
                 sample_id=sample_ids)
        (tmp / SAMPLES_DIR).mkdir()
        for stimulus_id, images in zip(stimulus_ids, samples, strict=True):
            for k, image in enumerate(images):
                Image.fromarray(image).save(tmp / SAMPLES_DIR / image_file_name(stimulus_id, k))
        Image.fromarray(grid).save(tmp / GRID_FILE)

    summary = {"n_items": len(rows), "n_samples": n_samples, "n_images": int(samples.shape[0] * samples.shape[1]),
               "scheduler": scheduler, "steps": steps, "image_size": size, "device": str(device),
               "seconds": round(seconds, 2), "images_per_s": round(samples.shape[0] * samples.shape[1] / seconds, 3)}
    if run is not None:
        run.log_params({"generation.scheduler": scheduler, "generation.steps": steps,
                        "generation.n_samples": n_samples, "generation.device": str(device),
                        "generation.stage_b": str(stage_b_path)})
        run.log_metrics({k: summary[k] for k in ("n_items", "n_images", "seconds", "images_per_s")})
        run.log_image(grid, f"generation/{GRID_FILE}")
    log.info("wrote %d images to %s (%.2f images/s)", summary["n_images"], out_dir, summary["images_per_s"])
    return summary
