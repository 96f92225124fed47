"""Metric-network weight files in their real published formats (randomly initialised), written once per session.

torchvision state dicts for AlexNet, Inception-v3, EfficientNet-B1, a SwAV-style ResNet-50 trunk (no fc) and a
small torchvision classifier (mobilenet_v3_small stands in for ViT-H/14: same format, 1/250 of the size);
pytorch-fid's FID-Inception layout; an open_clip checkpoint of a tiny architecture registered through open_clip's
own model-config mechanism (the real ViT-L-14 checkpoint is ~1.7 GB; see the slow test in test_networks.py).
BatchNorm statistics are calibrated on random images (see calibrate_batchnorm) so features are not degenerate.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
import torchvision

from mindvis.config.evaluation import EvaluationConfig, MetricWeightsConfig
from mindvis.evaluation.fid import build_fid_inception

TINY_CLIP_ARCH = "mindvis-test-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 28, "layers": 2, "width": 64, "patch_size": 14, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TEST_CLASSIFIER_ARCH = "mobilenet_v3_small"


def calibrate_batchnorm(model: torch.nn.Module, size_px: int, seed: int = 0) -> torch.nn.Module:
    """Set BatchNorm running statistics from one batch of random images, as training would have.

    A randomly initialised deep network with default running statistics (mean 0, var 1) lets activations shrink
    layer after layer until its pooled features are ~1e-7 and alike for every image (useless for FID or
    correlation tests); with calibrated statistics each BatchNorm re-normalises its input as in a trained network.
    """
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batch
        bn.train()
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(8, 3, 4, 4, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(size_px, size_px), mode="bicubic", align_corners=False)
    with torch.no_grad():
        model((images - 0.45) / 0.25)
    for bn in batchnorms:
        bn.momentum = 0.1
    return model.eval()


def register_tiny_clip(config_dir: Path) -> None:
    """Make TINY_CLIP_ARCH a known open_clip architecture (as a user would add their own model config)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / f"{TINY_CLIP_ARCH}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config_dir)


@pytest.fixture(scope="session")
def metric_weight_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("metric_weights")
    register_tiny_clip(root / "open_clip_configs")
    torch.manual_seed(0)
    models = torchvision.models
    resnet50 = calibrate_batchnorm(models.resnet50(weights=None), 64)
    swav_trunk = {k: v for k, v in resnet50.state_dict().items() if not k.startswith("fc.")}
    state_dicts = {
        "alexnet": models.alexnet(weights=None).state_dict(),
        "inception": calibrate_batchnorm(models.inception_v3(weights=None, aux_logits=True, init_weights=False),
                                         96).state_dict(),
        "fid_inception": calibrate_batchnorm(build_fid_inception(), 96).state_dict(),
        "effnet": calibrate_batchnorm(models.efficientnet_b1(weights=None), 64).state_dict(),
        "swav": swav_trunk,
        "classifier": calibrate_batchnorm(models.get_model(TEST_CLASSIFIER_ARCH, weights=None), 64).state_dict(),
        "clip": open_clip.create_model(TINY_CLIP_ARCH, pretrained=None, load_weights=False).state_dict(),
    }
    files = {}
    for key, state_dict in state_dicts.items():
        files[key] = root / f"{key}.pth"
        torch.save(state_dict, files[key])
    return files


@pytest.fixture(scope="session")
def full_eval_config(metric_weight_files: dict[str, Path]) -> EvaluationConfig:
    """Every metric network configured, small pixel size, CPU."""
    return EvaluationConfig(weights=MetricWeightsConfig(**metric_weight_files),
                            classifier_arch=TEST_CLASSIFIER_ARCH, clip_arch=TINY_CLIP_ARCH, n_way=10, n_trials=200,
                            pixel_metric_px=64, batch_size=8, device="cpu", seed=0)

