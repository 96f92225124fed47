"""Pieces the mindvis trainings share besides their run (mindvis.training.runner): AdamW parameter groups, the
warm-up + cosine schedule and per-dataset settings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from mindvis.errors import ConfigError


def weight_decay_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: biases and 1-D parameters (norms) without weight decay, the rest with it.

    Frozen parameters are left out. Same split as the reference (timm's add_weight_decay): the (1, 1, D)
    cls/mask tokens are decayed.
    """
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 or name.endswith(".bias") else decay).append(parameter)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def make_adamw(groups: Iterable[dict[str, Any]], lr: float, betas: tuple[float, float] = (0.9, 0.95)
               ) -> torch.optim.AdamW:
    """AdamW with PyTorch's fused kernel (one pass over all parameters; CPU and CUDA), else the foreach one."""
    groups = list(groups)
    params = [p for group in groups for p in group["params"]]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused, foreach=None if fused else True)


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier at optimizer step `step` (0-based).

    Linear warm-up from 0 over `warmup_steps`, then a half cosine from 1 down to `min_ratio` at `total_steps`
    (per iteration, as the reference's epoch-fraction schedule).
    """
    if step < warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def per_dataset(setting: int | Mapping[str, int], dataset_name: str, path: str, what: str) -> int:
    """The value of a setting at `path` for `dataset_name`: the number itself, or its entry in a mapping
    dataset -> value (a ConfigError naming `what`, e.g. "batch size", when the dataset has none)."""
    if isinstance(setting, int):
        return setting
    value = setting.get(dataset_name)
    if value is None:
        raise ConfigError(f"no {what} for this dataset", path=path, value=dataset_name,
                          expected=f"one of {sorted(setting)}", hint=f"add {dataset_name}: <{what}> under {path}")
    return value
