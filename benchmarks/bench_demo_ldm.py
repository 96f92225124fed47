"""How well the demo LDM draws the category it is told to: prints one JSON object.

For every demo category the LDM (label2img layout, as Stage B reads it) draws K class-conditioned samples from fresh
noise; the demo classifier names each sample. Reported: top-1 accuracy among all categories (chance 1 / n), for the
train and the test categories separately (the LDM trained on fresh images of both; the GOD test categories are the
ones Stage B never sees), the same accuracy of the classifier on fresh *real* images (the ceiling this measure can
reach), and the samples' latent spread relative to the real images' latents (near 1 when the sampler is healthy;
well above 1 was the symptom of the old noise schedule, see README "What the demo shows").

Usage (after `make demo` or with the shipped weights):
    .venv/bin/python benchmarks/bench_demo_ldm.py [--ldm demo/pretrained/ldm] [--classifier demo/pretrained/classifier]
        [--config config.yaml] [--samples 2] [--steps 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from mindvis.checkpoints.label2img import load_pretrained_ldm
from mindvis.config import load
from mindvis.demo.images import category_table
from mindvis.models.sampling import LatentImagePipeline
from mindvis.evaluation.demo_classifier import load_demo_classifier
from mindvis.training.ldm_pretrain import category_images, encode_images

FRESH_SEED = 4242  # a random stream neither the LDM's nor the classifier's training used


def accuracy_by_split(predicted: np.ndarray, truth: np.ndarray, splits: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy overall and per category split ("train" / "test"); arrays of equal length."""
    hits = predicted == truth
    return {"all": round(float(hits.mean()), 4),
            **{split: round(float(hits[splits == split].mean()), 4) for split in ("train", "test")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ldm", default="demo/pretrained/ldm")
    parser.add_argument("--classifier", default="demo/pretrained/classifier")
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--samples", type=int, default=2, help="samples per category")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load(args.config)
    pretrained = load_pretrained_ldm(args.ldm)
    ldm = pretrained.class_conditioned().eval()
    classifier = load_demo_classifier(args.classifier).classifier
    categories = category_table(cfg.demo_data)
    classes = np.arange(len(categories))
    splits = np.array([c.split for c in categories])
    size = pretrained.architecture.image_size

    started = time.perf_counter()
    pipeline = LatentImagePipeline.with_sampler(ldm, pretrained.vqvae.eval(), "ddim")
    samples = pipeline(torch.from_numpy(classes), classes, args.samples, args.steps, FRESH_SEED,
                       batch_size=65)  # (n, K, S, S, 3)
    seconds = time.perf_counter() - started
    flat = samples.reshape(-1, size, size, 3)
    truth = np.repeat(classes, args.samples)
    real, real_labels = category_images(cfg.demo_data, args.samples, size, FRESH_SEED)
    spread = float(encode_images(pretrained.vqvae, flat).std() / encode_images(pretrained.vqvae, real).std())
    print(json.dumps({
        "ldm": args.ldm, "categories": len(categories), "samples_per_category": args.samples, "ddim_steps": args.steps,
        "chance": round(1 / len(categories), 4),
        "sample_accuracy": accuracy_by_split(classifier.logits(flat).argmax(1), truth, np.repeat(splits, args.samples)),
        "real_image_accuracy": accuracy_by_split(classifier.logits(real).argmax(1), real_labels,
                                                 splits[real_labels]),
        "latent_spread_vs_real": round(spread, 3),
        "sampling_seconds": round(seconds, 1), "machine": f"{platform.machine()}, {args.threads} threads, CPU",
    }, indent=1))


if __name__ == "__main__":
    main()
