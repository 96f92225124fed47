"""Config section `stage_a`: the masked brain model (SC-MBM) and its two trainings, A1 (pretrain) and A2 (finetune).

Keys left null take the value of the preset in force (`STAGE_A_PRESETS`, paper = the MinD-Vis reference values).
The voxel count is not a config key: it is a property of the data (A1) or of the checkpoint being tuned (A2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class MbmModelConfig:
    """Sizes of the masked brain model; the encoder is what Stage B conditions on."""

    patch_size: int | None = field(default=None, metadata={"minimum": 1, "description": "voxels per token"})
    embed_dim: int | None = field(default=None, metadata={"minimum": 2, "description": "encoder width"})
    depth: int | None = field(default=None, metadata={"minimum": 1, "description": "encoder blocks"})
    num_heads: int | None = field(default=None, metadata={"minimum": 1})
    mlp_ratio: float | None = field(default=None, metadata={"exclusiveMinimum": 0})
    decoder_embed_dim: int | None = field(default=None, metadata={"minimum": 2})
    decoder_depth: int | None = field(default=None, metadata={"minimum": 1})
    decoder_num_heads: int | None = field(default=None, metadata={"minimum": 1})


@dataclass(frozen=True)
class StageAPretrainConfig:
    """A1: masked brain modeling on HCP resting state (+ GOD training fMRI)."""

    epochs: int | None = field(default=None, metadata={"minimum": 1})
    warmup_epochs: int | None = field(default=None, metadata={"minimum": 0,
                                                               "description": "linear warm-up, then half-cosine"})
    batch_size: int | None = field(default=None, metadata={"minimum": 1, "description": "per device"})
    lr: float | None = field(default=None, metadata={"exclusiveMinimum": 0})
    min_lr: float = field(default=0.0, metadata={"minimum": 0})
    weight_decay: float = field(default=0.05, metadata={"minimum": 0})
    clip_grad: float | None = field(default=0.8, metadata={"exclusiveMinimum": 0,
                                                           "description": "max gradient norm; null = no clipping"})
    mask_ratio: float = field(default=0.75, metadata={"minimum": 0, "maximum": 0.99})
    include_god_train: bool = field(default=True, metadata={
        "description": "mix the GOD training fMRI of the GOD inputs into A1 (as the reference)"})
    include_nsd_train: bool = field(default=False, metadata={
        "description": "mix the NSD training fMRI (single trials of non-shared images) into A1 (not in MinD-Vis)"})
    checkpoint_every_n_steps: int | None = field(default=None, metadata={
        "minimum": 1, "description": "how often the resume checkpoint is refreshed"})
    val_fraction: float = field(default=0.01, metadata={
        "minimum": 0, "maximum": 0.5, "description": "held-out samples for validation loss and figures"})
    seed: int = 2022


@dataclass(frozen=True)
class StageAFinetuneConfig:
    """A2: the same objective on the target subject's test fMRI only (averaged + single trials, no images)."""

    epochs: int | None = field(default=None, metadata={"minimum": 1})
    warmup_epochs: int | None = field(default=None, metadata={"minimum": 0})
    batch_size: dict[str, int] | None = field(default=None, metadata={
        "description": "per dataset (GOD, BOLD5000, NSD), per device"})
    lr: float | None = field(default=None, metadata={"exclusiveMinimum": 0})
    min_lr: float = field(default=0.0, metadata={"minimum": 0})
    weight_decay: float = field(default=0.05, metadata={"minimum": 0})
    clip_grad: float | None = field(default=0.8, metadata={"exclusiveMinimum": 0})
    mask_ratio: float = field(default=0.75, metadata={"minimum": 0, "maximum": 0.99})
    checkpoint_every_n_steps: int | None = field(default=None, metadata={"minimum": 1})
    val_fraction: float = field(default=0.0, metadata={
        "minimum": 0, "maximum": 0.5, "description": "0 = tune on every sample, as the reference"})
    seed: int = 2022


@dataclass(frozen=True)
class StageAConfig:
    model: MbmModelConfig = MbmModelConfig()
    pretrain: StageAPretrainConfig = StageAPretrainConfig()
    finetune: StageAFinetuneConfig = StageAFinetuneConfig()
    pretrained: Path | None = field(default=None, metadata={
        "description": "a released or own Stage A checkpoint: skips A1 and tunes this one"})


# The demo departs from the paper's 16-voxel patches: Stage B's token mapper reads the encoder's tokens through one
# projection shared by every token, so behind a 2-block, 64-wide encoder each context token sees little more than a
# weighted sum of 16-voxel patches (the same weight for voxel k of every patch) and cannot carry the category;
# with 320-voxel patches it can (benchmarks/bench_conditioning_path.py; figures in the README, Stage A).
_PAPER_MODEL = {"patch_size": 16, "embed_dim": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 1.0,
                "decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16}
_DEMO_MODEL = {"patch_size": 320, "embed_dim": 64, "depth": 2, "num_heads": 4, "mlp_ratio": 1.0,
               "decoder_embed_dim": 32, "decoder_depth": 2, "decoder_num_heads": 4}

STAGE_A_PRESETS = {
    "paper": {
        "model": _PAPER_MODEL,
        "pretrain": {"epochs": 500, "warmup_epochs": 40, "batch_size": 100, "lr": 2.5e-4,
                     "checkpoint_every_n_steps": 1000},
        "finetune": {"epochs": 15, "warmup_epochs": 2, "batch_size": {"GOD": 16, "BOLD5000": 4, "NSD": 16},
                     "lr": 5.3e-5,
                     "checkpoint_every_n_steps": 200},
    },
    "demo": {
        "model": _DEMO_MODEL,
        "pretrain": {"epochs": 10, "warmup_epochs": 1, "batch_size": 32, "lr": 1e-3,
                     "checkpoint_every_n_steps": 20},
        "finetune": {"epochs": 4, "warmup_epochs": 1, "batch_size": {"GOD": 16, "BOLD5000": 4, "NSD": 16},
                     "lr": 2e-4,
                     "checkpoint_every_n_steps": 20},
    },
}
