"""Stage A training: A1 masked brain modeling on HCP (+ GOD train fMRI) and A2 tuning on the target subject's fMRI.

`train_stage_a_pretrain` / `train_stage_a_finetune` are what the workflow's stage_a rules call. Each writes the
trained model in the own format (model.safetensors + config.json) to `out_dir`, atomically and from rank 0 only;
the Lightning resume state (last.ckpt, refreshed every `checkpoint_every_n_steps`) lives in `resume_dir`, outside
the declared outputs, so a killed job rerun with the same inputs and settings continues from its last saved step.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure

from mindvis.checkpoints.stage_a import load_mbm, save_mbm
from mindvis.config.runtime import TrainerConfig
from mindvis.config.stage_a import StageAConfig, StageAFinetuneConfig, StageAPretrainConfig
from mindvis.data.datasets import (
    FmriDataModule,
    FmriRows,
    RowSelection,
    model_voxel_count,
    read_selections,
    select_pretrain_rows,
    select_test_rows,
)
from mindvis.errors import ConfigError
from mindvis.models.mbm import MaskedBrainModel, MbmArchitecture, count_parameters
from mindvis.training.common import make_adamw, per_dataset, warmup_cosine_factor, weight_decay_groups
from mindvis.training.runner import BestWeights, FitPlan, file_signature, train

log = logging.getLogger(__name__)

FIGURE_SAMPLES = 4

TrainSettings = StageAPretrainConfig | StageAFinetuneConfig


class MaskedBrainModelingSystem(pl.LightningModule):
    """Trains an injected MaskedBrainModel: masked-patch MSE, AdamW, warm-up + per-step half-cosine schedule.

    Args:
        model: the masked brain model (its weights are trained in place).
        lr, min_lr, weight_decay: AdamW peak / final learning rate and decay (none on biases and norms).
        warmup_epochs, epochs: schedule length; steps per epoch come from the Trainer (DDP- and resume-safe).
        mask_ratio: fraction of patches removed per sample.
        figure_batch: (K, 1, V) samples whose reconstructions are plotted after each validation (and at the end).
        run: optional mindvis.tracking.JobRun receiving the figures.
    """

    def __init__(self, model: MaskedBrainModel, *, lr: float, min_lr: float, weight_decay: float,
                 warmup_epochs: int, epochs: int, mask_ratio: float, figure_batch: torch.Tensor | None = None,
                 run: Any = None) -> None:
        super().__init__()
        self.model = model
        self.lr, self.min_lr, self.weight_decay = lr, min_lr, weight_decay
        self.warmup_epochs, self.epochs = warmup_epochs, epochs
        self.mask_ratio = mask_ratio
        self.figure_batch = figure_batch
        self.run = run
        self.save_hyperparameters({"lr": lr, "min_lr": min_lr, "weight_decay": weight_decay,
                                   "warmup_epochs": warmup_epochs, "epochs": epochs, "mask_ratio": mask_ratio,
                                   "architecture": model.arch.to_dict()})

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.model(batch, self.mask_ratio).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=len(batch))
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        loss = self.model(batch, self.mask_ratio).loss
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=len(batch))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self.log_reconstructions(f"reconstructions/step_{self.global_step:07d}.png")

    def log_reconstructions(self, artifact_file: str) -> None:
        """Plot true vs reconstructed voxel vectors of the figure batch into the run (rank 0 only)."""
        if self.run is None or self.figure_batch is None:
            return
        figure = reconstruction_figure(self.model, self.figure_batch.to(self.device), self.mask_ratio,
                                       title=f"step {self.global_step}")
        self.run.log_figure(figure, artifact_file)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = make_adamw(weight_decay_groups(self.model, self.weight_decay), self.lr)
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        warmup_steps = round(total_steps * self.warmup_epochs / self.epochs)
        min_ratio = self.min_lr / self.lr

        def factor(step: int) -> float:
            return warmup_cosine_factor(step, warmup_steps, total_steps, min_ratio)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


@torch.no_grad()
def reconstruction_figure(model: MaskedBrainModel, batch: torch.Tensor, mask_ratio: float, title: str = ""
                          ) -> Figure:
    """One panel per sample: the true voxel vector, and the model's reconstruction of the removed patches."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(0)  # same masks in every figure, so figures compare over training
    noise = torch.rand(batch.shape[0], model.arch.num_patches, generator=generator).to(batch.device)
    truth, recon, removed = model.reconstruct(batch, mask_ratio, noise)
    truth, recon, removed = truth.float().cpu().numpy(), recon.float().cpu().numpy(), removed.cpu().numpy()
    model.train(was_training)
    figure = Figure(figsize=(12, 2.2 * len(truth)))  # no pyplot: no global backend or figure registry involved
    axes = figure.subplots(len(truth), 1, squeeze=False)
    voxels = np.arange(truth.shape[1])
    for ax, true_row, recon_row, removed_row in zip(axes[:, 0], truth, recon, removed, strict=True):
        r = np.corrcoef(true_row[removed_row], recon_row[removed_row])[0, 1] if removed_row.any() else float("nan")
        ax.plot(voxels, true_row, color="0.6", lw=0.6, label="true")
        ax.plot(voxels, np.where(removed_row, recon_row, np.nan), color="tab:red", lw=0.6,
                label="reconstruction (removed patches)")
        ax.set_ylabel(f"r={r:.2f}")
        ax.set_xlim(0, len(voxels))
    axes[0, 0].legend(loc="upper right", fontsize=7)
    axes[0, 0].set_title(f"masked brain modeling, mask ratio {mask_ratio} {title}".strip())
    axes[-1, 0].set_xlabel("voxel (model input order)")
    figure.tight_layout()
    return figure


