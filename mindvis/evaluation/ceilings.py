"""Per-stage ceilings: where between the stimulus and the reconstruction quality is lost.

The same test images are scored with the n-way top-1 and PixCorr protocols of the reconstructions, at four stages
of the chain:

    ground_truth       the test images themselves (n-way top-1 is 1 by construction: the true class is the
                       classifier's top-1 on them; the row anchors the others)
    first_stage        decode(encode(ground truth)) through the LDM's autoencoder, quantised as generation decodes:
                       what the first stage can keep of an image
    class_conditioned  samples of the pretrained class-conditioned LDM told each test image's true class (same
                       sampler, steps, K and seeds as the reconstructions): what the generator draws when the
                       category is given exactly; it cannot know position or background, so its PixCorr is low by
                       design. Only test images whose category is one of the LDM's classes take part
                       (`n_images`): every demo category; for the real label2img, GOD / BOLD5000 images of an
                       ImageNet-1k class, given the LDM's class index file.
    mindvis            the fMRI-conditioned reconstructions

A user reads them top-down: a large drop from ground_truth to first_stage blames the autoencoder, from first_stage
to class_conditioned the generator, from class_conditioned to mindvis the fMRI conditioning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import VQModel

from mindvis.checkpoints.label2img import load_pretrained_ldm
from mindvis.checkpoints.release_ldm import PretrainedLdm
from mindvis.checkpoints.stage_b import load_stage_b
from mindvis.config.stage_b import SamplingConfig
from mindvis.data.contract import read_subject
from mindvis.errors import InputDataError
from mindvis.devices import resolve_device
from mindvis.models.sampling import LatentImagePipeline, to_model_range, to_uint8
from mindvis.io import atomic_path

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("ground_truth", "first_stage", "class_conditioned", "mindvis")
STAGE_LABELS = {"ground_truth": "(a) ground truth", "first_stage": "(b) LDM first stage: decode(encode(x))",
                "class_conditioned": "(c) class-conditioned LDM, true class", "mindvis": "(d) MinD-Vis"}
# A file name `<wnid>_<image number>.JPEG`, as ImageNet (and BOLD5000's ImageNet images) name their images.
_IMAGENET_FILE = re.compile(r"^(n\d{8})_\d+\.JPE?G$", re.IGNORECASE)


@torch.no_grad()
def first_stage_reconstructions(vqvae: VQModel, images: np.ndarray, batch_size: int = 16,
                                device: str | torch.device = "cpu") -> np.ndarray:
    """decode(encode(images)) through a VQ first stage, quantising before decoding as generation does.

    Args:
        vqvae: the LDM's first stage (diffusers VQModel; CompVis semantics: encode does not quantise, decode does).
        images: uint8 (N, H, W, 3).
    Returns:
        uint8 (N, H, W, 3).
    """
    vqvae = vqvae.to(device).eval()
    chunks = [to_uint8(vqvae.decode(vqvae.encode(to_model_range(images[start:start + batch_size]).to(device))
                                    .latents).sample)
              for start in range(0, len(images), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros_like(images)


def read_class_index(path: str | os.PathLike[str]) -> dict[str, int]:
    """wnid -> class index of an `imagenet_class_index.json`-style file: {"<index>": [wnid, (alias wnids,) name]}.

    Every wnid of an entry maps to its index (the GOD release lists some classes under two wnids).

    Raises:
        InputDataError: unreadable, or not of that form.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text())
        table = {wnid: int(index) for index, entry in document.items() for wnid in entry[:-1]}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise InputDataError(f"cannot read the LDM class index ({type(exc).__name__}: {exc})", path=path,
                             expected='JSON {"<class index>": [wnid, ..., name]} (imagenet_class_index.json)',
                             hint="point evaluation.ldm_class_index at the class list of the pretrained LDM") from exc
    if not table or not all(re.fullmatch(r"n\d{8}", wnid) for wnid in table):
        raise InputDataError("the LDM class index names no wnids", path=path, value=list(table)[:3],
                             expected="WordNet ids like n01440764")
    return table


