"""The fMRI-conditioned latent diffusion model (MinD-Vis DC-LDM) assembled from stock diffusers components.

- first stage: `diffusers.VQModel` configured as the CompVis VQ-f4 (encode without quantization, decode quantizes);
- denoiser: `diffusers.UNet2DConditionModel` configured as the CompVis openaimodel UNet with SpatialTransformers
  (1x1-conv projections, `attention_head_dim` = number of heads, `class_embed_type="identity"` so the
  time-conditioning head's output is added to the timestep embedding through `class_labels`);
- conditioning: `FmriConditioner` (fMRI encoder + token mapper) and `TimeConditioningHead`;
- noise schedule: CompVis "linear" betas (linear in sqrt(beta)) = diffusers "scaled_linear"; PNDM (PLMS), DDIM and
  DPM-Solver++ samplers share it.
These choices reproduce the reference implementation's outputs to float32 precision (see tests/models/test_ldm*).
"""

from __future__ import annotations

import re
from typing import get_args

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    PNDMScheduler,
    UNet2DConditionModel,
    VQModel,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import nn

from mindvis.config.stage_b import LdmArchitecture, SamplerName
from mindvis.errors import ConfigError
from mindvis.models.conditioning import FmriConditioner, TimeConditioningHead, TokenMapper
from mindvis.models.mbm import FmriEncoder

SAMPLERS: tuple[str, ...] = get_args(SamplerName)
NORM_GROUPS = 32  # CompVis normalizes with GroupNorm(32) in both the UNet and the VQ autoencoder

# UNet parameters fine-tuned in Stage B besides the conditioning stage: each transformer block's cross-attention
# (attn2) and the LayerNorm in front of it (norm2). ResNet blocks also have a `norm2` in diffusers naming, so the
# norm is matched inside transformer blocks only.
_CROSS_ATTENTION_PARAM = re.compile(r"\.attn2\.|transformer_blocks\.\d+\.norm2\.")


def is_cross_attention(name: str) -> bool:
    """Whether a UNet parameter name belongs to a cross-attention layer or its norm (Stage B's trainable UNet part)."""
    return _CROSS_ATTENTION_PARAM.search(name) is not None


def check_architecture(arch: LdmArchitecture, where: str = "stage_b.architecture") -> None:
    """Raise ConfigError when `arch` cannot be built (GroupNorm divisibility, image/latent sizes)."""
    widths = {f"model_channels x {m}": arch.model_channels * m for m in arch.channel_mult}
    widths.update({f"vq_channels x {m}": arch.vq_channels * m for m in arch.vq_channel_mult})
    bad = {name: width for name, width in widths.items() if width % NORM_GROUPS}
    if bad:
        raise ConfigError("LDM channel counts must be multiples of 32 (GroupNorm with 32 groups)", path=where,
                          value=bad, expected="multiples of 32", hint="change model_channels / vq_channels")
    unet_factor = 2 ** (len(arch.channel_mult) - 1)
    if arch.image_size % arch.downsample_factor or arch.latent_size % unet_factor:
        raise ConfigError("image size does not divide into the VQ and UNet downsampling", path=f"{where}.image_size",
                          value=arch.image_size,
                          expected=f"a multiple of {arch.downsample_factor * unet_factor}",
                          hint="pick an image size that is a power-of-two multiple of the downsampling")


def unet_config(arch: LdmArchitecture) -> dict:
    """UNet2DConditionModel keyword arguments equivalent to the CompVis openaimodel UNet of `arch`."""
    levels = len(arch.channel_mult)
    has_attention = [2**level in arch.attention_resolutions for level in range(levels)]
    return {
        "sample_size": arch.latent_size,
        "in_channels": arch.latent_channels,
        "out_channels": arch.latent_channels,
        "down_block_types": tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in has_attention),
        "up_block_types": tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(has_attention)),
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "block_out_channels": tuple(arch.model_channels * m for m in arch.channel_mult),
        "layers_per_block": arch.num_res_blocks,
        "transformer_layers_per_block": arch.transformer_depth,
        "cross_attention_dim": arch.context_dim,
        "attention_head_dim": arch.num_heads,  # diffusers' name; in this code path it is the number of heads
        "use_linear_projection": False,  # CompVis proj_in / proj_out are 1x1 convolutions
        "class_embed_type": "identity",  # time-conditioning head output is added to the timestep embedding
        "norm_num_groups": NORM_GROUPS,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
    }


