"""config.yaml validation and preset resolution."""

import copy
import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import yaml

from mindvis.config import PRESETS, SCHEMA, Config, load, read_command_line, resolve
from mindvis.config.build import build_partial, to_dict
from mindvis.config.data import HcpPreprocessConfig
from mindvis.config.stage_a import MbmModelConfig
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
    # one number where the demo preset has one per dataset replaces the whole mapping
    assert resolve({"demo": True}).stage_b.training.epochs == {"GOD": 5, "BOLD5000": 20, "NSD": 6}
    assert resolve({"demo": True, "stage_b": {"training": {"epochs": 7}}}).stage_b.training.epochs == 7


@pytest.mark.parametrize(
    ("raw", "key_path"),
    [
        ({"preprocess": {"hcp": {"window_frame": 10}}}, "preprocess.hcp"),  # typo in a nested key
        ({"preprocess": {"hcp": {"window_frames": "ten"}}}, "preprocess.hcp.window_frames"),
        ({"preprocess": {"hcp": {"window_frames": 0}}}, "preprocess.hcp.window_frames"),
        ({"datasets": ["GOD", "THINGS"]}, "datasets.1"),
        ({"demo": "yes"}, "demo"),
        ({"resources": {"stage_a_pretrain": {"gpu": -1}}}, "resources.stage_a_pretrain.gpu"),
    ],
)
def test_invalid_config_names_the_key(raw, key_path):
    with pytest.raises(ConfigError) as err:
        resolve(raw)
    assert err.value.path == key_path
    assert key_path in str(err.value)


def test_attribute_dropout_without_attributes_is_refused():
    raw = {"stage_b": {"ldm_pretrain": {"class_embedding": "per_class", "attribute_dropout": 0.25}}}
    with pytest.raises(ConfigError, match="attribute_dropout needs a composed class embedding") as error:
        resolve(raw)
    assert "class_embedding: attributes" in str(error.value)


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


# --------------------------------------------------------------------------------- snakemake --config values

def test_command_line_text_is_read_as_yaml_where_the_key_takes_no_text():
    # what Snakemake's --config parser hands over for: demo=false seed=1 'evaluation={n_trials: 500, ...}' ...
    given = {"demo": "false", "seed": 1, "evaluation": {"n_trials": "500", "weights": {"clip": "null"}},
             "trainer": {"devices": "2", "precision": "32"}, "stage_a": {"pretrain": {"lr": "1e-3"}},
             "stage_b": {"training": {"batch_size": {"GOD": "5"}}, "architecture": {"channel_mult": ["1", "2"]}},
             "subjects": {"HCP": ["100206"]}, "datasets": "[GOD, HCP]"}
    values = read_command_line(given)
    assert values["demo"] is False and values["seed"] == 1
    assert values["evaluation"] == {"n_trials": 500, "weights": {"clip": None}}
    assert values["trainer"] == {"devices": 2, "precision": "32"}  # "32" is one of precision's names
    assert values["stage_a"]["pretrain"]["lr"] == 0.001  # YAML 1.1 leaves 1e-3 as text; the key wants a number
    assert values["stage_b"] == {"training": {"batch_size": {"GOD": 5}}, "architecture": {"channel_mult": [1, 2]}}
    assert values["subjects"] == {"HCP": ["100206"]}  # subject IDs are text
    assert values["datasets"] == ["GOD", "HCP"]
    cfg = resolve(values)
    assert not cfg.demo and cfg.evaluation.n_trials == 500 and cfg.trainer.devices == 2


@pytest.mark.parametrize("text", ["false", "False", "FALSE", "no", "off"])
def test_command_line_booleans_in_any_yaml_spelling(text):
    assert read_command_line({"demo": text}) == {"demo": False}


def test_command_line_values_that_stay_wrong_are_still_refused_by_the_schema():
    with pytest.raises(ConfigError, match="evaluation.n_trials") as err:
        resolve(read_command_line({"evaluation": {"n_trials": "many"}}))
    assert err.value.value == "many"
    with pytest.raises(ConfigError, match="unknown key"):
        resolve(read_command_line({"evaluation": {"n_trial": "5"}}))


# ------------------------------------------------------------------------------------- partial (job) configs

def test_a_partial_config_carries_given_values_and_refuses_the_others():
    cfg = build_partial(Config, {"demo": True, "demo_data": {"root": "x"},
                                 "preprocess": {"hcp": to_dict(HcpPreprocessConfig(window_frames=8))}})
    assert cfg.raw_root == Path("x")  # properties work on what is carried
    assert cfg.preprocess.hcp == HcpPreprocessConfig(window_frames=8)
    assert to_dict(cfg) == {"demo": True, "demo_data": {"root": "x"},
                            "preprocess": {"hcp": to_dict(HcpPreprocessConfig(window_frames=8))}}
    for use in (lambda: cfg.seed + 1, lambda: bool(cfg.preprocess.image_size), lambda: cfg.stage_a.model,
                lambda: Path(cfg.data_root), lambda: f"{cfg.seed}", lambda: cfg.preprocess.god.roi == "VC",
                lambda: list(cfg.datasets)):
        with pytest.raises(ConfigError, match="params do not carry") as err:
            use()
        assert "JOB_READS" in err.value.hint


def test_a_partial_config_survives_pickle_copy_and_fingerprints():
    cfg = build_partial(Config, {"stage_a": {"model": to_dict(MbmModelConfig(patch_size=16))}})
    again = pickle.loads(pickle.dumps(cfg))
    assert again.stage_a.model.patch_size == 16
    assert copy.deepcopy(cfg).stage_a.model == cfg.stage_a.model
    text = json.dumps(dataclasses.asdict(cfg.stage_a), default=str)  # resume fingerprints hash this
    assert "stage_a.finetune: not carried" in text


def _assert_filled(node, table: dict, where: tuple[str, ...]) -> None:
    """Every key a preset table names is set on the resolved config `node` (dict values are values, e.g. per
    dataset, unless the config has a section there)."""
    for key, value in table.items():
        child = getattr(node, key)
        assert child is not None, where + (key,)
        if isinstance(value, dict) and dataclasses.is_dataclass(child):
            _assert_filled(child, value, where + (key,))


@pytest.mark.parametrize("preset", ["demo", "paper"])
def test_every_preset_key_is_concrete_after_load(preset):
    cfg = resolve({"preset": preset, "demo": preset == "demo"})
    for section, presets in PRESETS.items():
        node = cfg
        for key in section:
            node = getattr(node, key)
        _assert_filled(node, presets[preset], section)
    # and the keys derived from others: no code falls back at use time
    sampling, training = cfg.stage_b.sampling, cfg.stage_b.training
    assert sampling.steps == (20 if preset == "demo" else 250)
    assert training.unet_learning_rate == (1e-5 if preset == "demo" else training.learning_rate)


def test_derived_keys_follow_the_users_choice():
    cfg = resolve({"demo": False, "stage_b": {"sampling": {"scheduler": "dpmpp"}, "training": {"learning_rate": 2e-4}}})
    assert cfg.stage_b.sampling.steps == 25 and cfg.stage_b.training.unet_learning_rate == 2e-4
