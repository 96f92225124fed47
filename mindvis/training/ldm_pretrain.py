"""Demo LDM pretraining: a tiny label-conditioned LDM that stands in for the ImageNet "label2img" LDM MinD-Vis
starts from (real runs import the released one instead).

It trains on freshly generated images of every demo category (`mindvis.demo.images.generate_category_images`,
never the GOD / BOLD5000 images), in two phases as CompVis trained its LDMs:
(a) the VQ first stage (diffusers VQModel): L1 reconstruction (+ optionally L1 on image gradients, a cheap
    stand-in for a perceptual loss) + codebook and commitment losses, on random crops (the autoencoder is
    convolutional), the codebook started from encoder outputs; afterwards the latent scale is normalised to unit
    standard deviation by an exact reparametrisation, because the label2img layout fixes scale_factor 1;
(b) the UNet on the (cached) latents of the images, conditioned on the category through a learned class embedding
    used as a one-token cross-attention context (CompVis ClassEmbedder; optionally composed from the category's
    shape, texture and hue, `class_embedding: attributes`); eps-MSE over uniform t (optionally Min-SNR weighted),
    written out as an exponential moving average of its weights.
The result is written in the CompVis label2img layout (model.ckpt + config.yaml, mindvis.checkpoints.label2img), so
Stage B imports it exactly like the real one, with two files beside them: class_index.json (class -> wnid, name; the
LDM's classes are the demo categories in category-table order) and recipe.json (what made it, to tell whether shipped
weights fit a config: mindvis.demo.pretrained). Resume state per phase lives in `resume_dir`, each phase
fingerprinted by what it depends on: the finished VQ stays there and is reused while the VQ's own settings are
unchanged, so retuning the UNet does not retrain the autoencoder (delete `resume_dir` to force it).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from diffusers import VQModel
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from mindvis.checkpoints.label2img import save_label2img
from mindvis.config.data import DemoDataConfig
from mindvis.config.runtime import TrainerConfig
from mindvis.config.stage_b import LdmPretrainConfig, StageBConfig
from mindvis.demo.images import ATTRIBUTE_SIZES, Category, category_table, generate_category_images, n_categories
from mindvis.demo.pretrained import CLASS_INDEX_FILE, RECIPE_FILE, generator_probe, ldm_recipe
from mindvis.figures import labelled_grid
from mindvis.models.sampling import LatentImagePipeline, to_model_range, to_uint8
from mindvis.models.ldm import AttributeEmbedding, ClassConditionedLdm, build_unet, build_vqvae
from mindvis.training.common import make_adamw, warmup_cosine_factor
from mindvis.training.runner import FitPlan, checkpoint_dir, fingerprint, resume_checkpoint, train

log = logging.getLogger(__name__)

WARMUP_FRACTION = 0.05
ENCODE_BATCH = 64
SAMPLES_PER_CLASS = 2
VQ_DONE = "vq_trained"  # resume_dir/vq/<this>: the finished, scale-normalised VQ (diffusers save_pretrained)
# ldm_pretrain settings the VQ phase does not read: changing only these keeps the trained autoencoder. Listed as
# exclusions so that a setting added later retrains the VQ unless it is named here (a stale VQ is the worse error).
UNET_ONLY_SETTINGS = frozenset({"unet_epochs", "unet_lr", "ema_decay", "min_snr_gamma", "class_embedding",
                                "attribute_dropout", "sample_classes", "checkpoint_every_n_steps"})
VQ_ARCHITECTURE = ("image_size", "image_channels", "latent_channels")  # besides the vq_* fields
DEFAULT_LOG_EVERY_N_STEPS = 20


def category_images(demo_cfg: DemoDataConfig, images_per_category: int, image_size: int, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Fresh images of every demo category: uint8 (n_categories * k, S, S, 3) and their labels int64 (same order)."""
    n_classes = n_categories(demo_cfg)
    images = np.concatenate([generate_category_images(demo_cfg, c, images_per_category, seed, size_px=image_size)
                             for c in range(n_classes)])
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), images_per_category)
    return images, labels


