"""The paper's claim on the demo: does masked brain modeling (Stage A1) help decoding? Prints one JSON object.

Two arms decode the same subject with the same config and seeds, differing only in where A2 starts:
- `pretrained`: the Stage A1 model the workflow trained (results/stage_a/pretrain), as MinD-Vis;
- `random`: a randomly initialised masked brain model of the same architecture (no masked brain modeling).
Each arm then runs A2 (the subject's test fMRI, no images), Stage B, generation and evaluation exactly as the
workflow's jobs do, in its own folder under --work. Reported per arm: n-way top-1 (mean over samples) and PixCorr,
each as the mean over test images with its standard error (s.d. of the per-image values / sqrt(images)), and the
paired difference pretrained - random with its standard error over images. A difference within about two
standard errors of 0 is not a measurable effect; report it either way.

Usage (after `make demo`, which trains A1 and preprocesses the subject):
    .venv/bin/python benchmarks/bench_ablation.py [--subject GOD/sbj_3] [--results results] [--config config.yaml]
        [--work results/bench_ablation] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mindvis import plan
from mindvis.checkpoints.stage_a import load_mbm, save_mbm
from mindvis.config import load
from mindvis.evaluation.evaluate import EvaluationOutputs, evaluate_subject
from mindvis.evaluation.generation import GenerationOutputs, generate_subject
from mindvis.evaluation.scoring import MINDVIS
from mindvis.models.mbm import MaskedBrainModel
from mindvis.training.stage_a import train_stage_a_finetune
from mindvis.training.stage_b import train_stage_b

METRICS = ("top1_nway", "pixcorr")


def random_init(pretrained: Path, out_dir: Path, seed: int) -> Path:
    """A masked brain model with the architecture of `pretrained` and seeded random weights, in the own format."""
    torch.manual_seed(seed)
    model = MaskedBrainModel(load_mbm(pretrained).arch)
    save_mbm(model, out_dir, extra={"stage": "random initialisation (bench_ablation)", "seed": seed})
    return out_dir


def decode(init: Path, subject_dir: Path, work: Path, cfg, classifier: Path | None) -> pd.DataFrame:
    """A2 from `init`, Stage B, generation and evaluation of one subject; per-image means of METRICS (MinD-Vis)."""
    for folder in ("a2", "stage_b", "eval"):
        shutil.rmtree(work / folder, ignore_errors=True)
    dataset = subject_dir.parent.name  # the contract's layout: <results>/preprocessed/<dataset>/<subject>
    train_stage_a_finetune(subject_dir, init, work / "a2", cfg.stage_a, cfg.trainer, work / "resume_a2",
                           dataset=dataset)
    train_stage_b(subject_dir, work / "a2", plan.pretrained_ldm(cfg)[0], work / "stage_b", cfg.stage_b, cfg.trainer,
                  work / "resume_b", dataset=dataset)
    generated, scores = GenerationOutputs.in_dir(work / "eval"), EvaluationOutputs.in_dir(work / "scores")
    generate_subject(work / "stage_b", subject_dir, generated, cfg.stage_b.sampling, cfg.seed, "cpu")
    evaluate_subject(generated.samples, subject_dir, scores, cfg.evaluation, dataset=dataset,
                     subject=subject_dir.name, classifier_path=classifier)
    table = pd.read_csv(scores.per_image)
    return table[table["method"] == MINDVIS].groupby("item")[list(METRICS)].mean()


def summary(values: pd.Series) -> dict[str, float]:
    """Mean and standard error over test images."""
    return {"mean": round(float(values.mean()), 4), "se": round(float(values.std(ddof=1) / np.sqrt(len(values))), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subject", default="GOD/sbj_3", help="<dataset>/<subject> under results/preprocessed")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--work", type=Path, default=None, help="default <results>/bench_ablation")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load(args.config)
    subject_dir = args.results / "preprocessed" / args.subject
    pretrained = args.results / "stage_a" / "pretrain"
    if not (subject_dir / "fmri.npy").is_file() or not (pretrained / "model.safetensors").is_file():
        sys.exit(f"run the workflow first (make demo): need {subject_dir}/fmri.npy and {pretrained}/model.safetensors")
    classifier = next(iter(plan.n_way_classifier(cfg)), None)
    work = args.work or args.results / "bench_ablation"
    started = time.perf_counter()
    arms = {"pretrained": pretrained, "random": random_init(pretrained, work / "random_init", cfg.seed)}
    with contextlib.redirect_stdout(sys.stderr):  # Lightning's progress bars print to stdout: keep it JSON only
        per_image = {name: decode(init, subject_dir, work / name, cfg, Path(classifier).parent if classifier else None)
                     for name, init in arms.items()}
    result = {"subject": args.subject, "n_test_images": len(per_image["pretrained"]),
              "n_samples": cfg.stage_b.sampling.n_samples,
              "arms": {name: {m: summary(table[m]) for m in METRICS} for name, table in per_image.items()},
              "pretrained_minus_random": {m: summary(per_image["pretrained"][m] - per_image["random"][m])
                                          for m in METRICS},
              "seconds": round(time.perf_counter() - started, 1), "threads": args.threads,
              "machine": platform.processor() or platform.machine()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
