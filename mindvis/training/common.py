"""Pieces every mindvis training shares: optimizer groups, the warm-up + cosine schedule, precision/placement of the
Lightning Trainer, throughput logging and the resume state kept outside a job's declared outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import LightningEnvironment
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn

from mindvis.config.runtime import TrainerConfig
from mindvis.errors import ConfigError

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best"  # best-by-validation weights beside last.ckpt (Lightning adds .ckpt)
RESUME_FINGERPRINT = "resume.json"
CHECKPOINT_SUBDIR = "checkpoints"


def weight_decay_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: biases and 1-D parameters (norms) without weight decay, the rest with it.

    Frozen parameters are left out. Same split as the reference (timm's add_weight_decay): the (1, 1, D)
    cls/mask tokens are decayed.
    """
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 or name.endswith(".bias") else decay).append(parameter)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def make_adamw(groups: Iterable[dict[str, Any]], lr: float, betas: tuple[float, float] = (0.9, 0.95)
               ) -> torch.optim.AdamW:
    """AdamW with PyTorch's fused kernel (one pass over all parameters; CPU and CUDA), else the foreach one."""
    groups = list(groups)
    params = [p for group in groups for p in group["params"]]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused, foreach=None if fused else True)


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier at optimizer step `step` (0-based).

    Linear warm-up from 0 over `warmup_steps`, then a half cosine from 1 down to `min_ratio` at `total_steps`
    (per iteration, as the reference's epoch-fraction schedule).
    """
    if step < warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def use_gpu(trainer_cfg: TrainerConfig) -> bool:
    """Whether the Trainer will run on GPUs (`auto` = when CUDA is available)."""
    if trainer_cfg.accelerator == "gpu":
        return True
    return trainer_cfg.accelerator == "auto" and torch.cuda.is_available()


def resolve_precision(trainer_cfg: TrainerConfig) -> str:
    """Lightning precision string: `auto` = bf16-mixed on GPU (fp32 where the GPU lacks bf16), 32-true on CPU."""
    if trainer_cfg.precision != "auto":
        return "32-true" if trainer_cfg.precision == "32" else trainer_cfg.precision
    if use_gpu(trainer_cfg):
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    return "32-true"


def batch_length(batch: Any) -> int:
    """Samples in a batch: the first dimension of a tensor batch, or of the first tensor in a dict / sequence batch."""
    if isinstance(batch, torch.Tensor):
        return len(batch)
    values = batch.values() if isinstance(batch, Mapping) else batch
    return next(len(v) for v in values if isinstance(v, torch.Tensor))


class ThroughputMonitor(pl.Callback):
    """Logs `train/samples_per_s` (all processes together) every `every_n_steps` optimizer steps."""

    def __init__(self, every_n_steps: int) -> None:
        self.every_n_steps = max(1, every_n_steps)
        self._since: float | None = None
        self._samples = 0

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int
                             ) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._samples += batch_length(batch) * trainer.world_size
        if trainer.global_step % self.every_n_steps == 0 and self._since is not None:
            elapsed = time.perf_counter() - self._since
            if elapsed > 0:
                module.log("train/samples_per_s", self._samples / elapsed, rank_zero_only=True)
            self._since, self._samples = time.perf_counter(), 0


def cluster_plugins(trainer_cfg: TrainerConfig) -> list[Any]:
    """Cluster environment for the Trainer.

    The Snakemake SLURM executor runs every job as a single-task job step (`srun -n1`). Lightning would then take
    SLURM's one task as the whole world and train on one device; with one node, letting Lightning launch its own
    `devices` processes (LightningEnvironment) uses every allocated device instead.
    """
    if trainer_cfg.world_size > 1 and trainer_cfg.num_nodes == 1 and os.environ.get("SLURM_NTASKS", "1") == "1" \
            and "SLURM_JOB_ID" in os.environ:
        return [LightningEnvironment()]
    return []


def build_trainer(trainer_cfg: TrainerConfig, *, max_epochs: int, callbacks: list[pl.Callback], logger: Any,
                  log_every_n_steps: int, gradient_clip_val: float | None, default_root_dir: Path,
                  has_validation: bool, check_val_every_n_epoch: int = 1) -> pl.Trainer:
    """A Lightning Trainer placed by `trainer_cfg` (accelerator, devices, num_nodes, strategy, precision)."""
    return pl.Trainer(
        accelerator=trainer_cfg.accelerator,
        devices=trainer_cfg.devices,
        num_nodes=trainer_cfg.num_nodes,
        strategy=trainer_cfg.strategy,
        plugins=cluster_plugins(trainer_cfg) or None,
        precision=resolve_precision(trainer_cfg),
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=logger,
        log_every_n_steps=log_every_n_steps,
        gradient_clip_val=gradient_clip_val,
        gradient_clip_algorithm="norm",
        default_root_dir=str(default_root_dir),
        limit_val_batches=1.0 if has_validation else 0,
        check_val_every_n_epoch=check_val_every_n_epoch,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        benchmark=False,
    )


def fingerprint(settings: Mapping[str, Any]) -> str:
    """Stable short hash of a JSON-able description of a training job (its inputs and config)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_signature(path: str | os.PathLike[str]) -> list[list[Any]]:
    """[name, size, mtime_ns] of a file, or of every file under a directory: changes when an input is rewritten."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.exists()]


def checkpoint_dir(resume_dir: str | os.PathLike[str]) -> Path:
    """Where Lightning writes a job's resume checkpoints (last.ckpt, best.ckpt) inside its resume directory."""
    return Path(resume_dir) / CHECKPOINT_SUBDIR


def resume_checkpoint(resume_dir: str | os.PathLike[str], job_fingerprint: str) -> Path | None:
    """The Lightning checkpoint to resume from, if `resume_dir` holds one written by the same job.

    State written for other inputs or settings is discarded (with a warning), so a changed config starts afresh.
    Records `job_fingerprint` for the next call.
    """
    resume_dir = Path(resume_dir)
    record = resume_dir / RESUME_FINGERPRINT
    last = checkpoint_dir(resume_dir) / LAST_CHECKPOINT
    previous = None
    if record.is_file():
        try:
            previous = json.loads(record.read_text()).get("fingerprint")
        except (OSError, ValueError):
            previous = None
    if resume_dir.exists() and previous != job_fingerprint:
        if any(resume_dir.iterdir()):
            log.warning("%s: resume state of other settings or inputs found; starting afresh", resume_dir)
        clear_resume_state(resume_dir)
    resume_dir.mkdir(parents=True, exist_ok=True)
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps({"fingerprint": job_fingerprint}))
    os.replace(tmp, record)
    if last.is_file():
        log.info("resuming from %s", last)
        return last
    return None