def stimulus_wnid(stimulus_id: str, wnid: str | None = None) -> str | None:
    """The WordNet id of a test stimulus: its `wnid` column (GOD) or its ImageNet file name (BOLD5000), else None."""
    if wnid:
        return str(wnid)
    match = _IMAGENET_FILE.match(str(stimulus_id))
    return match.group(1) if match else None


def ldm_classes(wnids: Sequence[str | None], class_index: dict[str, int], n_classes: int) -> np.ndarray:
    """(N,) int64 LDM class of each test stimulus, -1 where its category is none of the LDM's classes."""
    classes = [class_index.get(w, -1) if w is not None else -1 for w in wnids]
    return np.array([c if 0 <= c < n_classes else -1 for c in classes], dtype=np.int64)


@torch.no_grad()
def class_conditioned_samples(ldm: PretrainedLdm, classes: np.ndarray, items: np.ndarray, sampling: SamplingConfig,
                              seed: int, device: str | torch.device = "cpu") -> np.ndarray:
    """K samples of each given class from the pretrained class-conditioned LDM (its class token as the context).

    Args:
        ldm: a label2img LDM with its class embedding.
        classes: (M,) LDM class indices.
        items: (M,) the test-row index of each class: its starting noise is that of the reconstructions'
            (`initial_latent(seed, item, k)`), so the two differ only in their conditioning.
        sampling: scheduler, steps, K and batch size of the reconstructions.
    Returns:
        uint8 (M, K, H, W, 3).
    """
    model = ldm.class_conditioned().to(device).eval()
    pipeline = LatentImagePipeline.with_sampler(model, ldm.vqvae.eval(), sampling.scheduler)
    return pipeline(torch.as_tensor(classes), items, sampling.n_samples, sampling.steps, seed,
                    sampling.batch_size)


# ------------------------------------------------------------------------------------------ the ceilings job

def subject_wnids(subject_dir: str | os.PathLike[str], stimulus_ids: np.ndarray) -> list[str | None]:
    """The wnid of each test stimulus: samples.parquet's `wnid` column (GOD) where it has one, else the ImageNet file
    name (BOLD5000's ImageNet images); None for stimuli of no known category (COCO, scenes)."""
    samples = read_subject(subject_dir, mmap=True).samples
    by_stimulus: dict[str, str] = {}
    if "wnid" in samples.columns:  # null for GOD stimuli without a category
        by_stimulus = {str(s): w for s, w in zip(samples["stimulus_id"], samples["wnid"], strict=True)
                       if isinstance(w, str)}
    return [stimulus_wnid(s, by_stimulus.get(str(s))) for s in stimulus_ids]


def write_ceiling_images(samples_npz: str | os.PathLike[str], subject_dir: str | os.PathLike[str],
                         stage_b_path: str | os.PathLike[str], pretrained_ldm: str | os.PathLike[str] | None,
                         class_index: str | os.PathLike[str] | None, sampling: SamplingConfig, seed: int,
                         out_path: str | os.PathLike[str], device: str = "auto") -> dict[str, Any]:
    """Images of the first_stage and class_conditioned stages for one subject's test images, for evaluate to score.

    Args:
        samples_npz: the generate rule's samples.npz (its ground truth is what the stages start from).
        subject_dir: the preprocessed subject (the stimuli's wnids).
        stage_b_path: the Stage B model generation used; its first stage (the pretrained LDM's, frozen in Stage B)
            is read from it only when there is no pretrained LDM (the `stage_b.finetuned` shortcut).
        pretrained_ldm: the label2img LDM Stage B started from; None = no class-conditioned stage.
        class_index: LDM class -> wnid file (imagenet_class_index.json form; mindvis.plan.ldm_class_index picks it);
            None = no class-conditioned stage.
        sampling, seed: the reconstructions' sampler, steps, K and seed (class-conditioned samples share their noise).
        out_path: ceilings.npz: `first_stage` uint8 (N, 1, H, W, 3); `class_conditioned` uint8 (M, K, H, W, 3) with
            `class_rows` int64 (M,) (their test rows); `skipped` JSON {stage: reason}.
    Returns:
        summary: n_test, n_class_conditioned, skipped, seconds.
    """
    started = time.perf_counter()
    device = resolve_device(str(device))
    generated = np.load(samples_npz)
    ground_truth, stimulus_ids = generated["ground_truth"], generated["stimulus_id"].astype(str)
    size = ground_truth.shape[1]
    # Stage B keeps the pretrained LDM's first stage frozen: read it from the LDM when that is loaded anyway (one
    # checkpoint read instead of two, each ~2 GB on real data), from the Stage B model otherwise.
    ldm = load_pretrained_ldm(pretrained_ldm, image_size=size) if pretrained_ldm is not None else None
    vqvae = ldm.vqvae if ldm is not None else load_stage_b(stage_b_path).vqvae
    first_stage = first_stage_reconstructions(vqvae, ground_truth, device=device)[:, None]
    rows, conditioned, skipped = _class_conditioned_stage(ldm, class_index, subject_dir, stimulus_ids, size,
                                                          sampling, seed, device)
    with atomic_path(out_path) as tmp:
        np.savez(tmp, first_stage=first_stage, class_conditioned=conditioned, class_rows=rows,
                 skipped=json.dumps(skipped))
    summary = {"n_test": len(ground_truth), "n_class_conditioned": len(rows), "skipped": skipped,
               "seconds": round(time.perf_counter() - started, 2)}
    log.info("ceiling images written to %s: %s", out_path, summary)
    return summary


