"""Metric networks from local weight files: early checks, loading, skipping, preprocessing, no network access."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from mindvis.config.evaluation import EvaluationConfig, MetricWeightsConfig
from mindvis.errors import ConfigError, WeightsError
from mindvis.evaluation.networks import (
    EXPECTED_FORMAT,
    IMAGENET_MEAN,
    IMAGENET_STD,
    AlexNetLayers,
    InceptionPools,
    check_weights,
    load_networks,
    make_preprocess,
    resolve_device,
)


def only(cfg: EvaluationConfig, **weights: Path | None) -> EvaluationConfig:
    """cfg with exactly the given weights configured."""
    return replace(cfg, weights=MetricWeightsConfig(**weights))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt to open a network connection (nothing may be downloaded)."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def images(n: int, size: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ early checks

def test_every_real_format_passes_the_early_check(metric_weight_files: dict[str, Path],
                                                  full_eval_config: EvaluationConfig, no_network: None) -> None:
    assert check_weights(full_eval_config) == metric_weight_files
    assert set(metric_weight_files) == set(EXPECTED_FORMAT)


def test_unconfigured_weights_pass_the_check_and_skip_their_metrics() -> None:
    cfg = EvaluationConfig()
    assert check_weights(cfg) == {}
    skipped = load_networks(cfg).skipped
    assert set(skipped) == {"alexnet2", "alexnet5", "inception", "clip", "effnet_dist", "swav_dist", "fid", "fid64",
                            "top1_nway_mean", "top1_nway_max"}
    assert skipped["clip"] == "evaluation.weights.clip is not configured (no clip weight file)"


def test_a_missing_file_fails_early_naming_key_path_expectation_and_hint(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "alexnet.pth"
    with pytest.raises(WeightsError) as error:
        check_weights(only(EvaluationConfig(), alexnet=missing))
    message = str(error.value)
    assert "evaluation.weights.alexnet" in message and str(missing) in message
    assert "torchvision alexnet state dict" in message and "never downloads" in message


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "effnet.pth"
    junk.write_text("<html>404 Not Found</html>")
    with pytest.raises(WeightsError, match="evaluation.weights.effnet: cannot read the weight file"):
        check_weights(only(EvaluationConfig(), effnet=junk))


def test_a_truncated_checkpoint_is_refused(metric_weight_files: dict[str, Path], tmp_path: Path) -> None:
    truncated = tmp_path / "swav.pth"
    truncated.write_bytes(metric_weight_files["swav"].read_bytes()[:100_000])
    with pytest.raises(WeightsError, match="cannot read"):
        check_weights(only(EvaluationConfig(), swav=truncated))


def test_weights_of_another_architecture_are_refused_with_the_mismatch(metric_weight_files: dict[str, Path]) -> None:
    with pytest.raises(WeightsError) as error:
        check_weights(only(EvaluationConfig(), alexnet=metric_weight_files["effnet"]))
    message = str(error.value)
    assert "evaluation.weights.alexnet: the file does not fit the architecture" in message
    assert "missing" in message and "unexpected" in message


def test_torchvision_inception_is_not_taken_for_the_fid_inception(metric_weight_files: dict[str, Path]) -> None:
    with pytest.raises(WeightsError, match="1000-class head") as error:
        check_weights(only(EvaluationConfig(), fid_inception=metric_weight_files["inception"]))
    assert "evaluation.weights.inception" in str(error.value)  # the hint says where it belongs


def test_a_pickled_model_object_is_refused_not_unpickled(tmp_path: Path) -> None:
    whole_model = tmp_path / "alexnet_model.pth"
    torch.save(torchvision.models.alexnet(weights=None), whole_model)
    with pytest.raises(WeightsError, match="cannot read") as error:
        check_weights(only(EvaluationConfig(), alexnet=whole_model))
    assert "state_dict()" in str(error.value)


def test_a_classifier_state_dict_of_the_wrong_named_architecture_is_refused(
        metric_weight_files: dict[str, Path]) -> None:
    cfg = replace(only(EvaluationConfig(), classifier=metric_weight_files["classifier"]), classifier_arch="resnet18")
    with pytest.raises(WeightsError, match=r"does not fit the architecture \(resnet18\)"):
        check_weights(cfg)


def test_unknown_architecture_names_are_config_errors(full_eval_config: EvaluationConfig) -> None:
    with pytest.raises(ConfigError, match="evaluation.classifier_arch"):
        check_weights(replace(full_eval_config, classifier_arch="vit_h_15"))
    with pytest.raises(ConfigError, match="evaluation.clip_arch"):
        check_weights(replace(full_eval_config, clip_arch="ViT-Q-99"))
    with pytest.raises(ConfigError, match="would be downloaded"):
        check_weights(replace(full_eval_config, clip_arch="hf-hub:laion/CLIP-ViT-L-14"))


def test_clip_weights_of_another_open_clip_architecture_are_refused(full_eval_config: EvaluationConfig) -> None:
    with pytest.raises(WeightsError, match=r"does not fit the architecture \(ViT-L-14-quickgelu\)"):
        check_weights(replace(full_eval_config, clip_arch="ViT-L-14-quickgelu"))


# ------------------------------------------------------------------------------------------ file formats

def test_swav_release_layout_loads_ignoring_its_heads(metric_weight_files: dict[str, Path], tmp_path: Path) -> None:
    trunk = torch.load(metric_weight_files["swav"], weights_only=True)
    release = {f"module.{k}": v for k, v in trunk.items()}
    release["module.projection_head.0.weight"] = torch.zeros(16, 2048)
    release["module.prototypes.weight"] = torch.zeros(30, 16)
    path = tmp_path / "swav_800ep_pretrain.pth.tar"
    torch.save(release, path)
    swav = load_networks(only(EvaluationConfig(device="cpu"), swav=path)).swav
    assert swav is not None
    torch.testing.assert_close(swav.module.module.conv1.weight, trunk["conv1.weight"])
    assert swav(images(2))["avgpool"].shape == (2, 2048)


def test_legacy_wrapped_and_safetensors_files_load(metric_weight_files: dict[str, Path], tmp_path: Path) -> None:
    state = torch.load(metric_weight_files["effnet"], weights_only=True)
    legacy = tmp_path / "legacy.pth"
    torch.save({"state_dict": state, "epoch": 3}, legacy, _use_new_zipfile_serialization=False)
    safetensors_file = tmp_path / "effnet.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(safetensors_file))
    for path in (legacy, safetensors_file):
        effnet = load_networks(only(EvaluationConfig(device="cpu"), effnet=path)).effnet
        torch.testing.assert_close(effnet.module.module.features[0][0].weight, state["features.0.0.weight"])


def test_vit_input_size_is_read_from_the_position_embedding() -> None:
    from mindvis.evaluation import networks

    # ViT-H/14 SWAG E2E: 37 x 37 patches + class token = 1370 tokens -> 518 px, built on the meta device.
    with torch.device("meta"):
        model = networks._build_classifier("vit_h_14", {"encoder.pos_embedding": torch.empty(1, 1370, 1280)})
    assert model.image_size == 518
    preprocess = networks._classifier_preprocess("vit_h_14", model)
    assert preprocess(torch.zeros(1, 3, 256, 256, dtype=torch.uint8)).shape == (1, 3, 518, 518)


# ------------------------------------------------------------------------------------ feature extraction

def test_alexnet_layers_are_features_4_and_features_11() -> None:
    alexnet = torchvision.models.alexnet(weights=None).eval()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        layers = AlexNetLayers(alexnet)(x)
        torch.testing.assert_close(layers["features.4"], alexnet.features[:5](x).flatten(1))
        torch.testing.assert_close(layers["features.11"], alexnet.features[:12](x).flatten(1))
    assert isinstance(alexnet.features[4], torch.nn.ReLU) and isinstance(alexnet.features[11], torch.nn.ReLU)


def test_inception_pools_are_torchvisions_avgpool_and_first_maxpool() -> None:
    inception = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
    captured = {}
    inception.avgpool.register_forward_hook(lambda m, i, o: captured.update(avgpool=o.flatten(1)))
    inception.maxpool1.register_forward_hook(lambda m, i, o: captured.update(maxpool1=o.mean(dim=(2, 3))))
    x = torch.rand(2, 3, 120, 120)
    with torch.no_grad():
        inception(x)
        pools = InceptionPools(inception)(x)
    torch.testing.assert_close(pools["pool2048"], captured["avgpool"])
    torch.testing.assert_close(pools["pool64"], captured["maxpool1"])


def test_signed_unit_input_equals_torchvisions_transform_input_on_imagenet_normalised_input() -> None:
    # Why the Inception metric feeds [-1, 1] with transform_input=False: it is what torchvision's pretrained
    # Inception computes from ImageNet-normalised input with transform_input=True.
    from mindvis.evaluation.networks import _signed_unit_preprocess

    batch = torch.from_numpy(images(2)).permute(0, 3, 1, 2)
    reference = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False,
                                                transform_input=True)
    imagenet = make_preprocess(342, IMAGENET_MEAN, IMAGENET_STD)(batch)
    torch.testing.assert_close(reference._transform_input(imagenet), _signed_unit_preprocess(342)(batch))


def test_make_preprocess_resizes_crops_and_normalises() -> None:
    white = torch.full((1, 3, 20, 40), 255, dtype=torch.uint8)
    out = make_preprocess(30, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), crop_px=24)(white)
    assert out.shape == (1, 3, 24, 24)
    torch.testing.assert_close(out, torch.full_like(out, 2.0))


def test_loaded_networks_are_frozen_and_give_features_of_the_papers_sizes(
        full_eval_config: EvaluationConfig, no_network: None) -> None:
    networks = load_networks(full_eval_config)
    assert networks.skipped == {}
    batch = images(3)
    dims = {
        "alexnet": {"features.4": 192 * 31 * 31, "features.11": 256 * 15 * 15},  # 256 px input
        "inception": {"pool64": 64, "pool2048": 2048},
        "fid_inception": {"pool64": 64, "pool2048": 2048},
        "clip": {"embedding": 32},  # the tiny test architecture's embed_dim (ViT-L-14: 768)
        "effnet": {"avgpool": 1280},
        "swav": {"avgpool": 2048},
    }
    for name, expected in dims.items():
        network = getattr(networks, name)
        assert not any(p.requires_grad for p in network.module.parameters())
        assert not network.module.training
        features = network(batch)
        assert {layer: f.shape[1] for layer, f in features.items()} == expected, name
        assert all(f.shape[0] == 3 and np.isfinite(f).all() for f in features.values())
    probabilities = networks.classifier.probabilities(batch)
    assert probabilities.shape == (3, 1000)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_fid_falls_back_to_torchvision_inception_when_fid_weights_are_absent(
        full_eval_config: EvaluationConfig) -> None:
    cfg = only(full_eval_config, inception=full_eval_config.weights.inception)
    networks = load_networks(cfg)
    assert networks.fid_network is networks.inception
    assert "fid" not in networks.skipped and "fid64" not in networks.skipped


def test_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="evaluation.device"):
        resolve_device("warp-drive")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no GPU"):
            resolve_device("cuda")


@pytest.mark.slow
def test_the_real_vit_l_14_architecture_loads_from_an_open_clip_checkpoint(tmp_path: Path, no_network: None) -> None:
    import open_clip

    model = open_clip.create_model("ViT-L-14-quickgelu", pretrained=None, load_weights=False).eval()  # ~1.7 GB
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), path)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    grey = torch.full((1, 3, 224, 224), 128 / 255)
    with torch.no_grad():
        expected = model.encode_image((grey - mean) / std).numpy()
    del model
    cfg = only(EvaluationConfig(device="cpu", batch_size=1), clip=path)
    check_weights(cfg)
    embedding = load_networks(cfg).clip(np.full((1, 224, 224, 3), 128, np.uint8))["embedding"]
    assert embedding.shape == (1, 768)
    np.testing.assert_allclose(embedding, expected, rtol=1e-4, atol=1e-5)
