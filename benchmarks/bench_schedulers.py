"""Sampler comparison: DPM-Solver++ at few steps against PLMS at 250 (the reference) on the same model and fMRI.
Prints one JSON object.

Both samplers start every image from the same initial noise (seeded by seed, test item and sample index, see
mindvis.models.sampling), so their images are paired. Reported:
- per sampler: steps, seconds, images_per_s (after a 2-step warm-up run), and its metrics: pixcorr and ssim (the
  NSD papers' definitions) and pairwise identification (MSE / PCC / SSIM) against the ground truth when a subject
  is given, plus n-way top-1 when a classifier is given;
- paired: per metric the mean over test items of (dpmpp - plms) (each item's value averaged over its samples), its
  standard error (sd of the per-item differences / sqrt(items)) and the number of items: a difference within about
  two standard errors of 0 is not a measurable loss;
- agreement: pixcorr and ssim between each DPM-Solver++ image and the PLMS image from the same noise (how closely
  the fast sampler reproduces the reference sampler's images, with or without ground truth);
- speedup: PLMS seconds / DPM-Solver++ seconds.

Usage:
    # mechanics and speed only: a tiny randomly initialised demo-size model, random fMRI, no ground truth
    .venv/bin/python benchmarks/bench_schedulers.py
    # a trained Stage-B model on a subject's averaged test fMRI, with the demo classifier for n-way top-1
    .venv/bin/python benchmarks/bench_schedulers.py --stage-b results/stage_b/GOD/sbj_3 \\
        --subject results/preprocessed/GOD/sbj_3 --classifier demo/pretrained/classifier --items 30 --samples 2
    # real data: a released finetuned.pth, a torchvision classifier state dict of --classifier-arch, on a GPU
    .venv/bin/python benchmarks/bench_schedulers.py --stage-b finetuned.pth --subject results/preprocessed/GOD/sbj_3 \\
        --classifier vit_h_14_swag.pth --classifier-arch vit_h_14 --device cuda --batch-size 25

Options: --stage-b-config (the label2img config.yaml beside a finetuned.pth), --dpm-steps (25), --plms-steps (250),
--items (test items, default all; 8 random fMRI rows without a subject), --samples (images per item, 1), --seed,
--pixel-px (425 as the NSD papers), --n-way (50, lowered to the classifier's classes), --threads (CPU threads).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mindvis.config.evaluation import EvaluationConfig
from mindvis.evaluation.inputs import classifier_config, effective_n_way, load_classifier
from mindvis.evaluation.metrics import pixcorr, ssim_gray
from mindvis.evaluation.scoring import per_image_table
from mindvis.devices import resolve_device
from mindvis.evaluation.networks import load_networks
from mindvis.models.sampling import generate

SAMPLERS = ("dpmpp", "plms")
RANDOM_FMRI_ITEMS = 8
RANDOM_MODEL_VOXELS = 1024


def tiny_random_model():
    """The demo preset's DC-LDM sizes (64 px, 3x16x16 latents) with random weights."""
    from mindvis.config import resolve
    from mindvis.models.ldm import assemble_fmri_ldm, build_unet, build_vqvae
    from mindvis.config.stage_a import STAGE_A_PRESETS
    from mindvis.models.mbm import FmriEncoder, MbmArchitecture

    cfg = resolve({"preset": "demo"})
    arch = cfg.stage_b.architecture
    torch.manual_seed(0)
    encoder = FmriEncoder(MbmArchitecture(num_voxels=RANDOM_MODEL_VOXELS, **STAGE_A_PRESETS["demo"]["model"]))
    return assemble_fmri_ldm(arch, build_unet(arch), build_vqvae(arch), encoder)


