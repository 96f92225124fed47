"""Read a trained demo classifier (mindvis.training.demo_classifier) as the n-way metric's ImageClassifier."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import torch

from mindvis.checkpoints.own_format import own_format_dir, read_own_format
from mindvis.devices import resolve_device
from mindvis.errors import CheckpointError, ConfigError
from mindvis.evaluation.networks import ImageClassifier
from mindvis.models.classifier import DEMO_CLASSIFIER_KIND, DemoClassifierArchitecture, DemoClassifierNet
from mindvis.models.image_input import make_preprocess


def is_demo_classifier(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is an own-format directory (or one of its files) written by train_demo_classifier."""
    directory = own_format_dir(path)
    if directory is None:
        return False
    try:
        return json.loads((directory / "config.json").read_text()).get("kind") == DEMO_CLASSIFIER_KIND
    except (OSError, ValueError, AttributeError):
        return False


@dataclass(frozen=True)
class LoadedClassifier:
    """A classifier ready for the metrics, with the names of its outputs (for tables)."""

    classifier: ImageClassifier
    class_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def load_demo_classifier(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                         batch_size: int = 64) -> LoadedClassifier:
    """Load a train_demo_classifier output as an ImageClassifier (uint8 (N, H, W, 3) -> logits (N, C)).

    Raises:
        CheckpointError: not a demo classifier directory, or weights that do not fit its architecture.
    """
    state, document = read_own_format(path, kind=DEMO_CLASSIFIER_KIND)
    try:
        arch = DemoClassifierArchitecture(**document["architecture"])
        pre = document["preprocess"]
        names = tuple(entry["name"] for entry in document["classes"])
        preprocess = make_preprocess(int(pre["input_px"]), tuple(pre["mean"]), tuple(pre["std"]))
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError("demo classifier config.json is incomplete", path=path, value=str(exc),
                              expected="architecture, preprocess and classes as train_demo_classifier writes them",
                              hint="rerun the demo_classifier rule") from exc
    model = DemoClassifierNet(arch)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError("demo classifier weights do not fit its architecture", path=path,
                              value=str(exc).splitlines()[0], expected=str(asdict(arch)),
                              hint="rerun the demo_classifier rule") from exc
    if len(names) != arch.num_classes:
        raise CheckpointError("demo classifier names a different number of classes than it has outputs", path=path,
                              value=len(names), expected=str(arch.num_classes))
    device = resolve_device(str(device))
    return LoadedClassifier(ImageClassifier(model, preprocess, device, batch_size), names)
