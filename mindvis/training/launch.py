"""Start a training entry point on every process of a multi-process (multi-node) SLURM job.

The Snakemake SLURM executor starts a job's script once. On one node Lightning then launches its own processes
(mindvis.training.runner.cluster_plugins); across nodes every process must be a SLURM task. With
`trainer.launcher: srun` (the default when `trainer.num_nodes > 1`) the training rules ask SLURM for
`devices` tasks on each of `num_nodes` nodes, and `launch` re-runs the entry point as
`srun python -m mindvis.training.launch <spec.json>`: each task rebuilds the call from the spec, Lightning's SLURM
environment wires the ranks together, and rank 0 logs into the job's MLflow run and writes the summary the job
script gets back.

    summary = launch(train_stage_a_pretrain, {"inputs": [...], ...}, cfg.trainer, run, spec_dir=shared_dir)
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mindvis.config.build import build, to_dict
from mindvis.config.runtime import TrainerConfig
from mindvis.errors import ConfigError

log = logging.getLogger(__name__)

def _encode(value: Any) -> Any:
    """JSON form of an argument: config dataclasses keep their class, paths become strings."""
    if dataclasses.is_dataclass(value):
        cls = type(value)
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}", "value": to_dict(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "__dataclass__" in value:
        module, name = value["__dataclass__"].split(":")
        return build(getattr(importlib.import_module(module), name), value["value"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _function(path: str) -> Callable[..., Any]:
    module, name = path.split(":")
    if not module.startswith("mindvis."):
        raise ValueError(f"launch spec names {path!r}: only mindvis entry points are launched")
    return getattr(importlib.import_module(module), name)


def srun_command(trainer: TrainerConfig, spec: Path) -> list[str]:
    """The srun call that starts one task per device on every node of the current allocation."""
    return ["srun", f"--nodes={trainer.num_nodes}", f"--ntasks-per-node={trainer.devices}",
            f"--ntasks={trainer.world_size}", "--kill-on-bad-exit=1", sys.executable, "-m", "mindvis.training.launch",
            str(spec)]


def launch(function: Callable[..., dict[str, Any]], kwargs: dict[str, Any], trainer: TrainerConfig,
           run: Any = None, spec_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Call `function(**kwargs, trainer_cfg=trainer, run=run)`, on every SLURM task when trainer.uses_srun.

    `spec_dir` must be on a filesystem all nodes share (e.g. <results_root>/.launch): the call's description
    and the summary travel through it.

    Raises:
        ConfigError: srun launching was asked for outside a SLURM job.
    """
    if not trainer.uses_srun:
        return function(**kwargs, trainer_cfg=trainer, run=run)
    if "SLURM_JOB_ID" not in os.environ:
        raise ConfigError("multi-node training needs a SLURM allocation", path="trainer.launcher",
                          value=f"launcher={trainer.launcher}, num_nodes={trainer.num_nodes}",
                          expected="a job submitted with --profile profiles/slurm",
                          hint="run on the cluster, or set trainer.num_nodes: 1 (and launcher: auto) locally")
    shared = Path(spec_dir) if spec_dir is not None else Path.cwd()
    shared.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".launch-", dir=shared) as tmp:
        spec = Path(tmp) / "spec.json"
        summary = Path(tmp) / "summary.json"
        spec.write_text(json.dumps({
            "function": f"{function.__module__}:{function.__name__}",
            "kwargs": {k: _encode(v) for k, v in kwargs.items()},
            "trainer": _encode(trainer),
            "run": None if run is None else {"uri": run.target.uri, "experiment": run.target.experiment,
                                             "run_id": run.run_id, "log_every_n_steps": run.target.log_every_n_steps},
            "summary": str(summary),
        }))
        command = srun_command(trainer, spec)
        log.info("starting %d training processes: %s", trainer.world_size, " ".join(command))
        subprocess.run(command, check=True)
        return json.loads(summary.read_text())


def _run_task(spec_path: Path) -> None:
    """One SLURM task: rebuild the call; rank 0 logs to the job's MLflow run and writes the summary."""
    spec = json.loads(spec_path.read_text())
    rank = int(os.environ.get("SLURM_PROCID", "0"))
    run = None
    if rank == 0 and spec["run"] is not None:
        from mindvis.tracking import JobRun, TrackingTarget

        info = spec["run"]
        target = TrackingTarget(info["uri"], info["experiment"], None, Path("."), info["log_every_n_steps"])
        run = JobRun(target, info["run_id"])
    kwargs = {k: _decode(v) for k, v in spec["kwargs"].items()}
    summary = _function(spec["function"])(**kwargs, trainer_cfg=_decode(spec["trainer"]), run=run)
    if rank == 0:
        Path(spec["summary"]).write_text(json.dumps(summary, default=str))


if __name__ == "__main__":
    from mindvis.logs import setup_logging

    setup_logging(None)
    _run_task(Path(sys.argv[1]))