class RandomCrops(Dataset):
    """Images uint8 (N, H, W, 3) -> random `crop_px` crops, randomly mirrored, float32 (3, c, c) in [-1, 1]."""

    def __init__(self, images: np.ndarray, crop_px: int | None) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.crop_px = min(crop_px or images.shape[1], images.shape[1])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index]
        top, left = (int(v) for v in torch.randint(0, image.shape[0] - self.crop_px + 1, (2,)))
        crop = image[top:top + self.crop_px, left:left + self.crop_px]
        if torch.rand(()) < 0.5:
            crop = crop.flip(1)
        return to_model_range(crop[None])[0]


def image_gradient_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the horizontal and vertical finite differences of two (N, C, H, W) images."""
    dx = (a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])
    dy = (a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])
    return dx.abs().mean() + dy.abs().mean()


def chroma_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the chroma of two (N, 3, H, W) images (each pixel minus its channel mean)."""
    return F.l1_loss(a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True))


def quantize_with_losses(vqvae: VQModel, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                            torch.Tensor]:
    """Nearest-code quantisation of latents (N, c, h, w) with VQ-VAE losses.

    Returns:
        quantised latents with a straight-through gradient (N, c, h, w); codebook loss ||sg(z) - e||^2 (moves codes);
        commitment loss ||z - sg(e)||^2 (moves the encoder); code indices (N * h * w,).
    """
    _, _, (_, _, indices) = vqvae.quantize(latents)
    indices = indices.reshape(-1)
    codes = vqvae.quantize.embedding(indices).view(latents.shape[0], *latents.shape[2:], latents.shape[1])
    codes = codes.permute(0, 3, 1, 2)  # (N, c, h, w)
    codebook = F.mse_loss(codes, latents.detach())
    commitment = F.mse_loss(latents, codes.detach())
    straight_through = latents + (codes - latents).detach()
    return straight_through, codebook, commitment, indices


class VqAutoencoderSystem(pl.LightningModule):
    """Trains a VQModel: L1 pixels + weighted L1 image gradients + weighted L1 chroma + codebook +
    commitment-weighted commitment loss."""

    def __init__(self, vqvae: VQModel, *, lr: float, gradient_loss_weight: float, chroma_loss_weight: float,
                 commitment_weight: float) -> None:
        super().__init__()
        self.vqvae = vqvae
        self.lr = lr
        self.gradient_loss_weight, self.chroma_loss_weight = gradient_loss_weight, chroma_loss_weight
        self.commitment_weight = commitment_weight

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        latents = self.vqvae.encode(batch).latents
        quantised, codebook, commitment, indices = quantize_with_losses(self.vqvae, latents)
        reconstruction = self.vqvae.decode(quantised, force_not_quantize=True).sample
        pixel = F.l1_loss(reconstruction, batch)
        loss = pixel + codebook + self.commitment_weight * commitment
        if self.gradient_loss_weight > 0:
            loss = loss + self.gradient_loss_weight * image_gradient_l1(reconstruction, batch)
        if self.chroma_loss_weight > 0:
            loss = loss + self.chroma_loss_weight * chroma_l1(reconstruction, batch)
        n = len(batch)
        self.log_dict({"vq/loss": loss, "vq/pixel_l1": pixel, "vq/codebook": codebook,
                       "vq/codes_in_batch": float(indices.unique().numel())}, prog_bar=True, batch_size=n)
        self.log("vq/lr", self.optimizers().param_groups[0]["lr"], batch_size=n)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        return _adamw_with_schedule(self, self.vqvae.parameters(), self.lr)


