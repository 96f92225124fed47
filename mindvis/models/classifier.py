"""The demo's stand-in for the n-way metric's ImageNet classifier: a small CNN over the demo categories.

Trained by mindvis.training.demo_classifier, read for the metrics by mindvis.evaluation.demo_classifier.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from mindvis.errors import ConfigError

DEMO_CLASSIFIER_KIND = "demo_classifier"
"""The `kind` of the own-format directory (mindvis.checkpoints.own_format) a trained demo classifier is saved as."""


@dataclass(frozen=True)
class DemoClassifierArchitecture:
    """Sizes of DemoClassifierNet: `width` channels after the stem, doubled twice; `num_classes` outputs."""

    num_classes: int
    width: int = 32

    def __post_init__(self) -> None:
        if self.num_classes < 2 or self.width < 1:
            raise ConfigError("invalid demo classifier sizes", value=asdict(self),
                              expected="num_classes >= 2 and width >= 1")


class DemoClassifierNet(nn.Module):
    """Five 3x3 conv-BatchNorm-ReLU stages (three with stride 2), global average pooling, a linear head.

    Input: (B, 3, S, S) normalised images (any S >= 8; the demo uses 64 px). Output: (B, num_classes) logits.
    """

    def __init__(self, arch: DemoClassifierArchitecture) -> None:
        super().__init__()
        self.arch = arch
        w = arch.width
        stages = [(3, w, 2), (w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2), (4 * w, 4 * w, 1)]
        self.features = nn.Sequential(*(self._stage(i, o, s) for i, o, s in stages))
        self.head = nn.Linear(4 * w, arch.num_classes)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                             nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.features(images)  # (B, 4w, S/8, S/8)
        return self.head(features.mean(dim=(2, 3)))  # (B, C)