def test_items(model, subject: Path | None, items: int | None, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(fMRI (N, V) float32, ground truth uint8 (N, S, S, 3) or None): the subject's averaged test rows, else
    random fMRI of the encoder's input length."""
    if subject is None:
        n = items or RANDOM_FMRI_ITEMS
        fmri = np.random.default_rng(seed).standard_normal((n, model.conditioner.encoder.arch.num_voxels))
        return fmri.astype(np.float32), None
    from mindvis.data.contract import read_subject
    from mindvis.data.pairs import averaged_test_rows

    data = read_subject(subject, mmap=True)
    rows = averaged_test_rows(data, subject)[:items]
    stimulus_ids = data.samples["stimulus_id"].iloc[rows].to_numpy()
    return np.asarray(data.fmri[rows], dtype=np.float32), data.stimuli.images_of(stimulus_ids,
                                                                                model.architecture.image_size)


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean and standard error of the per-item difference a - b (items on axis 0)."""
    difference = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    se = float(difference.std(ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else float("nan")
    return {"mean": float(difference.mean()), "se": se, "n_items": int(len(difference))}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage-b", type=Path, help="own-format Stage-B directory or a MinD-Vis finetuned.pth")
    parser.add_argument("--stage-b-config", type=Path, help="the LDM config.yaml a finetuned.pth needs")
    parser.add_argument("--subject", type=Path, help="preprocessed GOD / BOLD5000 subject (test fMRI, ground truth)")
    parser.add_argument("--classifier", type=Path, help="demo_classifier directory or torchvision state dict")
    parser.add_argument("--classifier-arch", default="vit_h_14")
    parser.add_argument("--items", type=int)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--dpm-steps", type=int, default=25)
    parser.add_argument("--plms-steps", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--pixel-px", type=int, default=425)
    parser.add_argument("--n-way", type=int, default=50)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.stage_b is not None:
        from mindvis.checkpoints import load_stage_b

        model = load_stage_b(args.stage_b, config_yaml=args.stage_b_config)
    else:
        model = tiny_random_model()
    fmri, ground_truth = test_items(model, args.subject, args.items, args.seed)
    cfg = EvaluationConfig(n_way=args.n_way, pixel_metric_px=args.pixel_px, device=str(device), seed=args.seed,
                           classifier_arch=args.classifier_arch)
    cfg, demo_classifier = classifier_config(cfg, args.classifier)
    user_classifier = load_networks(cfg).classifier if cfg.weights.classifier is not None else None
    choice = load_classifier(cfg, demo_classifier, user_classifier)
    classifier, names = choice.classifier, choice.class_names
    probe = ground_truth if ground_truth is not None else np.zeros((1, 8, 8, 3), np.uint8)
    cfg = dataclasses.replace(cfg, n_way=effective_n_way(cfg, classifier, probe))
    steps = {"dpmpp": args.dpm_steps, "plms": args.plms_steps}

    def run(scheduler: str, n_steps: int) -> np.ndarray:
        return generate(model, fmri, n_samples=args.samples, scheduler=scheduler, steps=n_steps, seed=args.seed,
                        batch_size=args.batch_size, device=device, progress=False)

    result: dict = {"device": str(device), "cpu": platform.processor() or platform.machine(),
                    "torch_threads": torch.get_num_threads(),
                    "model": str(args.stage_b) if args.stage_b else "tiny random (demo preset sizes)",
                    "n_items": len(fmri), "n_samples": args.samples, "image_size": model.architecture.image_size,
                    "n_way": cfg.n_way if classifier is not None else None, "schedulers": {}}
    images, per_item = {}, {}
    gt_probabilities = None if ground_truth is None or classifier is None else classifier.probabilities(ground_truth)
    for scheduler in SAMPLERS:
        run(scheduler, 2)  # warm-up: allocations, kernels
        started = time.perf_counter()
        images[scheduler] = run(scheduler, steps[scheduler])
        seconds = time.perf_counter() - started
        entry = {"steps": steps[scheduler], "seconds": round(seconds, 3),
                 "images_per_s": round(images[scheduler].shape[0] * args.samples / seconds, 4)}
        if ground_truth is not None:
            table = per_image_table(images[scheduler], ground_truth, cfg, classifier, names, gt_probabilities)
            metric_columns = [c for c in table.columns if c not in ("item", "sample", "true_class",
                                                                     "predicted_class")]
            per_item[scheduler] = table.groupby("item")[metric_columns].mean()
            entry["metrics"] = {name: float(per_item[scheduler][name].mean()) for name in metric_columns}
        result["schedulers"][scheduler] = entry
    if per_item:
        result["paired_difference_dpmpp_minus_plms"] = {
            name: paired_difference(per_item["dpmpp"][name].to_numpy(), per_item["plms"][name].to_numpy())
            for name in per_item["dpmpp"].columns}
    fast, reference = (images[s].reshape(-1, *images[s].shape[2:]) for s in SAMPLERS)
    result["agreement_dpmpp_vs_plms"] = {
        "pixcorr": float(np.mean([pixcorr(fast[i][None], reference[i][None], args.pixel_px)
                                  for i in range(len(fast))])),
        "ssim": float(np.mean([ssim_gray(fast[i][None], reference[i][None], args.pixel_px)
                               for i in range(len(fast))])),
    }
    result["speedup_plms_over_dpmpp"] = round(result["schedulers"]["plms"]["seconds"]
                                              / result["schedulers"]["dpmpp"]["seconds"], 2)
    return result


if __name__ == "__main__":
    json.dump(main(sys.argv[1:]), sys.stdout, indent=2)
    sys.stdout.write("\n")