def vq_config(arch: LdmArchitecture) -> dict:
    """VQModel keyword arguments equivalent to the CompVis VQModelInterface of `arch` (scale factor 1)."""
    levels = len(arch.vq_channel_mult)
    return {
        "in_channels": arch.image_channels,
        "out_channels": arch.image_channels,
        "down_block_types": ("DownEncoderBlock2D",) * levels,
        "up_block_types": ("UpDecoderBlock2D",) * levels,
        "block_out_channels": tuple(arch.vq_channels * m for m in arch.vq_channel_mult),
        "layers_per_block": arch.vq_num_res_blocks,
        "latent_channels": arch.vq_z_channels,
        "vq_embed_dim": arch.latent_channels,
        "num_vq_embeddings": arch.vq_num_embeddings,
        "sample_size": arch.image_size,
        "norm_num_groups": NORM_GROUPS,
        "scaling_factor": 1.0,
    }


def build_unet(arch: LdmArchitecture) -> UNet2DConditionModel:
    check_architecture(arch)
    return UNet2DConditionModel(**unet_config(arch))


def build_vqvae(arch: LdmArchitecture) -> VQModel:
    check_architecture(arch)
    return VQModel(**vq_config(arch))


def schedule_config(arch: LdmArchitecture) -> dict:
    """Scheduler keyword arguments for the CompVis training schedule of `arch`."""
    return {
        "num_train_timesteps": arch.num_train_timesteps,
        "beta_start": arch.beta_start,
        "beta_end": arch.beta_end,
        "beta_schedule": "scaled_linear",  # CompVis "linear": linspace(sqrt(start), sqrt(end))**2
    }