def clear_resume_state(resume_dir: str | os.PathLike[str]) -> None:
    """Delete a job's resume state (after it finished, so that a forced rerun trains again from scratch)."""
    shutil.rmtree(resume_dir, ignore_errors=True)


def per_dataset(setting: int | Mapping[str, int], dataset_name: str, path: str, what: str) -> int:
    """The value of a setting at `path` for `dataset_name`: the number itself, or its entry in a mapping
    dataset -> value (a ConfigError naming `what`, e.g. "batch size", when the dataset has none)."""
    if isinstance(setting, int):
        return setting
    value = setting.get(dataset_name)
    if value is None:
        raise ConfigError(f"no {what} for this dataset", path=path, value=dataset_name,
                          expected=f"one of {sorted(setting)}", hint=f"add {dataset_name}: <{what}> under {path}")
    return value


def log_every_n_steps(run: Any, default: int) -> int:
    """How often a job logs metrics: its tracking config's value, `default` without a run."""
    return run.target.log_every_n_steps if run is not None else default


def training_callbacks(resume_dir: str | os.PathLike[str], every_n_steps: int, log_every: int,
                       best_by: tuple[str, str] | None = None) -> tuple[list[pl.Callback], ModelCheckpoint | None]:
    """Resume checkpointing (last.ckpt every `every_n_steps` steps, written atomically by Lightning), throughput
    logging and, with `best_by` = (validation metric, "min" | "max"), the best weights by that metric (best.ckpt);
    checkpoints go under checkpoint_dir(resume_dir). Returns (callbacks, the best-weights callback or None)."""
    callbacks: list[pl.Callback] = [
        ModelCheckpoint(dirpath=checkpoint_dir(resume_dir), save_top_k=0, save_last=True,
                        every_n_train_steps=every_n_steps, enable_version_counter=False),
        ThroughputMonitor(log_every),
    ]
    best = None
    if best_by is not None:
        monitor, mode = best_by
        best = ModelCheckpoint(dirpath=checkpoint_dir(resume_dir), filename=BEST_CHECKPOINT, monitor=monitor,
                               mode=mode, save_top_k=1, save_weights_only=True, enable_version_counter=False)
        callbacks.append(best)
    return callbacks, best


def callback_metric(trainer: pl.Trainer, name: str) -> float | None:
    """The last logged value of metric `name` as a float, None if it was never logged."""
    value = trainer.callback_metrics.get(name)
    return None if value is None else float(value)
