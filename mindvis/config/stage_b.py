"""Config section for Stage B (DC-LDM): the latent-diffusion architecture, fine-tuning and sampling.

The architecture defaults are the CompVis cin256-v2 "label2img" LDM that MinD-Vis fine-tunes (paper preset); the
demo preset shrinks it to a CPU-sized model with the same structure (64 px images, 3x16x16 latents). When a
pretrained LDM is imported (label2img `model.ckpt` + `config.yaml`, or a MinD-Vis `finetuned.pth`), the sizes come
from that file and these architecture keys are not used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SamplerName = Literal["plms", "ddim", "dpmpp"]

# Denoising steps used when `sampling.steps` is null: PLMS as the reference (250); DDIM and DPM-Solver++ reach
# comparable quality in fewer steps.
DEFAULT_SAMPLER_STEPS: dict[str, int] = {"plms": 250, "ddim": 50, "dpmpp": 25}


@dataclass(frozen=True)
class LdmArchitecture:
    """Sizes of the latent diffusion model, in the CompVis config's own terms.

    UNet (openaimodel): `model_channels` x `channel_mult` channels per level, `num_res_blocks` ResBlocks per level,
    a cross-attention SpatialTransformer at every level whose downsample factor is in `attention_resolutions`
    (and always in the middle block), `num_heads` heads per attention layer, `context_dim` wide context tokens.
    VQ first stage (taming VQModel): `vq_channels` x `vq_channel_mult`, downsampling by 2**(len(vq_channel_mult)-1),
    a codebook of `vq_num_embeddings` vectors of `latent_channels` dims. GroupNorm uses 32 groups everywhere, so every
    channel count must be a multiple of 32.
    """

    image_size: int = field(default=256, metadata={"minimum": 8, "description": "image side in px"})
    image_channels: int = field(default=3, metadata={"minimum": 1})
    model_channels: int = field(default=192, metadata={"minimum": 32})
    channel_mult: tuple[int, ...] = field(default=(1, 2, 3, 5), metadata={"minItems": 1})
    num_res_blocks: int = field(default=2, metadata={"minimum": 1})
    attention_resolutions: tuple[int, ...] = field(default=(2, 4, 8), metadata={
        "description": "UNet downsample factors (1, 2, 4, ...) whose level has cross-attention"})
    num_heads: int = field(default=1, metadata={"minimum": 1})
    transformer_depth: int = field(default=1, metadata={"minimum": 1})
    context_dim: int = field(default=512, metadata={"minimum": 1})
    vq_channels: int = field(default=128, metadata={"minimum": 32})
    vq_channel_mult: tuple[int, ...] = field(default=(1, 2, 4), metadata={"minItems": 1})
    vq_num_res_blocks: int = field(default=2, metadata={"minimum": 1})
    vq_num_embeddings: int = field(default=8192, metadata={"minimum": 2})
    vq_z_channels: int = field(default=3, metadata={"minimum": 1})
    latent_channels: int = field(default=3, metadata={"minimum": 1, "description": "codebook / UNet channels"})
    num_train_timesteps: int = field(default=1000, metadata={"minimum": 1})
    beta_start: float = field(default=0.0015, metadata={"exclusiveMinimum": 0})
    beta_end: float = field(default=0.0195, metadata={"exclusiveMinimum": 0})

    @property
    def downsample_factor(self) -> int:
        """Image px per latent px (VQ-f4 -> 4)."""
        return 2 ** (len(self.vq_channel_mult) - 1)

    @property
    def latent_size(self) -> int:
        """Latent side in latent px."""
        return self.image_size // self.downsample_factor

    @property
    def time_embed_dim(self) -> int:
        """Width of the UNet's timestep embedding (4 x model_channels, as CompVis)."""
        return 4 * self.model_channels


@dataclass(frozen=True)
class StageBTrainingConfig:
    """Fine-tuning of the conditioning stage + UNet cross-attention (MinD-Vis defaults)."""

    learning_rate: float = field(default=5.3e-5, metadata={"exclusiveMinimum": 0})
    epochs: int = field(default=500, metadata={"minimum": 1})
    batch_size: dict[str, int] = field(default_factory=lambda: {"GOD": 5, "BOLD5000": 25}, metadata={
        "description": "per dataset (the reference uses 5 for GOD, 25 for BOLD5000)"})
    grad_clip: float = field(default=0.5, metadata={"minimum": 0})
    crop_probability: float = field(default=0.5, metadata={"minimum": 0, "maximum": 1})
    crop_ratio: float = field(default=0.2, metadata={
        "minimum": 0, "maximum": 1, "description": "random crop removes this fraction of the side (256 -> 205 px)"})


@dataclass(frozen=True)
class SamplingConfig:
    """Image generation from held-out fMRI (no guidance, eta 0, as the reference)."""

    scheduler: SamplerName = "plms"
    steps: int | None = field(default=None, metadata={
        "minimum": 1, "description": "null = 250 for plms, 50 for ddim, 25 for dpmpp"})
    n_samples: int = field(default=5, metadata={"minimum": 1, "description": "images generated per fMRI sample"})
    batch_size: int = field(default=5, metadata={"minimum": 1, "description": "latents denoised together"})

    @property
    def resolved_steps(self) -> int:
        return self.steps if self.steps is not None else DEFAULT_SAMPLER_STEPS[self.scheduler]


@dataclass(frozen=True)
class StageBConfig:
    pretrained_ldm: Path | None = field(default=None, metadata={
        "description": "directory with the label2img model.ckpt + config.yaml; null = the demo ldm_pretrain output"})
    architecture: LdmArchitecture = LdmArchitecture()
    training: StageBTrainingConfig = StageBTrainingConfig()
    sampling: SamplingConfig = SamplingConfig()


# Values filling keys the user left null or omitted (see mindvis.config presets). The demo architecture has the
# label2img structure at CPU size: 64 px images -> VQ-f4 latents 3x16x16, a two-level UNet with attention at ds 2.
STAGE_B_PRESETS: dict[str, dict] = {
    "paper": {
        "architecture": {},
        "training": {"epochs": 500},
        "sampling": {"n_samples": 5},
    },
    "demo": {
        "architecture": {
            "image_size": 64, "model_channels": 32, "channel_mult": [1, 2], "attention_resolutions": [2],
            "context_dim": 64, "vq_channels": 32, "vq_channel_mult": [1, 2, 2], "vq_num_embeddings": 256,
        },
        "training": {"epochs": 20, "batch_size": {"GOD": 5, "BOLD5000": 5}},
        "sampling": {"n_samples": 2, "scheduler": "ddim", "steps": 20},
    },
}
