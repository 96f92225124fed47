"""config.yaml validation and preset resolution."""

from pathlib import Path

import pytest
import yaml

from mindvis.config import SCHEMA, load, resolve
from mindvis.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_is_valid_and_demo_by_default():
    cfg = load(ROOT / "config.yaml")
    assert cfg.demo and cfg.preset_name == "demo"
    assert cfg.raw_root == cfg.demo_data.root
    assert cfg.preprocess.image_size == 64


def test_real_data_mode_takes_paper_preset():
    cfg = resolve({"demo": False, "data_root": "/data"})
    assert cfg.preset_name == "paper" and cfg.preprocess.image_size == 256
    assert cfg.raw_root == Path("/data")


def test_user_values_beat_presets():
    assert resolve({"preprocess": {"image_size": 32}}).preprocess.image_size == 32


@pytest.mark.parametrize(
    ("raw", "key_path"),
    [
        ({"preprocess": {"hcp": {"window_frame": 10}}}, "preprocess.hcp"),  # typo in a nested key
        ({"preprocess": {"hcp": {"window_frames": "ten"}}}, "preprocess.hcp.window_frames"),
        ({"preprocess": {"hcp": {"window_frames": 0}}}, "preprocess.hcp.window_frames"),
        ({"datasets": ["GOD", "NSD"]}, "datasets.1"),
        ({"demo": "yes"}, "demo"),
        ({"resources": {"stage_a_pretrain": {"gpu": -1}}}, "resources.stage_a_pretrain.gpu"),
    ],
)
def test_invalid_config_names_the_key(raw, key_path):
    with pytest.raises(ConfigError) as err:
        resolve(raw)
    assert err.value.path == key_path
    assert key_path in str(err.value)


def test_unknown_top_level_key_lists_allowed_keys():
    with pytest.raises(ConfigError, match="unknown key") as err:
        resolve({"result_root": "x"})
    assert "results_root" in str(err.value)


def test_every_schema_key_is_documented_in_config_yaml():
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert set(shipped) == set(SCHEMA["properties"]), "config.yaml should show every top-level section"


def test_resources_fall_back_to_default_entry():
    cfg = resolve({"resources": {"default": {"mem_mb": 1234}, "stage_a_pretrain": {"gpu": 1}}})
    assert cfg.resources_for("preprocess_god").mem_mb == 1234
    assert cfg.resources_for("stage_a_pretrain").gpu == 1
