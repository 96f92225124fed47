"""Shipped demo weights: used only while they fit the config's recipe and the demo generator; remade by their rules."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from mindvis import plan
from mindvis.config import load, resolve
from mindvis.demo import images, pretrained

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "demo" / "pretrained"


def fake_shipped(root: Path, cfg) -> Path:
    """A demo_data.pretrained directory whose recipes are exactly those `cfg` gives (weights are not read here)."""
    arch = cfg.stage_b.architecture
    (root / "ldm").mkdir(parents=True)
    (root / "ldm" / pretrained.RECIPE_FILE).write_text(json.dumps(
        {"recipe": pretrained.ldm_recipe(cfg.demo_data, arch, cfg.stage_b.ldm_pretrain)}))
    (root / "classifier").mkdir()
    (root / "classifier" / pretrained.CLASSIFIER_CONFIG).write_text(json.dumps({"recipe": pretrained.classifier_recipe(
        cfg.demo_data, cfg.preprocess.image_size, cfg.evaluation.demo_classifier)}))
    return root


def demo_config(shipped: Path, **sections) -> object:
    return resolve({"demo_data": {"pretrained": str(shipped)}, **sections})


def test_matching_shipped_weights_replace_the_training_rules(tmp_path):
    shipped = fake_shipped(tmp_path / "pretrained", demo_config(tmp_path / "pretrained"))
    plan._shipped.cache_clear()
    cfg = demo_config(shipped)
    assert not plan.trains_demo_ldm(cfg) and not plan.trains_demo_classifier(cfg)
    assert plan.pretrained_ldm(cfg) == [str(shipped / "ldm" / "model.ckpt")]
    assert plan.ldm_class_index(cfg) == [str(shipped / "ldm" / "class_index.json")]
    assert plan.n_way_classifier(cfg) == [str(shipped / "classifier" / "model.safetensors")]


@pytest.mark.parametrize(("change", "kind", "key"), [
    ({"stage_b": {"ldm_pretrain": {"vq_epochs": 1}}}, "ldm", "ldm_pretrain.vq_epochs"),
    ({"stage_b": {"architecture": {"model_channels": 32}}}, "ldm", "architecture.model_channels"),
    ({"evaluation": {"demo_classifier": {"epochs": 2}}}, "classifier", "demo_classifier.epochs"),
    ({"preprocess": {"image_size": 32}}, "classifier", "image_size"),
])
def test_another_recipe_trains_through_the_rules_and_says_which_key_differs(tmp_path, caplog, change, kind, key):
    shipped = fake_shipped(tmp_path / "pretrained", demo_config(tmp_path / "pretrained"))
    plan._shipped.cache_clear()
    cfg = demo_config(shipped, **change)
    with caplog.at_level(logging.WARNING):
        trains = plan.trains_demo_ldm(cfg) if kind == "ldm" else plan.trains_demo_classifier(cfg)
    assert trains
    assert key in caplog.text and "make demo-pretrains" in caplog.text
    if kind == "ldm":
        assert plan.pretrained_ldm(cfg) == [str(Path(cfg.results_root, "ldm_pretrain", "model.ckpt"))]


def test_a_changed_generator_or_demo_seed_invalidates_the_shipped_weights(tmp_path, monkeypatch):
    shipped = fake_shipped(tmp_path / "pretrained", demo_config(tmp_path / "pretrained"))
    plan._shipped.cache_clear()
    assert plan.trains_demo_ldm(demo_config(shipped, demo_data={"pretrained": str(shipped), "seed": 1}))
    plan._shipped.cache_clear()
    monkeypatch.setattr(pretrained, "GENERATOR_VERSION", images.GENERATOR_VERSION + 1)
    assert plan.trains_demo_ldm(demo_config(shipped)) and plan.trains_demo_classifier(demo_config(shipped))


def test_null_pretrained_or_real_data_never_use_shipped_weights(tmp_path):
    shipped = fake_shipped(tmp_path / "pretrained", demo_config(tmp_path / "pretrained"))
    plan._shipped.cache_clear()
    assert plan.trains_demo_ldm(resolve({"demo_data": {"pretrained": None}}))
    assert plan.shipped_demo_ldm(resolve({"demo": False, "demo_data": {"pretrained": str(shipped)}})) is None


@pytest.mark.skipif(not (SHIPPED / "ldm" / pretrained.RECIPE_FILE).is_file(), reason="no shipped demo weights")
def test_shipped_weights_fit_the_default_config_and_the_generator_still_draws_what_they_learned():
    """Fails when the demo generator's drawing changes without a GENERATOR_VERSION bump (the shipped weights would
    look current), or when config.yaml's recipe drifts from the shipped one without `make demo-pretrains`."""
    plan._shipped.cache_clear()
    cfg = load(ROOT / "config.yaml")
    cfg = resolve({**cfg.as_dict(), "demo_data": {**cfg.as_dict()["demo_data"], "pretrained": str(SHIPPED)}})
    record = json.loads((SHIPPED / "ldm" / pretrained.RECIPE_FILE).read_text())
    probe = pretrained.generator_probe(cfg.demo_data, record["recipe"]["architecture"]["image_size"])
    np.testing.assert_allclose(probe, record["generator_probe"], atol=0.01)
    assert plan.shipped_demo_ldm(cfg) is not None and plan.shipped_demo_classifier(cfg) is not None
