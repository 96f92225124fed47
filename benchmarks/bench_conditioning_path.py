"""Can Stage B's conditioning path carry the fMRI to the LDM's class space at all? Prints one JSON object.

Stage B reads the fMRI through the encoder's tokens and the token mapper (a mix over tokens, then one projection
shared by every token). This benchmark asks whether that path *can* represent a decoder of the category, leaving
the diffusion loss out: encoder + mapper (freshly initialised, the demo encoder's size, one arm per patch size) are
trained by plain regression of the mean context token onto the class vector of each training image's category
(the demo LDM's class table), and compared with a linear map straight from the voxels trained the same way.

Reported per arm, on the training pairs (fit) and on the held-out test fMRI of unseen categories: the correlation
between predicted and true class vectors (`r`; predicting the training mean alone gives `r_mean_only`) and the
share of rows whose nearest class vector is the true one. A path that stays at `r_mean_only` on its own training
data cannot carry category information, whatever Stage B's loss does.

Usage (after `make demo`, which preprocesses the subject):
    .venv/bin/python benchmarks/bench_conditioning_path.py [--subject GOD/sbj_3] [--results results]
        [--ldm demo/pretrained/ldm] [--patch-sizes 16 320] [--steps 600] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mindvis.checkpoints.label2img import load_pretrained_ldm
from mindvis.config.stage_a import STAGE_A_PRESETS
from mindvis.data.contract import read_subject
from mindvis.models.conditioning import FmriConditioner, TokenMapper
from mindvis.models.mbm import FmriEncoder, MbmArchitecture, pad_voxels, padded_voxel_count

BATCH_SIZE = 8
LEARNING_RATE = 1e-3


def class_targets(subject_dir: Path, ldm_dir: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                              torch.Tensor]:
    """(train fMRI (N, V), train class ids (N,), test fMRI (M, V), test class ids (M,), class table (K, C)).

    Test rows are the averaged test fMRI; class ids index the LDM's class table (its class_index.json wnids).
    """
    subject = read_subject(subject_dir, mmap=False)
    index = json.loads((ldm_dir / "class_index.json").read_text())
    row_of_wnid = {wnid: int(row) for row, (wnid, _) in index.items()}
    samples = subject.samples
    if "wnid" not in samples:
        sys.exit(f"{subject_dir} has no wnid column: this benchmark needs a GOD subject (categories per image)")
    train = (samples.split == "train").to_numpy()
    test = ((samples.split == "test") & (samples.n_averaged > 1)).to_numpy()
    fmri = torch.from_numpy(np.asarray(subject.fmri, dtype=np.float32))
    labels = torch.tensor([row_of_wnid[w] for w in samples.wnid])
    return fmri[train], labels[train], fmri[test], labels[test], load_pretrained_ldm(ldm_dir).class_embedding


def scores(predicted: torch.Tensor, labels: torch.Tensor, table: torch.Tensor) -> dict[str, float]:
    """Correlation with the true class vectors and nearest-class-vector accuracy of predictions (N, C)."""
    r = np.corrcoef(predicted.numpy().ravel(), table[labels].numpy().ravel())[0, 1]
    nearest = torch.cdist(predicted, table).argmin(1)
    return {"r": round(float(r), 3), "nearest_class_accuracy": round(float((nearest == labels).float().mean()), 3)}


def fit(predict: nn.Module, data: tuple, steps: int, seed: int) -> dict[str, dict[str, float]]:
    """Regress predict(fMRI) (N, C) onto the class vectors with AdamW; scores on train and test afterwards."""
    x_train, y_train, x_test, y_test, table = data
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(predict.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    predict.train()
    for _ in range(steps):
        rows = torch.randint(len(x_train), (BATCH_SIZE,), generator=generator)
        loss = (predict(x_train[rows]) - table[y_train[rows]]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    predict.eval()
    with torch.no_grad():
        return {"fit": scores(predict(x_train), y_train, table), "test": scores(predict(x_test), y_test, table)}


class MeanContextToken(nn.Module):
    """fMRI (N, V) -> the mean of the 77 context tokens (N, C) of an encoder + token mapper."""

    def __init__(self, arch: MbmArchitecture, context_dim: int) -> None:
        super().__init__()
        encoder = FmriEncoder(arch)
        self.conditioner = FmriConditioner(encoder, TokenMapper(encoder.num_patches, encoder.embed_dim, context_dim))

    def forward(self, fmri: torch.Tensor) -> torch.Tensor:
        return self.conditioner(fmri).mean(1)


def encoder_arch(n_voxels: int, patch_size: int) -> MbmArchitecture:
    """The demo encoder's size with `patch_size`, over the subject's voxels padded to the patch size."""
    model = {k: v for k, v in STAGE_A_PRESETS["demo"]["model"].items() if not k.startswith("decoder_")}
    model["patch_size"] = patch_size
    return MbmArchitecture(num_voxels=padded_voxel_count(n_voxels, patch_size), decoder_embed_dim=32,
                           decoder_depth=1, decoder_num_heads=1, **model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subject", default="GOD/sbj_3", help="<dataset>/<subject> under results/preprocessed")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--ldm", type=Path, default=Path("demo/pretrained/ldm"))
    parser.add_argument("--patch-sizes", type=int, nargs="+", default=[16, 320])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    subject_dir = args.results / "preprocessed" / args.subject
    if not (subject_dir / "fmri.npy").is_file():
        sys.exit(f"run the workflow first (make demo): need {subject_dir}/fmri.npy")
    if not (args.ldm / "class_index.json").is_file():
        sys.exit(f"{args.ldm} has no class_index.json: pass the demo LDM directory with --ldm")
    started = time.perf_counter()
    data = class_targets(subject_dir, args.ldm)
    x_train, y_train, _, _, table = data
    mean_only = table[y_train].mean(0, keepdim=True).expand(len(y_train), -1)
    result = {"subject": args.subject, "n_train": len(y_train), "n_test": len(data[3]), "steps": args.steps,
              "r_mean_only": scores(mean_only, y_train, table)["r"], "arms": {}}
    n_voxels = x_train.shape[1]
    for patch_size in args.patch_sizes:
        torch.manual_seed(args.seed)
        arch = encoder_arch(n_voxels, patch_size)
        padded = tuple(pad_voxels(x, arch.num_voxels, patch_size).squeeze(1) for x in (data[0], data[2]))
        result["arms"][f"encoder_patch_{patch_size}"] = {
            "tokens": arch.num_patches,
            **fit(MeanContextToken(arch, table.shape[1]), (padded[0], data[1], padded[1], data[3], table),
                  args.steps, args.seed)}
    torch.manual_seed(args.seed)
    # a linear map of the voxels, what a ridge decoder is, trained like the other arms
    result["arms"]["linear_from_voxels"] = fit(nn.Linear(n_voxels, table.shape[1]), data, args.steps, args.seed)
    result.update(seconds=round(time.perf_counter() - started, 1), threads=args.threads,
                  machine=platform.processor() or platform.machine())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
