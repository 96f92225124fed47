"""The one way mindvis trains: `train(system, data, plan, trainer_cfg, run)`.

Every training (A1, A2, Stage B, the demo LDM's two phases, the demo classifier) is a LightningModule with its data
and a `FitPlan`; this module does the rest in the same order for all of them: resume checkpointing + throughput
callbacks (+ the best weights by a validation metric) -> a Trainer placed by `trainer` -> resume from the job's own
state -> fit -> restore the best weights -> on rank 0: move to CPU, export, log the summary, drop the resume state.

Resume state lives in the job's `resume_dir`, outside its declared outputs, fingerprinted by the job's inputs and
settings (`FitPlan.job`): a killed job rerun with the same ones continues from its last checkpoint, a changed job
starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import LightningEnvironment
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from mindvis.config.runtime import TrainerConfig

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best"  # best-by-validation weights beside last.ckpt (Lightning adds .ckpt)
RESUME_FINGERPRINT = "resume.json"
CHECKPOINT_SUBDIR = "checkpoints"
DEFAULT_LOG_EVERY_N_STEPS = 50  # without a tracking run (which brings its own)


@dataclass(frozen=True)
class BestWeights:
    """Keep the weights with the best value of a validation metric (needs validation data): `mode` "min" | "max".
    The summary reports the value as `best_<metric with / as _>` (None when none was kept)."""

    metric: str
    mode: str
    keep: bool = True  # False: still report the key (None), keep the last weights

    @property
    def summary_key(self) -> str:
        return "best_" + self.metric.replace("/", "_")


@dataclass(frozen=True)
class FitPlan:
    """How one training run goes, besides its module and data.

    Attributes:
        epochs: passes over the training data.
        resume_dir: the job's resume state (outside its outputs).
        job: JSON-able identity of the job (input signatures, settings): resume only from state of the same job.
        checkpoint_every_n_steps: how often last.ckpt is refreshed (optimizer steps).
        has_validation: whether the data has a validation part (validation and best weights need it).
        best: which weights to keep by validation (None: the last).
        gradient_clip: max global gradient norm (None: no clipping).
        val_every_n_epochs: validation period.
        loss_metric: the logged training loss reported as `final_train_loss`.
        report_metrics: further logged metrics whose last value the summary reports ("val/top5" as val_top5).
        fresh_data_every_epoch: ask the data for new training loaders every epoch (data drawn afresh per epoch).
        log_every_n_steps: logging period without a tracking run.
        clear_resume: delete resume_dir when done (False keeps it for a later phase to reuse).
        log_summary: log the summary's numbers as metrics of the tracking run.
    """

    epochs: int
    resume_dir: Path
    job: Mapping[str, Any]
    checkpoint_every_n_steps: int
    has_validation: bool = False
    best: BestWeights | None = None
    gradient_clip: float | None = None
    val_every_n_epochs: int = 1
    loss_metric: str = "train/loss"
    report_metrics: tuple[str, ...] = ()
    fresh_data_every_epoch: bool = False
    log_every_n_steps: int = DEFAULT_LOG_EVERY_N_STEPS
    clear_resume: bool = True
    log_summary: bool = True


Export = Callable[[dict[str, Any]], None]


def train(system: pl.LightningModule, data: pl.LightningDataModule | DataLoader, plan: FitPlan,
          trainer_cfg: TrainerConfig, run: Any = None, *, sizes: Mapping[str, Any] | None = None,
          export: Export | None = None) -> dict[str, Any]:
    """Train `system` on `data` as `plan` says and return the run's summary.

    Args:
        system: the LightningModule (its weights are trained in place; the best ones restored when kept).
        data: a LightningDataModule, or the training DataLoader alone.
        plan: schedule, checkpointing, resume state and what to keep.
        trainer_cfg: accelerator / devices / nodes / strategy / precision.
        run: optional mindvis.tracking.JobRun (Lightning logger, params, summary metrics).
        sizes: figures describing the job (samples, parameters...): logged as params, part of the summary.
        export: called on rank 0 with the summary after training, the system on CPU (write the result here).
    Returns:
        {**sizes, global_step, epochs, resumed_from_step, seconds, final_train_loss, the report_metrics}; with
        plan.best also best_<metric> (None when the last weights were kept) and kept ("best" | "last").
    """
    sizes = dict(sizes or {})
    log_every = run.target.log_every_n_steps if run is not None else plan.log_every_n_steps
    start = StartStep()
    callbacks, best = run_callbacks(plan, log_every)
    trainer = build_trainer(trainer_cfg, plan, callbacks=[*callbacks, start], log_every_n_steps=log_every,
                            logger=run.lightning_logger() if run is not None else False)
    ckpt_path = resume_checkpoint(plan.resume_dir, fingerprint(plan.job))
    if run is not None and trainer.is_global_zero and sizes:
        run.log_params(sizes)
    started = time.perf_counter()
    loaders = {"datamodule": data} if isinstance(data, pl.LightningDataModule) else {"train_dataloaders": data}
    trainer.fit(system, **loaders, ckpt_path=ckpt_path)
    summary = {**sizes, "global_step": int(trainer.global_step), "epochs": int(trainer.current_epoch),
               "resumed_from_step": start.step, "seconds": round(time.perf_counter() - started, 2),
               "final_train_loss": callback_metric(trainer, plan.loss_metric),
               **{name.replace("/", "_"): callback_metric(trainer, name) for name in plan.report_metrics}}
    if plan.best is not None:
        score = restore_best(system, best)
        summary |= {plan.best.summary_key: score, "kept": "last" if score is None else "best"}
    if trainer.is_global_zero:  # one writer under DDP
        _finish(system, plan, run, summary, export)
    return summary


def _finish(system: pl.LightningModule, plan: FitPlan, run: Any, summary: dict[str, Any], export: Export | None
            ) -> None:
    system.to("cpu")
    if export is not None:
        export(summary)
    if run is not None and plan.log_summary:
        run.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
                        step=summary["global_step"])
    if plan.clear_resume:
        clear_resume_state(plan.resume_dir)


class StartStep(pl.Callback):
    """Records the optimizer step training (re)started from: > 0 when resumed."""

    def __init__(self) -> None:
        self.step = 0

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.step = int(trainer.global_step)


def restore_best(system: pl.LightningModule, best: ModelCheckpoint | None) -> float | None:
    """Load the best validation weights into `system`, if any were kept; return their metric value.

    The weights-only checkpoint goes through Lightning's own loading path (the module's on_load_checkpoint hook,
    then load_state_dict with its strict_loading), so a module that saves a subset of its tensors loads it too.
    """
    if best is None or not best.best_model_path:
        return None
    state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    system.on_load_checkpoint({"state_dict": state})
    system.load_state_dict(state, strict=system.strict_loading)
    return float(best.best_model_score)


def run_callbacks(plan: FitPlan, log_every: int) -> tuple[list[pl.Callback], ModelCheckpoint | None]:
    """Resume checkpointing (last.ckpt every `plan.checkpoint_every_n_steps` steps, written atomically by
    Lightning), throughput logging and, when `plan.best` keeps them and there is validation data, the best weights
    (best.ckpt); checkpoints go under checkpoint_dir(plan.resume_dir). Returns (callbacks, the best-weights callback
    or None)."""
    callbacks: list[pl.Callback] = [
        ModelCheckpoint(dirpath=checkpoint_dir(plan.resume_dir), save_top_k=0, save_last=True,
                        every_n_train_steps=plan.checkpoint_every_n_steps, enable_version_counter=False),
        ThroughputMonitor(log_every),
    ]
    best = None
    if plan.best is not None and plan.best.keep and plan.has_validation:
        best = ModelCheckpoint(dirpath=checkpoint_dir(plan.resume_dir), filename=BEST_CHECKPOINT,
                               monitor=plan.best.metric, mode=plan.best.mode, save_top_k=1, save_weights_only=True,
                               enable_version_counter=False)
        callbacks.append(best)
    return callbacks, best


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


def build_trainer(trainer_cfg: TrainerConfig, plan: FitPlan, *, callbacks: list[pl.Callback], logger: Any,
                  log_every_n_steps: int) -> pl.Trainer:
    """A Lightning Trainer placed by `trainer_cfg` (accelerator, devices, num_nodes, strategy, precision) running
    `plan`'s schedule."""
    return pl.Trainer(
        accelerator=trainer_cfg.accelerator,
        devices=trainer_cfg.devices,
        num_nodes=trainer_cfg.num_nodes,
        strategy=trainer_cfg.strategy,
        plugins=cluster_plugins(trainer_cfg) or None,
        precision=resolve_precision(trainer_cfg),
        max_epochs=plan.epochs,
        callbacks=callbacks,
        logger=logger,
        log_every_n_steps=log_every_n_steps,
        gradient_clip_val=plan.gradient_clip,
        gradient_clip_algorithm="norm",
        default_root_dir=str(plan.resume_dir),
        limit_val_batches=1.0 if plan.has_validation else 0,
        check_val_every_n_epoch=plan.val_every_n_epochs,
        reload_dataloaders_every_n_epochs=1 if plan.fresh_data_every_epoch else 0,
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


def callback_metric(trainer: pl.Trainer, name: str) -> float | None:
    """The last logged value of metric `name` as a float, None if it was never logged."""
    value = trainer.callback_metrics.get(name)
    return None if value is None else float(value)
