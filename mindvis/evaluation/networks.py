"""Metric networks built from local weight files: architecture + state dict + preprocessing, never a download.

Each entry of `EvaluationConfig.weights` names one file in the network's own published format (torchvision state
dicts; an open_clip checkpoint for CLIP; pytorch-fid's file for the FID Inception). `check_weights` verifies every
configured file against its architecture on the meta device (no memory, no init cost), so a wrong path or file
stops the workflow before generation starts. `load_networks` builds the networks for real, on the configured
device, frozen and in eval mode.

Preprocessing follows the NSD papers' metric code (MindEye): images are resized (shorter side) to 256 px for
AlexNet, 342 px for InceptionV3, 255 px for EfficientNet-B1, 224 px for SwAV-ResNet50, ImageNet-normalised,
without cropping; CLIP gets its own preprocessing (shorter side to the model's size, bicubic, centre crop, CLIP
normalisation); the n-way classifier gets its torchvision weights' inference transforms; FID gets pytorch-fid's
(299x299 bilinear, [-1, 1]).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.transforms import InterpolationMode

from mindvis.config.evaluation import EvaluationConfig
from mindvis.devices import resolve_device
from mindvis.errors import ConfigError, WeightsError
from mindvis.evaluation.fid import FID_INCEPTION_CLASSES, build_fid_inception
from mindvis.models.image_input import IMAGENET_MEAN, IMAGENET_STD, Preprocess, make_preprocess

log = logging.getLogger(__name__)

# What each weights key must hold, for messages and docs.
EXPECTED_FORMAT: dict[str, str] = {
    "alexnet": "a torchvision alexnet state dict (e.g. alexnet-owt-7be5be79.pth)",
    "inception": "a torchvision inception_v3 state dict (e.g. inception_v3_google-0cc3c7bd.pth)",
    "fid_inception": "pytorch-fid's FID Inception state dict (pt_inception-2015-12-05-6726825d.pth)",
    "clip": "an open_clip checkpoint (state dict) of evaluation.clip_arch (e.g. open_clip_pytorch_model.bin)",
    "effnet": "a torchvision efficientnet_b1 state dict (e.g. efficientnet_b1_rwightman-bac287d4.pth)",
    "swav": "a SwAV ResNet-50 trunk: torchvision resnet50 state dict without fc, or swav_800ep_pretrain.pth.tar",
    "classifier": "a torchvision state dict of evaluation.classifier_arch (reference: vit_h_14_swag-80465313.pth)",
}

# Metrics that need each weights key (FID can also run on `inception` when `fid_inception` is not configured).
METRICS_OF_WEIGHTS: dict[str, tuple[str, ...]] = {
    "alexnet": ("alexnet2", "alexnet5"),
    "inception": ("inception",),
    "fid_inception": ("fid", "fid64"),
    "clip": ("clip",),
    "effnet": ("effnet_dist",),
    "swav": ("swav_dist",),
    "classifier": ("top1_nway_mean", "top1_nway_max"),
}

# Keys in SwAV's release file that belong to its self-supervised heads, not to the ResNet-50 trunk.
_SWAV_HEAD_PREFIXES = ("fc.", "projection_head.", "prototypes.")

# --------------------------------------------------------------------------------------------------- preprocessing

def fid_preprocess(images: Tensor) -> Tensor:
    """pytorch-fid's input: (B, 3, H, W) uint8 -> (B, 3, 299, 299) float in [-1, 1], bilinear, no antialiasing."""
    x = F.interpolate(images.float() / 255.0, size=(299, 299), mode="bilinear", align_corners=False)
    return 2.0 * x - 1.0