def make_sampler(name: str, arch: LdmArchitecture) -> SchedulerMixin:
    """A fresh (stateful) diffusers scheduler for sampling: "plms", "ddim" (eta 0) or "dpmpp" (DPM-Solver++ 2M).

    PLMS and DDIM use the CompVis step grid (uniform, offset 1, alpha_prev of the last step = alphas_cumprod[0]),
    which is what the reference's PLMSSampler/DDIMSampler do.
    """
    common = schedule_config(arch)
    if name == "plms":
        return PNDMScheduler(**common, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
    if name == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    if name == "dpmpp":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
    raise ConfigError("unknown sampler", path="stage_b.sampling.scheduler", value=name,
                      expected=f"one of {list(SAMPLERS)}")


def alphas_cumprod(arch: LdmArchitecture) -> torch.Tensor:
    """(T,) float32 cumulative products of (1 - beta), computed in float64 like the reference's buffers."""
    betas = np.linspace(arch.beta_start**0.5, arch.beta_end**0.5, arch.num_train_timesteps, dtype=np.float64) ** 2
    return torch.from_numpy(np.cumprod(1.0 - betas)).float()


class ConditionedLdm(nn.Module):
    """A UNet denoising latents (N, c, h, w) under a conditioning: what FmriLDM and ClassConditionedLdm share.

    Subclasses turn their input (fMRI, class labels) into the UNet's two conditioning paths with `condition`:
    a cross-attention context (N, tokens, C) and a vector (N, E) added to the timestep embedding.
    """

    def __init__(self, architecture: LdmArchitecture, unet: UNet2DConditionModel) -> None:
        super().__init__()
        self.architecture = architecture
        self.unet = unet
        self.register_buffer("alphas_cumprod", alphas_cumprod(architecture), persistent=False)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(c, h, w) of one latent at the architecture's image size."""
        size = self.architecture.latent_size
        return (self.architecture.latent_channels, size, size)

    def condition(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs (N, ...) -> (context (N, tokens, C), time conditioning (N, E))."""
        raise NotImplementedError

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                time_cond: torch.Tensor) -> torch.Tensor:
        """Noise prediction eps (N, c, h, w) for noisy latents x_t at integer timesteps t (N,) or scalar."""
        return self.unet(x_t, t, encoder_hidden_states=context, class_labels=time_cond).sample

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward diffusion q(x_t | x_0): sqrt(a_t) x_0 + sqrt(1 - a_t) noise, a_t = alphas_cumprod[t]."""
        a_t = self.alphas_cumprod[t].to(latents.dtype).view(-1, 1, 1, 1)
        return a_t.sqrt() * latents + (1.0 - a_t).sqrt() * noise


class FmriLDM(ConditionedLdm):
    """DC-LDM: VQ first stage + fMRI-conditioned UNet. Images are NCHW in [-1, 1]; latents (N, c, h, w).

    Args:
        architecture: the LDM sizes (image size sets the latent size used for sampling).
        unet, vqvae: diffusers modules built from `architecture` (see build_unet / build_vqvae).
        conditioner: fMRI (N, V) -> context (N, 77, context_dim).
        time_head: context -> (N, time_embed_dim) added to the timestep embedding.
    """

    def __init__(self, architecture: LdmArchitecture, unet: UNet2DConditionModel, vqvae: VQModel,
                 conditioner: FmriConditioner, time_head: TimeConditioningHead) -> None:
        super().__init__(architecture, unet)
        self.vqvae = vqvae
        self.conditioner = conditioner
        self.time_head = time_head

    def condition(self, fmri: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """fmri (N, V) -> (context (N, 77, C), time conditioning (N, E))."""
        context = self.conditioner(fmri)
        return context, self.time_head(context)

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, fmri: torch.Tensor) -> torch.Tensor:
        """Noise prediction eps (N, c, h, w) conditioned on fmri (N, V)."""
        context, time_cond = self.condition(fmri)
        return self.denoise(x_t, t, context, time_cond)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, H, W) in [-1, 1] -> latents (N, c, H/f, W/f), not quantized (as CompVis)."""
        return self.vqvae.encode(images).latents

    def decode(self, latents: torch.Tensor, quantize: bool = True) -> torch.Tensor:
        """latents -> images (N, 3, H, W), nominally in [-1, 1]; snaps to the codebook first unless quantize=False."""
        return self.vqvae.decode(latents, force_not_quantize=not quantize).sample

    def codebook_indices(self, latents: torch.Tensor) -> torch.Tensor:
        """Nearest-codebook indices (N, h, w) int64 of latents (N, c, h, w)."""
        _, _, (_, _, indices) = self.vqvae.quantize(latents)
        n, _, h, w = latents.shape
        return indices.reshape(n, h, w)

    def training_loss(self, images: torch.Tensor, fmri: torch.Tensor, noise: torch.Tensor | None = None,
                      t: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Stage-B objective: mean squared error between the UNet's noise prediction and the added noise.

        Args:
            images: (N, 3, H, W) in [-1, 1]; encoded by the frozen first stage without gradients.
            fmri: (N, V) conditioning fMRI.
            noise: (N, c, h, w) Gaussian noise; drawn when None.
            t: (N,) int64 timesteps in [0, T); uniform when None.
            generator: for drawing t and noise reproducibly.
        Returns:
            scalar loss (mean over all latent elements).
        """
        with torch.no_grad():
            latents = self.encode(images)
        draw_on = generator.device if generator is not None else latents.device
        if t is None:
            t = torch.randint(0, self.architecture.num_train_timesteps, (latents.shape[0],), generator=generator,
                              device=draw_on).to(latents.device)
        if noise is None:
            noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype,
                                device=draw_on).to(latents.device)
        eps = self.predict_noise(self.add_noise(latents, noise, t), t, fmri)
        return F.mse_loss(eps, noise)

    def apply_trainable_split(self) -> list[str]:
        """Freeze everything but the Stage-B trainable set and return the trainable parameter names (sorted).

        Trainable, as the reference: the whole conditioning stage (fMRI encoder + token mapper), the
        time-conditioning head, and the UNet's cross-attention layers and their norms. The VQ first stage and
        the rest of the UNet stay frozen.
        """
        names = []
        for name, param in self.named_parameters():
            trainable = (name.startswith(("conditioner.", "time_head."))
                         or (name.startswith("unet.") and is_cross_attention(name)))
            param.requires_grad_(trainable)
            if trainable:
                names.append(name)
        return sorted(names)


def assemble_fmri_ldm(architecture: LdmArchitecture, unet: UNet2DConditionModel, vqvae: VQModel,
                      encoder: FmriEncoder) -> FmriLDM:
    """A DC-LDM for Stage-B training: a pretrained (or fresh) UNet + VQ, the Stage-A fMRI encoder (N, V) -> (N, L, D),
    and a newly initialised token mapper and time-conditioning head (as the reference, default PyTorch init)."""
    mapper = TokenMapper(encoder.num_patches, encoder.embed_dim, architecture.context_dim)
    conditioner = FmriConditioner(encoder, mapper)
    time_head = TimeConditioningHead(architecture.context_dim, architecture.time_embed_dim)
    return FmriLDM(architecture, unet, vqvae, conditioner, time_head)