class LabelDiffusionSystem(pl.LightningModule):
    """Trains a ClassConditionedLdm (UNet + class embedding) on cached latents, keeping an exponential moving
    average of its weights when `ema_decay` > 0 (part of the module's state, so it resumes with the run)."""

    def __init__(self, ldm: ClassConditionedLdm, *, lr: float, ema_decay: float, min_snr_gamma: float | None
                 ) -> None:
        super().__init__()
        self.ldm = ldm
        self.lr = lr
        self.ema_decay, self.min_snr_gamma = ema_decay, min_snr_gamma
        self.ema = copy.deepcopy(ldm).requires_grad_(False) if ema_decay > 0 else None

    @property
    def exported(self) -> ClassConditionedLdm:
        """The model to write out: the moving average if one is kept, else the trained weights."""
        return self.ema if self.ema is not None else self.ldm

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        latents, labels = batch
        loss = self.ldm.training_loss(latents, labels, self.min_snr_gamma)
        self.log("unet/loss", loss, prog_bar=True, batch_size=len(latents))
        self.log("unet/lr", self.optimizers().param_groups[0]["lr"], batch_size=len(latents))
        return loss

    @torch.no_grad()
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is None:
            return
        # the usual warm-up: early on the average follows the weights closely instead of the random start
        step = self.trainer.global_step
        decay = min(self.ema_decay, (1 + step) / (10 + step))
        for averaged, current in zip(self.ema.parameters(), self.ldm.parameters(), strict=True):
            averaged.lerp_(current, 1.0 - decay)

    def configure_optimizers(self) -> dict[str, Any]:
        return _adamw_with_schedule(self, self.ldm.parameters(), self.lr)


def _adamw_with_schedule(system: pl.LightningModule, params: Any, lr: float) -> dict[str, Any]:
    """AdamW (no weight decay) with a short linear warm-up and a per-step half cosine to 0."""
    optimizer = make_adamw([{"params": list(params), "weight_decay": 0.0}], lr, betas=(0.9, 0.99))
    total = max(1, int(system.trainer.estimated_stepping_batches))
    warmup = round(total * WARMUP_FRACTION)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine_factor(step, warmup, total))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


@torch.no_grad()
def encode_images(vqvae: VQModel, images: np.ndarray, batch_size: int = ENCODE_BATCH) -> torch.Tensor:
    """Unquantised latents (N, c, h, w) float32 on CPU of uint8 images (N, H, W, 3), as the LDM sees them."""
    device = next(vqvae.parameters()).device
    chunks = [vqvae.encode(to_model_range(images[start:start + batch_size]).to(device)).latents.float().cpu()
              for start in tqdm(range(0, len(images), batch_size), desc="encode latents", leave=False)]
    return torch.cat(chunks)


@torch.no_grad()
def init_codebook(vqvae: VQModel, crops: torch.Tensor, generator: torch.Generator) -> None:
    """Start the codebook from encoder outputs of `crops` (N, 3, c, c), so no code begins far from the data."""
    latents = vqvae.encode(crops).latents  # (N, c, h, w)
    vectors = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    table = vqvae.quantize.embedding.weight
    picks = torch.randint(0, len(vectors), (table.shape[0],), generator=generator)
    table.copy_(vectors[picks] + 0.01 * vectors.std() * torch.randn(table.shape, generator=generator))


@torch.no_grad()
def normalize_latent_scale(vqvae: VQModel, latents: torch.Tensor) -> float:
    """Rescale the VQ so its latents have unit standard deviation, without changing what it computes.

    latents (N, c, h, w) are encoder outputs of the training images. quant_conv (the last encoder layer) and the
    codebook are multiplied by s = 1 / std, post_quant_conv's weights divided by s: nearest-code search is
    scale-equivariant, so quantised decodes are unchanged while the diffusion sees unit-scale latents (the
    label2img layout has scale_factor 1). Returns s.
    """
    scale = 1.0 / float(latents.std())
    vqvae.quant_conv.weight.mul_(scale)
    vqvae.quant_conv.bias.mul_(scale)
    vqvae.quantize.embedding.weight.mul_(scale)
    vqvae.post_quant_conv.weight.div_(scale)
    return scale