def _signed_unit_preprocess(resize_px: int) -> Preprocess:
    # Inception-v3 (torchvision's weights are Google's) expects [-1, 1] input: torchvision's transform_input maps
    # ImageNet-normalised input to exactly this, so normalising with mean = std = 0.5 is the same computation.
    return make_preprocess(resize_px, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


# ------------------------------------------------------------------------------------------- feature extractors

class AlexNetLayers(nn.Module):
    """AlexNet activations after features.4 (ReLU of conv2) and features.11 (ReLU of conv5), flattened."""

    def __init__(self, alexnet: torchvision.models.AlexNet) -> None:
        super().__init__()
        self.to_layer4 = alexnet.features[:5]
        self.to_layer11 = alexnet.features[5:12]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        layer4 = self.to_layer4(x)  # (B, 192, h, w)
        layer11 = self.to_layer11(layer4)  # (B, 256, h', w')
        return {"features.4": layer4.flatten(1), "features.11": layer11.flatten(1)}


class InceptionPools(nn.Module):
    """Inception-v3 pooled features: `pool64` (first max pool, spatially averaged: the 64-d FID block) and
    `pool2048` (global average pool before fc: standard FID / the papers' Inception features)."""

    _STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1")
    _TRUNK = ("Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
              "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")

    def __init__(self, inception: torchvision.models.Inception3) -> None:
        super().__init__()
        self.stem = nn.Sequential(*(getattr(inception, name) for name in self._STEM))
        self.trunk = nn.Sequential(*(getattr(inception, name) for name in self._TRUNK))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        stem = self.stem(x)  # (B, 64, h, w)
        trunk = self.trunk(stem)  # (B, 2048, h', w')
        return {"pool64": stem.mean(dim=(2, 3)), "pool2048": trunk.mean(dim=(2, 3))}


class NamedOutput(nn.Module):
    """Wrap a module returning one (B, D) tensor so it returns {name: tensor}, like the multi-layer extractors."""

    def __init__(self, module: nn.Module, name: str) -> None:
        super().__init__()
        self.module = module
        self.name = name

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {self.name: self.module(x).flatten(1)}


class FeatureNetwork:
    """A frozen network applied to uint8 images in batches: images (N, H, W, 3) -> {layer: float32 (N, D)}."""

    def __init__(self, name: str, module: nn.Module, preprocess: Preprocess, device: torch.device,
                 batch_size: int) -> None:
        unloaded = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
        if unloaded:
            raise RuntimeError(f"{name}: tensors {unloaded[:3]} were not loaded from the weight file")
        self.name = name
        # float32 whatever the file stored (some checkpoints are saved in half precision).
        self.module = module.eval().requires_grad_(False).to(device=device, dtype=torch.float32)
        self.preprocess = preprocess
        self.device = device
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        outputs: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(images), self.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start:start + self.batch_size]))
            batch = batch.permute(0, 3, 1, 2).to(self.device)  # (B, 3, H, W) uint8
            for layer, values in self.module(self.preprocess(batch)).items():
                outputs.setdefault(layer, []).append(values.float().cpu().numpy())
        return {layer: np.concatenate(chunks) for layer, chunks in outputs.items()}


class ImageClassifier:
    """An image classifier for the n-way metric: uint8 images (N, H, W, 3) -> class scores.

    Any nn.Module mapping a preprocessed batch (B, 3, h, w) to logits (B, C) can be wrapped (the demo's stand-in
    classifier too), with `make_preprocess(...)` describing its input.
    """

    def __init__(self, module: nn.Module, preprocess: Preprocess, device: torch.device, batch_size: int) -> None:
        self.network = FeatureNetwork("classifier", NamedOutput(module, "logits"), preprocess, device, batch_size)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N, C) float32 logits."""
        return self.network(images)["logits"]

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, C) float64 softmax probabilities."""
        logits = self.logits(images).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class MetricNetworks:
    """The metric networks that are configured (None = not configured; `skipped` says why for each metric)."""

    alexnet: FeatureNetwork | None = None
    inception: FeatureNetwork | None = None
    fid_inception: FeatureNetwork | None = None
    clip: FeatureNetwork | None = None
    effnet: FeatureNetwork | None = None
    swav: FeatureNetwork | None = None
    classifier: ImageClassifier | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def fid_network(self) -> FeatureNetwork | None:
        """The network FID uses: the standard FID Inception when configured, else torchvision's Inception-v3."""
        return self.fid_inception or self.inception


# --------------------------------------------------------------------------------------------- weight loading

