"""The restricted unpickler: release files load as data, anything else is refused without running."""

import os
import pickle
import shutil
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from mindvis.checkpoints.safe_pickle import ReferenceConfig, disallowed_globals, load_release_checkpoint
from mindvis.errors import CheckpointError, UnsafePickleError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "release"


class RunsAShellCommand:
    """Unpickling this calls os.system(command): what a hostile checkpoint would do."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_release_checkpoint_loads_with_its_config_as_data():
    checkpoint = load_release_checkpoint(FIXTURES / "stage_a" / "checkpoint.pth")
    assert sorted(checkpoint) == ["config", "epoch", "model", "optimizer", "scaler"]
    config = checkpoint["config"]
    assert isinstance(config, ReferenceConfig) and isinstance(config, dict)
    assert config.class_name == "config.Config_MBM_fMRI"
    assert config["embed_dim"] == 64 and config.num_heads == 4 and config["focus_range"] is None
    assert checkpoint["model"]["pos_embed"].shape == (1, 129, 64)
    assert "config" not in sys.modules or not hasattr(sys.modules["config"], "Config_MBM_fMRI")


def test_stage_b_checkpoint_with_rng_state_loads():
    checkpoint = load_release_checkpoint(FIXTURES / "stage_b" / "finetuned.pth")
    assert checkpoint["config"].class_name == "config.Config_Generative_Model"
    assert checkpoint["config"]["kam_subs"] == ["sbj_3"]
    assert checkpoint["state"].dtype == torch.uint8


def test_stand_in_config_class_pickled_by_module_config(tmp_path, reference_config):
    path = tmp_path / "checkpoint.pth"
    config = reference_config.Config_MBM_fMRI(embed_dim=8, extra=[1, 2], nested={"a": (1.5, None)})
    torch.save({"model": OrderedDict(w=torch.ones(2)), "config": config, "epoch": 3}, path)
    loaded = load_release_checkpoint(path)
    assert loaded["config"] == {"lr": 2.5e-4, "patch_size": 16, "mlp_ratio": 1.0, "embed_dim": 8,
                                "extra": [1, 2], "nested": {"a": (1.5, None)}}
    assert type(loaded["config"]) is not reference_config.Config_MBM_fMRI


def test_numpy_scalars_and_arrays_are_allowed(tmp_path):
    import numpy as np

    path = tmp_path / "numpy.pth"
    torch.save({"loss": np.float64(0.5), "ids": np.arange(4), "scaler": {"scale": 65536.0}}, path)
    loaded = load_release_checkpoint(path)
    assert loaded["loss"] == 0.5 and loaded["ids"].tolist() == [0, 1, 2, 3]


def test_config_class_outside_the_allow_list_is_refused(tmp_path, reference_config):
    path = tmp_path / "checkpoint.pth"
    torch.save({"config": reference_config.NotAConfig()}, path)
    with pytest.raises(UnsafePickleError) as error:
        load_release_checkpoint(path)
    assert "config.NotAConfig" in str(error.value) and str(path) in str(error.value)


def test_malicious_torch_checkpoint_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": OrderedDict(), "config": RunsAShellCommand(f"touch {marker}")}, path)
    with pytest.raises(UnsafePickleError) as error:
        load_release_checkpoint(path)
    assert "system" in str(error.value)
    assert not marker.exists()


def test_pickle_protocol_torch_cannot_scan_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"config": RunsAShellCommand(f"touch {marker}")}, path, pickle_protocol=4)  # FRAME opcodes
    with pytest.raises(CheckpointError) as error:
        load_release_checkpoint(path)
    assert "restricted reader" in str(error.value) and "protocol" in str(error.value)
    assert not marker.exists()


def test_malicious_plain_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(RunsAShellCommand(f"touch {marker}"), protocol=2))
    with pytest.raises(UnsafePickleError) as error:  # no zip archive to scan: the restricted unpickler refuses it
        load_release_checkpoint(path)
    assert "system" in str(error.value) and str(path) in str(error.value)
    assert not marker.exists()


def test_truncated_and_missing_files_are_checkpoint_errors(tmp_path):
    path = tmp_path / "cut.pth"
    data = (FIXTURES / "stage_a" / "model_state_dict.pt").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as error:
        load_release_checkpoint(path)
    assert not isinstance(error.value, UnsafePickleError) and str(path) in str(error.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_release_checkpoint(tmp_path / "absent.pth")


def test_scan_passes_release_files_and_names_foreign_globals(tmp_path, reference_config):
    shutil.copy(FIXTURES / "stage_a" / "checkpoint.pth", tmp_path / "c.pth")
    assert disallowed_globals(tmp_path / "c.pth") == []
    torch.save({"config": reference_config.NotAConfig(), "run": RunsAShellCommand("true")}, tmp_path / "e.pth")
    assert disallowed_globals(tmp_path / "e.pth") == sorted(["config.NotAConfig", f"{os.system.__module__}.system"])
