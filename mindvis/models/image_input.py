"""What image networks take: uint8 RGB batches resized and normalised to a network's input (metric networks, the
demo classifier)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Preprocess = Callable[[Tensor], Tensor]


def make_preprocess(resize_px: int, mean: tuple[float, ...], std: tuple[float, ...], *, crop_px: int | None = None,
                    interpolation: InterpolationMode = InterpolationMode.BILINEAR) -> Preprocess:
    """Preprocessing of uint8 image batches (B, 3, H, W): shorter side to `resize_px` (antialiased), optional centre
    crop to `crop_px`, scale to [0, 1], normalise with `mean`/`std` per channel. Returns float32 (B, 3, h, w)."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def preprocess(images: Tensor) -> Tensor:
        x = images.float() / 255.0
        x = TF.resize(x, [resize_px], interpolation=interpolation, antialias=True)
        if crop_px is not None:
            x = TF.center_crop(x, [crop_px, crop_px])
        x = x.clamp(0.0, 1.0)  # bicubic overshoots
        return (x - mean_t.to(x.device)) / std_t.to(x.device)

    return preprocess