def check_weights(cfg: EvaluationConfig) -> dict[str, Path]:
    """Verify every configured metric weight file before any expensive work starts.

    Each file must exist and its state dict must fit its architecture exactly (names and shapes, checked on the
    meta device: cheap even for ViT-H). Unconfigured (null) keys are fine: their metrics will be skipped.
    Returns {weights key: path} of the files that passed. Raises WeightsError (or ConfigError for a bad
    architecture name) naming the config key, the file, what was expected and a hint.
    """
    checked = {}
    for key, path in _configured_weights(cfg).items():
        _load_architecture(key, path, cfg)
        checked[key] = path
        log.info("metric weights %s OK: %s", key, path)
    return checked


def load_networks(cfg: EvaluationConfig) -> MetricNetworks:
    """Build every configured metric network on `cfg.device` (frozen, eval mode) and note the skipped metrics."""
    device = resolve_device(cfg.device)
    configured = _configured_weights(cfg)
    networks = MetricNetworks()
    for key, metrics in METRICS_OF_WEIGHTS.items():
        if key in configured:
            continue
        for metric in metrics:
            networks.skipped[metric] = f"evaluation.weights.{key} is not configured (no {key} weight file)"
    if "inception" in configured and "fid_inception" not in configured:
        # FID still runs, on torchvision's Inception: say so instead of skipping.
        for metric in METRICS_OF_WEIGHTS["fid_inception"]:
            networks.skipped.pop(metric, None)
        log.warning("evaluation.weights.fid_inception not configured: FID uses torchvision's Inception-v3, whose "
                    "values are not comparable with published (pytorch-fid / TF) FIDs")
    for key, path in configured.items():
        module = _load_architecture(key, path, cfg)
        _attach(networks, key, module, cfg, device)
        log.info("loaded metric network %s from %s on %s", key, path, device)
    return networks


def _configured_weights(cfg: EvaluationConfig) -> dict[str, Path]:
    return {key: Path(getattr(cfg.weights, key)) for key in EXPECTED_FORMAT if getattr(cfg.weights, key) is not None}


def _attach(networks: MetricNetworks, key: str, module: nn.Module, cfg: EvaluationConfig,
            device: torch.device) -> None:
    batch = cfg.batch_size
    if key == "alexnet":
        networks.alexnet = FeatureNetwork("alexnet", AlexNetLayers(module), make_preprocess(
            256, IMAGENET_MEAN, IMAGENET_STD), device, batch)
    elif key == "inception":
        networks.inception = FeatureNetwork("inception", InceptionPools(module), _signed_unit_preprocess(342),
                                            device, batch)
    elif key == "fid_inception":
        networks.fid_inception = FeatureNetwork("fid_inception", InceptionPools(module), fid_preprocess, device,
                                                batch)
    elif key == "clip":
        networks.clip = FeatureNetwork("clip", NamedOutput(module.visual, "embedding"), _clip_preprocess(module),
                                       device, batch)
    elif key == "effnet":
        module.classifier = nn.Identity()  # keep the 1280-d average-pooled features, drop the ImageNet head
        networks.effnet = FeatureNetwork("effnet", NamedOutput(module, "avgpool"), make_preprocess(
            255, IMAGENET_MEAN, IMAGENET_STD), device, batch)
    elif key == "swav":
        networks.swav = FeatureNetwork("swav", NamedOutput(module, "avgpool"), make_preprocess(
            224, IMAGENET_MEAN, IMAGENET_STD), device, batch)
    elif key == "classifier":
        networks.classifier = ImageClassifier(module, _classifier_preprocess(cfg.classifier_arch, module), device,
                                              batch)


def _load_architecture(key: str, path: Path, cfg: EvaluationConfig) -> nn.Module:
    """Read `path`, build the architecture of weights key `key` and load the file into it (strict).

    The architecture is built on the meta device (no allocation, no random init) and the file's tensors are
    assigned to it; they stay memory-mapped on the CPU until the module is moved to its device, so a check that
    discards the module costs little more than reading the file's index.
    """
    state_dict = _read_state_dict(key, path)
    if key == "swav":
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(_SWAV_HEAD_PREFIXES)}
    with torch.device("meta"):
        module = _build(key, cfg, state_dict, path)
    try:
        module.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as exc:
        raise _weights_error(key, path, "does not fit the architecture", _summarise_mismatch(module, state_dict),
                             cfg) from exc
    return module


