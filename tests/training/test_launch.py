"""The multi-process launcher: how training processes start under SLURM, and how a call survives the trip."""

import json
from pathlib import Path

import pytest

from mindvis.config import resolve
from mindvis.config.runtime import TrainerConfig
from mindvis.errors import ConfigError
from mindvis.plan import training_resources
from mindvis.training import launch as launcher


def test_one_node_needs_no_srun_and_several_nodes_do():
    assert not TrainerConfig(devices=4).uses_srun
    assert TrainerConfig(devices=4, num_nodes=2).uses_srun
    assert TrainerConfig(devices=2, launcher="srun").uses_srun
    assert not TrainerConfig(devices=1, launcher="srun").uses_srun  # one process: nothing to launch


def test_multi_node_gpu_training_asks_for_one_task_per_gpu_on_every_node():
    cfg = resolve({"trainer": {"devices": 4, "num_nodes": 2},
                   "resources": {"stage_a_pretrain": {"gpu": 1, "gpu_model": "a100"}}})
    res = training_resources(cfg, "stage_a_pretrain")
    assert (res["gpu"], res["nodes"], res["tasks_per_node"], res["tasks_per_gpu"], res["mpi"]) == (8, 2, 4, 1, "srun")
    single = training_resources(resolve({"trainer": {"devices": 4},
                                         "resources": {"stage_a_pretrain": {"gpu": 1}}}), "stage_a_pretrain")
    assert single["gpu"] == 4 and "mpi" not in single and "nodes" not in single


def test_srun_command_covers_every_device_of_every_node(tmp_path):
    command = launcher.srun_command(TrainerConfig(devices=4, num_nodes=3), tmp_path / "spec.json")
    assert command[:4] == ["srun", "--nodes=3", "--ntasks-per-node=4", "--ntasks=12"]
    assert command[-3:] == ["-m", "mindvis.training.launch", str(tmp_path / "spec.json")]


def test_srun_outside_slurm_is_a_clear_config_error(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(ConfigError, match="SLURM"):
        launcher.launch(lambda **kw: {}, {}, TrainerConfig(devices=2, num_nodes=2))


def record_call(out: str, cfg, trainer_cfg, run=None) -> dict:
    """A stand-in entry point (module-level, so a spec can name it): records what it was called with."""
    Path(out).write_text(json.dumps({"cfg": type(cfg).__name__, "epochs": cfg.pretrain.epochs,
                                     "devices": trainer_cfg.devices, "run": run}))
    return {"ok": 1}


def test_a_task_rebuilds_typed_arguments_from_the_spec(tmp_path, monkeypatch):
    cfg = resolve({})
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({
        "function": "tests.training.test_launch:record_call",
        "kwargs": {"out": str(tmp_path / "called.json"), "cfg": launcher._encode(cfg.stage_a)},
        "trainer": launcher._encode(TrainerConfig(devices=3)), "run": None, "summary": str(tmp_path / "s.json")}))
    monkeypatch.setattr(launcher, "_function", lambda path: record_call)
    monkeypatch.setenv("SLURM_PROCID", "0")
    launcher._run_task(spec)
    called = json.loads((tmp_path / "called.json").read_text())
    assert called == {"cfg": "StageAConfig", "epochs": cfg.stage_a.pretrain.epochs, "devices": 3, "run": None}
    assert json.loads((tmp_path / "s.json").read_text()) == {"ok": 1}


def test_only_mindvis_entry_points_are_launched():
    with pytest.raises(ValueError):
        launcher._function("os:system")
