"""Stage B training: fine-tune the DC-LDM (fMRI encoder + token mapper + time head + UNet cross-attention) on one
subject's fMRI-image training pairs.

`train_stage_b` is what the workflow's stage_b_finetune rule calls. The model is the pretrained LDM's UNet and VQ
(label2img, or the demo's ldm_pretrain output) with the Stage-A2 encoder and a fresh conditioning head; only the
reference's trainable split learns. Every `val_every_n_epochs` epochs, a few held-out *training* pairs (never test
data) are sampled with a short sampler run and scored by their pixel correlation to the ground truth; the best
weights by that score are kept, and a grid (ground truth beside sample) goes to MLflow. The result is written in the
own Stage-B format to `out_dir` (atomically, rank 0 only); the Lightning resume state (only trainable tensors + the
optimizer) lives in `resume_dir`, outside the declared outputs, so a killed job rerun continues from its last step.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from mindvis.checkpoints.label2img import load_pretrained_ldm
from mindvis.checkpoints.stage_a import load_fmri_encoder
from mindvis.checkpoints.stage_b import save_stage_b
from mindvis.config.runtime import TrainerConfig
from mindvis.config.stage_b import StageBConfig
from mindvis.data.contract import read_subject
from mindvis.data.pairs import FmriImagePairs, PairDataModule, hold_out, train_rows
from mindvis.errors import CheckpointError, ConfigError
from mindvis.figures import sample_grid
from mindvis.models.sampling import LatentImagePipeline, to_uint8
from mindvis.models.ldm import FmriLDM, assemble_fmri_ldm
from mindvis.training.common import make_adamw, per_dataset
from mindvis.training.runner import BestWeights, FitPlan, file_signature, train

log = logging.getLogger(__name__)

VAL_METRIC = "val/pixel_corr"
ADAMW_BETAS = (0.9, 0.999)  # torch's AdamW defaults, which the reference uses


def pixel_correlation(images: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Pearson r between each image and its ground truth over all pixels and channels: (N, ...) x2 -> (N,)."""
    a = images.flatten(1).double()
    b = truth.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