def _class_conditioned_stage(ldm: PretrainedLdm | None, class_index: str | os.PathLike[str] | None,
                             subject_dir: str | os.PathLike[str], stimulus_ids: np.ndarray, size: int,
                             sampling: SamplingConfig, seed: int, device: torch.device
                             ) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """write_ceiling_images' class_conditioned stage: (test rows (M,) int64, their samples uint8 (M, K, size, size,
    3), {stage: reason skipped}); M = 0, with the reason, without an LDM, a class index or a test image of its classes.
    """
    rows = np.zeros(0, dtype=np.int64)
    none = np.zeros((0, sampling.n_samples, size, size, 3), dtype=np.uint8)
    if ldm is None:
        return rows, none, {"class_conditioned": "no pretrained LDM (stage_b.finetuned without "
                                                 "stage_b.pretrained_ldm)"}
    if class_index is None:
        return rows, none, {"class_conditioned": "no LDM class index: set evaluation.ldm_class_index to the LDM's "
                                                 "imagenet_class_index.json"}
    n_classes = 0 if ldm.class_embedding is None else len(ldm.class_embedding)
    classes = ldm_classes(subject_wnids(subject_dir, stimulus_ids), read_class_index(class_index), n_classes)
    rows = np.flatnonzero(classes >= 0)
    if len(rows) == 0:
        return rows, none, {"class_conditioned": "no test image's category is one of the LDM's classes"}
    log.info("class-conditioned samples of %d / %d test images (%s, %d steps)", len(rows), len(classes),
             sampling.scheduler, sampling.steps)
    return rows, class_conditioned_samples(ldm, classes[rows], rows, sampling, seed, device), {}


def read_ceiling_images(path: str | os.PathLike[str], n_test: int
                        ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """ceilings.npz -> ({stage: (test rows (M,), images (M, K, H, W, 3))}, {stage: reason skipped}).

    Raises:
        InputDataError: not a ceilings.npz of `n_test` test images.
    """
    path = Path(path)
    try:
        with np.load(path) as data:
            first_stage, conditioned = data["first_stage"], data["class_conditioned"]
            rows, skipped = data["class_rows"].astype(np.int64), json.loads(str(data["skipped"]))
    except (OSError, ValueError, KeyError) as exc:
        raise InputDataError(f"cannot read the ceiling images ({type(exc).__name__}: {exc})", path=path,
                             expected="ceilings.npz of the ceilings rule", hint="rerun the ceilings rule") from exc
    if len(first_stage) != n_test or len(conditioned) != len(rows) or (len(rows) and rows.max() >= n_test):
        raise InputDataError("ceiling images do not match the generated samples", path=path,
                             value=f"{len(first_stage)} first-stage images for {n_test} test images",
                             expected="the ceilings of the same samples.npz", hint="rerun the ceilings rule")
    stages = {"first_stage": (np.arange(n_test), first_stage)}
    if len(rows):
        stages["class_conditioned"] = (rows, conditioned)
    return stages, skipped
