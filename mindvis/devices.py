"""Torch devices from config values ('auto', 'cpu', 'cuda', 'cuda:<index>')."""

from __future__ import annotations

import torch

from mindvis.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """torch device for `evaluation.device`: 'auto' = the first CUDA GPU when one is visible, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError("unknown torch device", path="evaluation.device", value=name,
                          expected="auto, cpu, cuda or cuda:<index>") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("a CUDA device is configured but torch sees no GPU", path="evaluation.device", value=name,
                          expected="auto or cpu on machines without a GPU", hint="set evaluation.device: auto")
    return device