@torch.no_grad()
def reconstruction_l1(vqvae: VQModel, images: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean absolute error in [-1, 1] units of quantised reconstructions of uint8 images, and the reconstructions."""
    device = next(vqvae.parameters()).device
    x = to_model_range(images).to(device)
    recon = vqvae.decode(vqvae.encode(x).latents).sample
    return float((recon.clamp(-1, 1) - x).abs().mean()), to_uint8(recon)


def vq_identity(demo_cfg: DemoDataConfig, arch: Any, settings: LdmPretrainConfig, trainer_cfg: TrainerConfig
                ) -> dict[str, Any]:
    """What the VQ phase computes from (its resume identity): the generator, the VQ's architecture and settings."""
    vq_arch = {k: v for k, v in asdict(arch).items() if k.startswith("vq_") or k in VQ_ARCHITECTURE}
    return {"stage": "ldm_pretrain/vq", "demo": asdict(demo_cfg), "architecture": vq_arch,
            "settings": {k: v for k, v in asdict(settings).items() if k not in UNET_ONLY_SETTINGS},
            "trainer": asdict(trainer_cfg)}


def class_embedding(settings: LdmPretrainConfig, categories: tuple[Category, ...], dim: int) -> nn.Module:
    """The demo LDM's class embedding (labels -> (N, dim)): a free table, or composed from each category's
    (shape, texture, hue) with `attribute_dropout` (see AttributeEmbedding)."""
    if settings.class_embedding == "attributes":
        return AttributeEmbedding(torch.tensor([c.attributes for c in categories]), ATTRIBUTE_SIZES, dim,
                                  dropout=settings.attribute_dropout)
    return nn.Embedding(len(categories), dim)


def grid_classes(n_classes: int, n_shown: int) -> list[int]:
    """`n_shown` class indices spread evenly over 0..n_classes-1 (train and test categories alike)."""
    return sorted({int(round(i)) for i in np.linspace(0, n_classes - 1, min(n_shown, n_classes))})


def _log_grid(run: Any, tiles: np.ndarray, rows: list[str], columns: list[str], artifact_file: str) -> None:
    if run is not None:
        run.log_image(labelled_grid(tiles, rows, columns), artifact_file)


def train_demo_ldm(demo_cfg: DemoDataConfig, cfg: StageBConfig, trainer_cfg: TrainerConfig,
                   out_dir: str | os.PathLike[str], resume_dir: str | os.PathLike[str], run: Any = None
                   ) -> dict[str, Any]:
    """Train the demo's label-conditioned LDM and write it as a label2img directory (model.ckpt + config.yaml).

    Args:
        demo_cfg: the demo data config (its categories and their image generator).
        cfg: the resolved `stage_b` section: `architecture` sizes the model (its image size is the demo stimuli's
            unless set), `ldm_pretrain` the training, `sampling` the sampler of the logged sample grid.
        trainer_cfg: accelerator / precision (a demo job: always one device).
        out_dir: the pretrained-LDM directory Stage B reads (stage_b.pretrained_ldm).
        resume_dir: per-phase resume state, outside the job's declared outputs.
        run: optional mindvis.tracking.JobRun (losses, VQ reconstruction and class sample grids).
    Returns:
        summary figures (images, classes, steps, losses, reconstruction error, codebook use, seconds).
    """
    settings, arch = cfg.ldm_pretrain, cfg.architecture
    resume_dir = Path(resume_dir)
    trainer_cfg = replace(trainer_cfg, devices=1, num_nodes=1, strategy="auto")
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    images, labels = category_images(demo_cfg, settings.images_per_category, arch.image_size, settings.seed)
    categories = category_table(demo_cfg)
    log.info("demo LDM pretraining on %d images of %d categories (%d px)", len(images), len(categories),
             arch.image_size)
    if run is not None:
        run.log_params({"n_images": len(images), "n_classes": len(categories), "image_size": arch.image_size})
    vqvae, vq_summary = train_vq(images, demo_cfg, cfg, trainer_cfg, resume_dir / "vq", run)
    shown = grid_classes(len(categories), settings.sample_classes)
    examples = images[[int(np.flatnonzero(labels == c)[0]) for c in shown]]
    recon_l1, reconstructions = reconstruction_l1(vqvae, examples)
    _log_grid(run, np.stack([examples, reconstructions], axis=1), [categories[c].name for c in shown],
              ["image", "VQ reconstruction"], "ldm_pretrain/vq_reconstructions.png")
    summary = {"n_images": len(images), "n_classes": len(categories), "image_size": arch.image_size,
               **vq_summary, "vq_reconstruction_l1": round(recon_l1, 4)}
    job = {"stage": "ldm_pretrain", "demo": asdict(demo_cfg), "architecture": asdict(arch),
           "settings": asdict(settings), "trainer": asdict(trainer_cfg)}
    return train_label_diffusion(vqvae, images, labels, examples[:, None], shown, demo_cfg, cfg, trainer_cfg,
                                 FitPlan(epochs=settings.unet_epochs, resume_dir=resume_dir / "unet", job=job,
                                         checkpoint_every_n_steps=settings.checkpoint_every_n_steps,
                                         gradient_clip=1.0, loss_metric="unet/loss",
                                         log_every_n_steps=DEFAULT_LOG_EVERY_N_STEPS, log_summary=False),
                                 Path(out_dir), summary, run)


def train_vq(images: np.ndarray, demo_cfg: DemoDataConfig, cfg: StageBConfig, trainer_cfg: TrainerConfig,
             vq_dir: Path, run: Any) -> tuple[VQModel, dict[str, Any]]:
    """Phase (a): the VQ autoencoder on random crops of uint8 `images` (N, S, S, 3), its latent scale normalised.

    The finished VQ stays in `vq_dir` (VQ_DONE) and is reused while the VQ's own settings are unchanged. Returns the
    VQ (eval mode, CPU) and its summary figures (steps, final loss, latent scale; None when reused, seconds).
    """
    settings, arch = cfg.ldm_pretrain, cfg.architecture
    vq_job = vq_identity(demo_cfg, arch, settings, trainer_cfg)
    resume_checkpoint(vq_dir, fingerprint(vq_job))  # discards a VQ (finished or not) of other VQ settings
    done = vq_dir / VQ_DONE
    if done.is_dir():
        log.info("reusing the VQ trained earlier with the same VQ settings: %s", done)
        vqvae = VQModel.from_pretrained(done, local_files_only=True, low_cpu_mem_usage=False).eval()
        return vqvae, {"vq_steps": None, "vq_final_loss": None, "latent_scale": None, "vq_seconds": 0.0}
    vqvae = build_vqvae(arch)
    crops = RandomCrops(images, settings.vq_crop_px)
    generator = torch.Generator().manual_seed(settings.seed)
    init_codebook(vqvae, torch.stack([crops[i] for i in torch.randperm(len(crops), generator=generator)[:64]]),
                  generator)
    system = VqAutoencoderSystem(vqvae, lr=settings.vq_lr, gradient_loss_weight=settings.gradient_loss_weight,
                                 chroma_loss_weight=settings.chroma_loss_weight,
                                 commitment_weight=settings.commitment_weight)
    loader = DataLoader(crops, batch_size=settings.batch_size, shuffle=True, num_workers=trainer_cfg.num_workers)
    plan = FitPlan(epochs=settings.vq_epochs, resume_dir=vq_dir, job=vq_job,
                   checkpoint_every_n_steps=settings.checkpoint_every_n_steps, gradient_clip=1.0,
                   loss_metric="vq/loss", log_every_n_steps=DEFAULT_LOG_EVERY_N_STEPS, clear_resume=False,
                   log_summary=False)
    fitted = train(system, loader, plan, trainer_cfg, run)
    vqvae = vqvae.cpu().eval()
    scale = normalize_latent_scale(vqvae, encode_images(vqvae, images[:: max(1, len(images) // 256)]))
    vqvae.save_pretrained(done)
    shutil.rmtree(checkpoint_dir(vq_dir), ignore_errors=True)  # the finished VQ is all that is kept
    return vqvae, {"vq_steps": fitted["global_step"], "vq_final_loss": fitted["final_train_loss"],
                   "latent_scale": scale, "vq_seconds": fitted["seconds"]}


def train_label_diffusion(vqvae: VQModel, images: np.ndarray, labels: np.ndarray, examples: np.ndarray,
                          shown: list[int], demo_cfg: DemoDataConfig, cfg: StageBConfig, trainer_cfg: TrainerConfig,
                          plan: FitPlan, out_dir: Path, summary: dict[str, Any], run: Any) -> dict[str, Any]:
    """Phase (b): the class-conditioned UNet on the cached latents of `images` (N, S, S, 3) with `labels` (N,);
    writes the label2img directory to `out_dir` with class samples of the `shown` classes beside `examples`
    (len(shown), 1, S, S, 3) logged. `summary` holds the figures so far; returns it completed."""
    settings, arch = cfg.ldm_pretrain, cfg.architecture
    categories = category_table(demo_cfg)
    latents = encode_images(vqvae, images)
    summary |= {"codes_used": int(torch.unique(vqvae.quantize(latents)[2][2]).numel()),
                "codebook_size": arch.vq_num_embeddings}
    ldm = ClassConditionedLdm(arch, build_unet(arch), class_embedding(settings, categories, arch.context_dim))
    system = LabelDiffusionSystem(ldm, lr=settings.unet_lr, ema_decay=settings.ema_decay,
                                  min_snr_gamma=settings.min_snr_gamma)
    loader = DataLoader(TensorDataset(latents, torch.from_numpy(labels)), batch_size=settings.batch_size,
                        shuffle=True)

    def export(fitted: dict[str, Any]) -> None:
        exported = system.exported.eval()
        pipeline = LatentImagePipeline.with_sampler(exported, vqvae, cfg.sampling.scheduler)
        samples = pipeline(torch.tensor(shown), shown, SAMPLES_PER_CLASS, cfg.sampling.steps, settings.seed,
                           batch_size=len(shown) * SAMPLES_PER_CLASS)
        _log_grid(run, np.concatenate([examples, samples], axis=1), [categories[c].name for c in shown],
                  ["training image"] + [f"sample {k + 1}" for k in range(SAMPLES_PER_CLASS)],
                  "ldm_pretrain/class_samples.png")
        summary.update({"unet_steps": fitted["global_step"], "unet_final_loss": fitted["final_train_loss"],
                        "unet_seconds": fitted["seconds"]})
        class_index = {str(c.index): [c.wnid, c.name] for c in categories}
        recipe = {"recipe": ldm_recipe(demo_cfg, arch, settings), "training": summary,
                  "generator_probe": generator_probe(demo_cfg, arch.image_size)}
        save_label2img(out_dir, arch, exported.unet, vqvae, exported.class_embedding.weight.detach(),
                       global_step=fitted["global_step"],
                       extra_files={CLASS_INDEX_FILE: json.dumps(class_index, indent=0) + "\n",
                                    RECIPE_FILE: json.dumps(recipe, indent=1) + "\n"})
        if run is not None:
            run.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
        log.info("demo LDM written to %s: %s", out_dir, summary)

    train(system, loader, plan, trainer_cfg, run, export=export)
    return summary