def _model_sizes(cfg: StageAConfig) -> dict[str, Any]:
    sizes = asdict(cfg.model)
    missing = sorted(k for k, v in sizes.items() if v is None)
    if missing:
        raise ConfigError("model sizes unset", path="stage_a.model", value=missing,
                          expected="every size set (presets fill them: resolve the config through mindvis.config)")
    return sizes


def _fit(model: MaskedBrainModel, datamodule: FmriDataModule, settings: TrainSettings, out_dir: Path,
         trainer_cfg: TrainerConfig, resume_dir: Path, job: dict[str, Any], run: Any, extra: dict[str, Any]
         ) -> dict[str, Any]:
    """Train `model` on `datamodule` with `settings` (the runner resumes from `resume_dir`); write it to `out_dir`."""
    has_val = datamodule.val_set is not None
    system = MaskedBrainModelingSystem(
        model, lr=settings.lr, min_lr=settings.min_lr, weight_decay=settings.weight_decay,
        warmup_epochs=settings.warmup_epochs, epochs=settings.epochs, mask_ratio=settings.mask_ratio,
        figure_batch=datamodule.sample_batch(FIGURE_SAMPLES), run=run)
    plan = FitPlan(epochs=settings.epochs, resume_dir=resume_dir, job=job,
                   checkpoint_every_n_steps=settings.checkpoint_every_n_steps, has_validation=has_val,
                   best=BestWeights("val/loss", "min"), gradient_clip=settings.clip_grad)
    sizes = {"n_train": len(datamodule.train_set), "n_val": len(datamodule.val_set or []),
             "num_voxels": model.arch.num_voxels, "parameters": count_parameters(model)}

    def export(summary: dict[str, Any]) -> None:
        save_mbm(model, out_dir, extra={**extra, "training": summary})
        if run is not None:
            system.log_reconstructions("reconstructions/final.png")
            run.log_artifact(out_dir, "model")

    return train(system, datamodule, plan, trainer_cfg, run, sizes=sizes, export=export)


def pretrain_selections(inputs: Mapping[str, Sequence[str | os.PathLike[str]]], settings: StageAPretrainConfig
                        ) -> list[RowSelection]:
    """A1's rows of every input subject (datasets in sorted order): `pretrain` rows, plus the `train` rows of GOD
    subjects when `include_god_train` and of NSD subjects when `include_nsd_train`."""
    train_rows_of = {"GOD": settings.include_god_train, "NSD": settings.include_nsd_train}
    selections = []
    for dataset, subject_dirs in sorted(inputs.items()):
        with_train_rows = train_rows_of.get(dataset, False)
        selections += read_selections(subject_dirs, partial(select_pretrain_rows, with_train_rows=with_train_rows))
    return selections