class StageBSystem(pl.LightningModule):
    """Trains an injected FmriLDM with the Stage-B objective (eps-MSE over uniform t) on its trainable split.

    Args:
        model: the DC-LDM; `apply_trainable_split` is applied here (encoder, token mapper, time head, UNet attn2/norm2).
        lr, weight_decay: AdamW (betas 0.9/0.999, decay on every trainable tensor, as the reference).
        unet_lr: rate of the UNet's cross-attention tensors; None = `lr` (the reference's single rate).
        val_scheduler, val_steps: sampler of the validation samples; one sample per held-out pair, started from
            `initial_latent(seed, item, 0)`, so every validation samples from the same noise.
        seed: of the validation noise.
        run: optional mindvis.tracking.JobRun receiving the validation grids.
    """

    def __init__(self, model: FmriLDM, *, lr: float, weight_decay: float, val_scheduler: str, val_steps: int,
                 seed: int, run: Any = None, unet_lr: float | None = None) -> None:
        super().__init__()
        self.model = model
        self.trainable = [f"model.{name}" for name in model.apply_trainable_split()]
        self.model.train()  # loaders return eval-mode modules; Lightning keeps the modes it is given
        self.lr, self.weight_decay = lr, weight_decay
        self.unet_lr = lr if unet_lr is None else unet_lr
        self.val_steps, self.seed = val_steps, seed
        self.val_pipeline = LatentImagePipeline.with_sampler(model, model.vqvae, val_scheduler)
        self.run = run
        self.strict_loading = False  # checkpoints hold the trainable tensors only (see on_save_checkpoint)
        self._grid_rows: list[tuple[int, np.ndarray, np.ndarray]] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model.training_loss(batch["image"], batch["fmri"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def sample(self, fmri: torch.Tensor, items: torch.Tensor) -> np.ndarray:
        """One image per fMRI row (N, V) -> uint8 (N, H, W, 3), from the items' fixed noise."""
        return self.val_pipeline(fmri, items.tolist(), 1, self.val_steps, self.seed, len(fmri))[:, 0]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        samples = self.sample(batch["fmri"], batch["item"])  # (N, H, W, 3)
        truth = to_uint8(batch["image"])
        score = pixel_correlation(torch.from_numpy(samples), torch.from_numpy(truth))
        self.log(VAL_METRIC, score.mean().float(), prog_bar=True, sync_dist=True, batch_size=len(samples))
        self._grid_rows.extend(zip(batch["item"].tolist(), truth, samples, strict=True))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.is_global_zero and self.run is not None and self._grid_rows:
            self.log_grid(f"validation/step_{self.global_step:07d}.png")
        self._grid_rows = []

    def log_grid(self, artifact_file: str) -> None:
        """Ground truth beside the sample of each held-out pair of the last validation (rank 0)."""
        rows = sorted(self._grid_rows, key=lambda row: row[0])
        grid = sample_grid(np.stack([r[1] for r in rows]), np.stack([r[2] for r in rows])[:, None],
                           [f"held-out pair {r[0]}" for r in rows])
        self.run.log_image(grid, artifact_file)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Two groups: the conditioning stage (encoder, token mapper, time head) and the pretrained UNet's
        # cross-attention, which may be tuned more gently than the freshly initialised conditioning.
        trainable = [(name, p) for name, p in self.model.named_parameters() if p.requires_grad]
        unet = [p for name, p in trainable if name.startswith("unet.")]
        conditioning = [p for name, p in trainable if not name.startswith("unet.")]
        groups = [{"params": conditioning, "weight_decay": self.weight_decay},
                  {"params": unet, "weight_decay": self.weight_decay, "lr": self.unet_lr}]
        return make_adamw(groups, self.lr, betas=ADAMW_BETAS)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The frozen UNet / VQ come from the pretrained LDM again on resume: storing them would multiply the size
        # of each checkpoint (label2img: ~460M frozen parameters) for nothing.
        keep = set(self.trainable)
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        missing = sorted(set(self.trainable) - set(checkpoint["state_dict"]))
        if missing:
            raise CheckpointError("the resume checkpoint lacks trainable Stage-B tensors", value=missing[:3],
                                  expected="a checkpoint written by this Stage-B job")


def build_stage_b_model(encoder_checkpoint: str | os.PathLike[str], pretrained_ldm: str | os.PathLike[str],
                        image_size: int, conditioning_init: str = "reference") -> FmriLDM:
    """The DC-LDM to fine-tune: pretrained UNet + VQ at `image_size` px, the A2 encoder, a fresh conditioning head.

    `conditioning_init` "reference" keeps PyTorch's default init of the token mapper and time head (the
    reference); "class_mean" starts every context token at the mean of the LDM's class table and the time head at
    zero (`TokenMapper.start_at`, `TimeConditioningHead.start_silent`).
    """
    encoder = load_fmri_encoder(encoder_checkpoint)
    pretrained = load_pretrained_ldm(pretrained_ldm, image_size=image_size)
    model = assemble_fmri_ldm(pretrained.architecture, pretrained.unet, pretrained.vqvae, encoder)
    if conditioning_init == "class_mean":
        if pretrained.class_embedding is None:
            raise ConfigError("the pretrained LDM has no class table to start the conditioning from",
                              path="stage_b.training.conditioning_init", value=conditioning_init,
                              expected="an LDM with a class embedder (label2img) for class_mean",
                              hint=f"{pretrained_ldm} has none: set conditioning_init: reference")
        model.conditioner.mapper.start_at(pretrained.class_embedding.mean(0))
        model.time_head.start_silent()
    return model


def train_stage_b(subject_dir: str | os.PathLike[str], encoder_checkpoint: str | os.PathLike[str],
                  pretrained_ldm: str | os.PathLike[str], out_dir: str | os.PathLike[str], cfg: StageBConfig,
                  trainer_cfg: TrainerConfig, resume_dir: str | os.PathLike[str], run: Any = None, *, dataset: str
                  ) -> dict[str, Any]:
    """Stage B: fine-tune the DC-LDM on one subject's training pairs and write it in the own Stage-B format.

    Args:
        subject_dir: the subject's preprocessed directory, results/preprocessed/<GOD|BOLD5000>/<subject>.
        dataset: the subject's dataset (GOD, BOLD5000): picks per-dataset settings (batch size, epochs).
        encoder_checkpoint: the Stage-A2 result (own format) or a released Stage-A checkpoint.
        pretrained_ldm: a label2img directory (model.ckpt + config.yaml) or model.ckpt (demo: ldm_pretrain's output).
        out_dir: where the own Stage-B format is written (mindvis.checkpoints.save_stage_b).
        cfg: the resolved `stage_b` section (`training`; `sampling.scheduler` samples the validation;
            `architecture.image_size`, which the config fills from preprocess.image_size unless set).
        trainer_cfg: devices / nodes / strategy / precision (auto = bf16-mixed on GPU; the reference trains fp32).
        resume_dir: Lightning resume state, outside the job's declared outputs.
        run: optional mindvis.tracking.JobRun.
    Returns:
        summary figures (pairs, parameters, steps, losses, best validation score, seconds).
    """
    settings = cfg.training
    subject_dir, out_dir, resume_dir = Path(subject_dir), Path(out_dir), Path(resume_dir)
    batch_size = per_dataset(settings.batch_size, dataset, "stage_b.training.batch_size", "batch size")
    epochs = per_dataset(settings.epochs, dataset, "stage_b.training.epochs", "epoch count")
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    image_size = cfg.architecture.image_size
    model = build_stage_b_model(encoder_checkpoint, pretrained_ldm, image_size, settings.conditioning_init)
    encoder_arch = model.conditioner.encoder.arch

    subject = read_subject(subject_dir, mmap=True)
    rows = train_rows(subject)
    fit_rows, val_rows = hold_out(rows, settings.val_items, settings.seed) if settings.val_items else (rows, rows[:0])
    pairs = {"subject": subject, "num_voxels": encoder_arch.num_voxels, "patch_size": encoder_arch.patch_size,
             "image_size": image_size}
    train_set = FmriImagePairs(subject_dir, fit_rows, crop_probability=settings.crop_probability,
                               crop_ratio=settings.crop_ratio, **pairs)
    val_set = FmriImagePairs(subject_dir, val_rows, **pairs) if len(val_rows) else None
    datamodule = PairDataModule(train_set, val_set, batch_size, trainer_cfg.num_workers)
    log.info("Stage B on %s: %d training pairs, %d held out; %d px images; %d voxels -> %d tokens", subject_dir,
             len(train_set), len(val_rows), image_size, encoder_arch.num_voxels, encoder_arch.num_patches)

    system = StageBSystem(model, lr=settings.learning_rate, unet_lr=settings.unet_learning_rate,
                          weight_decay=settings.weight_decay,
                          val_scheduler=cfg.sampling.scheduler, val_steps=settings.val_steps,
                          seed=settings.seed, run=run)
    job = {"stage": "B", "subject": file_signature(subject_dir), "encoder": file_signature(encoder_checkpoint),
           "pretrained_ldm": file_signature(pretrained_ldm), "image_size": image_size,
           "training": asdict(settings), "val_scheduler": cfg.sampling.scheduler,
           "trainer": asdict(trainer_cfg)}
    plan = FitPlan(epochs=epochs, resume_dir=resume_dir, job=job,
                   checkpoint_every_n_steps=settings.checkpoint_every_n_steps, has_validation=val_set is not None,
                   best=BestWeights(VAL_METRIC, "max", keep=settings.keep == "best"),
                   gradient_clip=settings.grad_clip, val_every_n_epochs=settings.val_every_n_epochs)
    sizes = {"n_train": len(train_set), "n_val": len(val_rows), "image_size": image_size, "batch_size": batch_size,
             "parameters": sum(p.numel() for p in model.parameters()),
             "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}

    def export(summary: dict[str, Any]) -> None:
        save_stage_b(model, out_dir, metadata={
            "stage": "B", "subject_dir": str(subject_dir), "encoder_checkpoint": str(encoder_checkpoint),
            "pretrained_ldm": str(pretrained_ldm), "run_id": run.run_id if run is not None else None,
            "training": summary})

    return train(system, datamodule, plan, trainer_cfg, run, sizes=sizes, export=export)