def _build(key: str, cfg: EvaluationConfig, state_dict: Mapping[str, Tensor], path: Path) -> nn.Module:
    """The randomly-initialised architecture for weights key `key` (called under the meta device)."""
    models = torchvision.models
    if key == "alexnet":
        return models.alexnet(weights=None)
    if key == "inception":
        has_aux = any(k.startswith("AuxLogits.") for k in state_dict)
        return models.inception_v3(weights=None, aux_logits=has_aux, init_weights=False, transform_input=False)
    if key == "fid_inception":
        fc = state_dict.get("fc.weight")
        if fc is not None and fc.shape[0] != FID_INCEPTION_CLASSES:
            raise _weights_error(key, path, f"has a {fc.shape[0]}-class head, not the FID Inception's "
                                 f"{FID_INCEPTION_CLASSES}", None, cfg,
                                 hint="a torchvision inception_v3 file belongs under evaluation.weights.inception")
        return build_fid_inception()
    if key == "clip":
        return _build_clip(cfg.clip_arch)
    if key == "effnet":
        return models.efficientnet_b1(weights=None)
    if key == "swav":
        model = models.resnet50(weights=None)
        model.fc = nn.Identity()  # SwAV has no classifier: the 2048-d average-pooled trunk features
        return model
    if key == "classifier":
        return _build_classifier(cfg.classifier_arch, state_dict)
    raise KeyError(key)


def _build_classifier(arch: str, state_dict: Mapping[str, Tensor]) -> nn.Module:
    if arch not in torchvision.models.list_models(torchvision.models):
        raise ConfigError("unknown torchvision classification architecture", path="evaluation.classifier_arch",
                          value=arch, expected="a name from torchvision.models.list_models(), e.g. vit_h_14",
                          hint="the reference uses vit_h_14 with its SWAG E2E weights (518 px)")
    kwargs = {}
    image_size = _vit_image_size(arch, state_dict)
    if image_size is not None:
        kwargs["image_size"] = image_size
    return torchvision.models.get_model(arch, weights=None, **kwargs)


def _vit_image_size(arch: str, state_dict: Mapping[str, Tensor]) -> int | None:
    """Input size a torchvision ViT state dict was trained at, from its position embedding (None for non-ViTs)."""
    pos = state_dict.get("encoder.pos_embedding")
    if pos is None or not arch.startswith("vit_"):
        return None
    patch_px = int(arch.rsplit("_", 1)[-1])  # vit_h_14 -> 14
    grid = math.isqrt(pos.shape[1] - 1)  # tokens = grid^2 + class token
    return grid * patch_px


def _classifier_preprocess(arch: str, module: nn.Module) -> Preprocess:
    """The inference transforms of the torchvision weights entry matching the model's input size."""
    entries = list(torchvision.models.get_model_weights(arch))
    image_size = getattr(module, "image_size", None)
    matching = [e for e in entries if image_size is not None and e.transforms().crop_size[0] == image_size]
    entry = matching[0] if matching else torchvision.models.get_model_weights(arch).DEFAULT
    transforms = entry.transforms()
    return make_preprocess(transforms.resize_size[0], tuple(transforms.mean), tuple(transforms.std),
                           crop_px=transforms.crop_size[0], interpolation=transforms.interpolation)