def train_stage_a_pretrain(inputs: Mapping[str, Sequence[str | os.PathLike[str]]], out_dir: str | os.PathLike[str],
                           cfg: StageAConfig, trainer_cfg: TrainerConfig, resume_dir: str | os.PathLike[str],
                           run: Any = None) -> dict[str, Any]:
    """A1: masked brain modeling from scratch on the `pretrain` rows of `inputs` (+ GOD `train` rows if enabled).

    Args:
        inputs: preprocessed subject directories (contract) by dataset, e.g. {"HCP": [".../HCP/100307", ...],
            "GOD": [...]}; GOD / NSD subjects add their `train` rows when `pretrain.include_god_train` /
            `include_nsd_train`.
        out_dir: where model.safetensors + config.json are written.
        cfg: the resolved `stage_a` config section (model sizes, `pretrain` schedule).
        trainer_cfg: devices / nodes / strategy / precision.
        resume_dir: Lightning resume state, outside the job's declared outputs.
        run: optional mindvis.tracking.JobRun.
    Returns:
        summary figures (samples, voxels, parameters, steps, losses, seconds).
    """
    settings = cfg.pretrain
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    sizes = _model_sizes(cfg)
    selections = pretrain_selections(inputs, settings)
    arch = MbmArchitecture(num_voxels=model_voxel_count(selections, sizes["patch_size"]), **sizes)
    dataset = FmriRows(selections, arch.num_voxels, arch.patch_size)
    datamodule = FmriDataModule(dataset, settings.batch_size, settings.val_fraction, settings.seed,
                                trainer_cfg.num_workers)
    log.info("Stage A1: %d samples from %d subjects, %d voxels -> %d tokens", len(dataset), len(selections),
             arch.num_voxels, arch.num_patches)
    model = MaskedBrainModel(arch)
    job = {"stage": "A1", "inputs": {dataset: [file_signature(p) for p in dirs] for dataset, dirs in inputs.items()},
           "cfg": asdict(cfg), "trainer": asdict(trainer_cfg)}
    return _fit(model, datamodule, settings, Path(out_dir), trainer_cfg, Path(resume_dir), job, run,
                extra={"stage": "A1", "inputs": [str(p) for dirs in inputs.values() for p in dirs]})


def train_stage_a_finetune(subject_dir: str | os.PathLike[str], init_checkpoint: str | os.PathLike[str],
                           out_dir: str | os.PathLike[str], cfg: StageAConfig, trainer_cfg: TrainerConfig,
                           resume_dir: str | os.PathLike[str], run: Any = None, *, dataset: str) -> dict[str, Any]:
    """A2: tune a Stage A model on one subject's test fMRI (averaged + single trials), as the reference.

    Args:
        subject_dir: the target subject's preprocessed directory, results/preprocessed/<GOD|BOLD5000>/<subject>.
        dataset: the subject's dataset (GOD, BOLD5000): picks per-dataset settings such as the batch size.
        init_checkpoint: the A1 result (own format) or a released checkpoint.pth.
        out_dir, cfg, trainer_cfg, resume_dir, run: as train_stage_a_pretrain (`cfg.finetune` is used).
    """
    settings = cfg.finetune
    subject_dir = Path(subject_dir)
    batch_size = per_dataset(settings.batch_size, dataset, "stage_a.finetune.batch_size", "batch size")
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    model = load_mbm(init_checkpoint).train()
    selections = read_selections([subject_dir], select_test_rows)
    rows = FmriRows(selections, model.arch.num_voxels, model.arch.patch_size)
    datamodule = FmriDataModule(rows, batch_size, settings.val_fraction, settings.seed, trainer_cfg.num_workers)
    log.info("Stage A2 on %s: %d test samples (%d voxels -> model's %d)", subject_dir, len(rows),
             selections[0].n_voxels, model.arch.num_voxels)
    job = {"stage": "A2", "subject": file_signature(subject_dir),
           "init": file_signature(init_checkpoint), "cfg": asdict(cfg), "trainer": asdict(trainer_cfg)}
    return _fit(model, datamodule, settings, Path(out_dir), trainer_cfg, Path(resume_dir), job, run,
                extra={"stage": "A2", "subject_dir": str(subject_dir), "init_checkpoint": str(init_checkpoint)})
