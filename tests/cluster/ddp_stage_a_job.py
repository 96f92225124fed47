"""A Stage A pretraining job on 2 CPU processes (Lightning DDP over gloo), set up like the workflow's job:
`mindvis.workflow.job` opens the MLflow run and `train_stage_a_pretrain` trains. Run by test_ddp.py as

    python ddp_stage_a_job.py <results_root> <report_dir> <subject_dir>...

Lightning starts this same script again for rank 1. Every process records, in <report_dir>, a digest of its final
weights (rank<N>.json) and every checkpoint or model file it writes (writes.jsonl), so the test can check that the
ranks agree and that only rank 0 writes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from mindvis import plan
from mindvis.config import resolve
from mindvis.training import stage_a
from mindvis.workflow import job

results_root, report_dir = Path(sys.argv[1]), Path(sys.argv[2])
subject_dirs = sys.argv[3:]


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def record_write(what: str, path: Any) -> None:
    with open(report_dir / "writes.jsonl", "a") as log:
        log.write(json.dumps({"rank": rank(), "what": what, "path": str(path)}) + "\n")


def recording(what: str, function: Any, path_arg: int) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        record_write(what, args[path_arg])
        return function(*args, **kwargs)
    return wrapper


def record_final_weights(system: stage_a.MaskedBrainModelingSystem) -> None:
    digest = hashlib.sha256()
    for name, tensor in sorted(system.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    report = {"rank": system.global_rank, "world_size": system.trainer.world_size,
              "global_step": system.trainer.global_step, "weights": digest.hexdigest()}
    (report_dir / f"rank{system.global_rank}.json").write_text(json.dumps(report))


stage_a.save_mbm = recording("model", stage_a.save_mbm, path_arg=1)
TorchCheckpointIO.save_checkpoint = recording("checkpoint", TorchCheckpointIO.save_checkpoint, path_arg=2)
stage_a.MaskedBrainModelingSystem.on_train_end = record_final_weights

config = {
    "demo": True,
    "results_root": str(results_root),
    "stage_a": {"pretrain": {"epochs": 2, "batch_size": 8, "val_fraction": 0.1, "checkpoint_every_n_steps": 2,
                             "include_god_train": False}},
    "trainer": {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "num_workers": 0},
}
config_slice = plan.job_params(resolve(config), "stage_a_pretrain")  # what the rule's params carry
smk = SimpleNamespace(log=[str(results_root / "logs" / "stage_a_pretrain.log")], config=config,
                      params=SimpleNamespace(config_slice=config_slice), rule="stage_a_pretrain", wildcards={})
with job(smk) as (cfg, run):
    stage_a.train_stage_a_pretrain({"HCP": subject_dirs}, results_root / "stage_a" / "pretrain", cfg.stage_a,
                                   cfg.trainer, results_root / ".resume" / "stage_a_pretrain", run=run)