class AttributeEmbedding(nn.Module):
    """A class embedding composed from class attributes: class c's vector is the sum of one learned vector per
    attribute value of c (e.g. shape + texture + hue).

    A class then sits where its attributes put it, so a map that predicts the attributes (an fMRI decoder trained on
    other classes) lands near the vectors of classes it never saw; a free per-class table gives them arbitrary
    places. `weight` is the resulting (n_classes, dim) table, as an nn.Embedding's.

    In training mode each attribute's vector is left out of a sample's sum with probability `dropout`, so the UNet
    also learns to draw a plausible object from partial information (an object of a known hue and any shape) instead
    of a blob: an fMRI-predicted context is such partial information.

    Args:
        attributes: (n_classes, A) int64, class c's value index of each of the A attributes.
        sizes: number of values of each attribute (A entries).
        dim: embedding width.
        dropout: probability of leaving out one attribute vector of one sample in training mode.
    """

    def __init__(self, attributes: torch.Tensor, sizes: tuple[int, ...], dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = dropout
        self.register_buffer("attributes", attributes.long())
        self.tables = nn.ModuleList(nn.Embedding(n, dim) for n in sizes)
        for table in self.tables:  # the sum of A unit-variance vectors would have variance A
            nn.init.normal_(table.weight, std=len(sizes) ** -0.5)

    def attribute_vectors(self, labels: torch.Tensor) -> torch.Tensor:
        """labels (N,) int64 -> (N, A, dim): each class's vector of each of its attribute values."""
        return torch.stack([table(self.attributes[labels, a]) for a, table in enumerate(self.tables)], dim=1)

    @property
    def weight(self) -> torch.Tensor:
        """(n_classes, dim) the composed class vectors."""
        return self.attribute_vectors(torch.arange(len(self.attributes), device=self.attributes.device)).sum(dim=1)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """labels (N,) int64 -> (N, dim)."""
        parts = self.attribute_vectors(labels)
        if self.training and self.dropout > 0:
            keep = torch.rand(parts.shape[:2], device=parts.device) >= self.dropout  # (N, A)
            parts = parts * keep[..., None]
        return parts.sum(dim=1)


class ClassConditionedLdm(ConditionedLdm):
    """label2img in miniature: a UNet denoising VQ latents, conditioned on a class through a class embedding.

    The class embedding (labels (N,) -> (N, C); an nn.Embedding as the CompVis ClassEmbedder, or an
    AttributeEmbedding) gives a one-token cross-attention context (N, 1, C). The UNet's `class_labels` input (the
    time-conditioning path MinD-Vis adds later) receives zeros.
    """

    def __init__(self, architecture: LdmArchitecture, unet: UNet2DConditionModel, class_embedding: nn.Module
                 ) -> None:
        super().__init__(architecture, unet)
        self.class_embedding = class_embedding

    def condition(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """labels (N,) int64 -> (context (N, 1, C), zero time conditioning (N, E))."""
        context = self.class_embedding(labels)[:, None, :]
        return context, context.new_zeros(len(labels), self.architecture.time_embed_dim)

    def training_loss(self, latents: torch.Tensor, labels: torch.Tensor, min_snr_gamma: float | None = None
                      ) -> torch.Tensor:
        """eps-MSE at uniform t for clean latents (N, c, h, w) of classes `labels` (N,).

        With `min_snr_gamma`, each sample's MSE is weighted by min(SNR(t), gamma) / SNR(t) (Min-SNR; Hang et al.
        2023): the nearly clean steps, whose eps targets are easy, stop dominating the gradient.
        """
        t = torch.randint(0, self.architecture.num_train_timesteps, (len(latents),), device=latents.device)
        noise = torch.randn_like(latents)
        context, time_cond = self.condition(labels)
        per_sample = (self.denoise(self.add_noise(latents, noise, t), t, context, time_cond) - noise
                      ).pow(2).mean(dim=(1, 2, 3))
        if min_snr_gamma is not None:
            a_t = self.alphas_cumprod[t]
            snr = a_t / (1.0 - a_t)
            per_sample = per_sample * snr.clamp(max=min_snr_gamma) / snr
        return per_sample.mean()