@contextlib.contextmanager
def _no_random_init_warning() -> Iterator[None]:
    # open_clip warns "initialized randomly" when built without weights; ours are loaded right after.
    def drop(record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _build_clip(arch: str) -> nn.Module:
    import open_clip  # heavy import, only when CLIP is configured

    if arch.startswith("hf-hub:"):
        raise ConfigError("CLIP architectures from the Hugging Face hub would be downloaded",
                          path="evaluation.clip_arch", value=arch,
                          expected="a built-in open_clip name (ViT-L-14-quickgelu, ViT-L-14, ...)",
                          hint="put the checkpoint file under evaluation.weights.clip and name its architecture")
    if arch not in open_clip.list_models() and not arch.startswith("local-dir:"):
        raise ConfigError("unknown open_clip architecture", path="evaluation.clip_arch", value=arch,
                          expected="a name from open_clip.list_models(), e.g. ViT-L-14-quickgelu")
    # No `pretrained`, no tower weights: open_clip has nothing to fetch; the file is loaded by the caller.
    with _no_random_init_warning():
        return open_clip.create_model(arch, pretrained=None, load_weights=False, pretrained_image=False,
                                      pretrained_text=False, device="meta")


def _clip_preprocess(model: nn.Module) -> Preprocess:
    import open_clip

    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg["size"][0] if isinstance(cfg["size"], (tuple, list)) else cfg["size"]
    interpolation = InterpolationMode.BICUBIC if cfg.get("interpolation", "bicubic") == "bicubic" \
        else InterpolationMode.BILINEAR
    return make_preprocess(size, tuple(cfg["mean"]), tuple(cfg["std"]), crop_px=size, interpolation=interpolation)


# ------------------------------------------------------------------------------------------------ file reading

def _read_state_dict(key: str, path: Path) -> dict[str, Tensor]:
    """Tensors of a weight file (torch zip/legacy or safetensors), unwrapped from {'state_dict': ...}-style
    containers and DataParallel's 'module.' prefix. Memory-mapped where the format allows."""
    if not path.is_file():
        raise WeightsError(f"evaluation.weights.{key}: weight file not found", path=path,
                           expected=EXPECTED_FORMAT[key],
                           hint="fix the path in config.yaml (evaluation.weights), or set it to null to skip "
                                "the metrics that need it; mindvis never downloads weights")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(path))
        else:
            raw = _torch_load(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure means: not a weight file we can use
        raise WeightsError(f"evaluation.weights.{key}: cannot read the weight file ({type(exc).__name__}: {exc})",
                           path=path, expected=EXPECTED_FORMAT[key],
                           hint="the file is truncated, not a PyTorch/safetensors file, or a pickled model object "
                                "(save model.state_dict() instead)") from exc
    state_dict = _unwrap(raw)
    if state_dict is None:
        shown = sorted(raw)[:8] if isinstance(raw, Mapping) else type(raw).__name__
        raise WeightsError(f"evaluation.weights.{key}: the file holds no state dict of tensors", path=path,
                           value=shown, expected=EXPECTED_FORMAT[key],
                           hint="save model.state_dict() (a mapping of parameter names to tensors)")
    return state_dict


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise
        # Files saved in the pre-1.6 (non-zip) format cannot be memory-mapped.
        return torch.load(path, map_location="cpu", weights_only=True)


def _unwrap(raw: object) -> dict[str, Tensor] | None:
    if not isinstance(raw, Mapping):
        return None
    if raw and all(isinstance(v, Tensor) for v in raw.values()):
        prefix = "module."
        if all(k.startswith(prefix) for k in raw):
            return {k[len(prefix):]: v for k, v in raw.items()}
        return dict(raw)
    for container in ("state_dict", "model", "model_state_dict"):
        if isinstance(raw.get(container), Mapping):
            return _unwrap(raw[container])
    return None


def _summarise_mismatch(module: nn.Module, state_dict: Mapping[str, Tensor]) -> dict[str, object]:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state_dict) if expected[k].shape != state_dict[k].shape)
    summary: dict[str, object] = {}
    for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            summary[name] = f"{len(keys)} keys, e.g. {keys[:3]}"
    return summary


def _weights_error(key: str, path: Path, problem: str, value: object, cfg: EvaluationConfig,
                   hint: str | None = None) -> WeightsError:
    arch = {"clip": f" ({cfg.clip_arch})", "classifier": f" ({cfg.classifier_arch})"}.get(key, "")
    return WeightsError(f"evaluation.weights.{key}: the file {problem}{arch}", path=path, value=value,
                        expected=EXPECTED_FORMAT[key],
                        hint=hint or f"is this the right file for '{key}'? (architecture names: "
                                     "evaluation.classifier_arch / evaluation.clip_arch)")
