"""Config section `stage_b` (DC-LDM): the latent-diffusion architecture, the demo LDM pretraining, fine-tuning and
sampling.

Keys left null take the value of the preset in force (`STAGE_B_PRESETS`; paper = the MinD-Vis reference values).
The architecture describes the CompVis cin256-v2 "label2img" LDM that MinD-Vis fine-tunes (paper preset); the demo
preset shrinks it to a CPU-sized model of the same structure. When a pretrained LDM is imported (label2img
`model.ckpt` + `config.yaml`, or a MinD-Vis `finetuned.pth`) the sizes come from that file: the architecture keys
then only matter to `ldm_pretrain`, which trains the demo's stand-in for label2img. `architecture.image_size` null
means the stimuli's size (`preprocess.image_size`, what stimuli.npz holds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mindvis.errors import ConfigError

SamplerName = Literal["plms", "ddim", "dpmpp"]
ClassEmbeddingKind = Literal["per_class", "attributes"]
ConditioningInit = Literal["reference", "class_mean"]

# Denoising steps used when `sampling.steps` is null: PLMS as the reference (250); DDIM and DPM-Solver++ reach
# comparable quality in fewer steps.
DEFAULT_SAMPLER_STEPS: dict[str, int] = {"plms": 250, "ddim": 50, "dpmpp": 25}


@dataclass(frozen=True)
class LdmArchitecture:
    """Sizes of the latent diffusion model, in the CompVis config's own terms (all set: what models are built from).

    UNet (openaimodel): `model_channels` x `channel_mult` channels per level, `num_res_blocks` ResBlocks per level,
    a cross-attention SpatialTransformer at every level whose downsample factor is in `attention_resolutions`
    (and always in the middle block), `num_heads` heads per attention layer, `context_dim` wide context tokens.
    VQ first stage (taming VQModel): `vq_channels` x `vq_channel_mult`, downsampling by 2**(len(vq_channel_mult)-1),
    a codebook of `vq_num_embeddings` vectors of `latent_channels` dims. GroupNorm uses 32 groups everywhere, so every
    channel count must be a multiple of 32. The defaults are label2img's. It is also the `stage_b.architecture`
    config section: keys marked `preset` may be null there, and the config fills them when it is loaded (presets;
    image_size from preprocess.image_size).
    """

    image_size: int = field(default=256, metadata={
        "minimum": 8, "preset": True,
        "description": "image side in px; null = the stimuli's size (preprocess.image_size)"})
    image_channels: int = field(default=3, metadata={"minimum": 1})
    model_channels: int = field(default=192, metadata={"minimum": 32, "preset": True})
    channel_mult: tuple[int, ...] = field(default=(1, 2, 3, 5), metadata={"minItems": 1, "preset": True})
    num_res_blocks: int = field(default=2, metadata={"minimum": 1})
    attention_resolutions: tuple[int, ...] = field(default=(2, 4, 8), metadata={
        "preset": True, "description": "UNet downsample factors (1, 2, 4, ...) whose level has cross-attention"})
    num_heads: int = field(default=1, metadata={"minimum": 1})
    transformer_depth: int = field(default=1, metadata={"minimum": 1})
    context_dim: int = field(default=512, metadata={"minimum": 1, "preset": True})
    vq_channels: int = field(default=128, metadata={"minimum": 32, "preset": True})
    vq_channel_mult: tuple[int, ...] = field(default=(1, 2, 4), metadata={"minItems": 1, "preset": True})
    vq_num_res_blocks: int = field(default=2, metadata={"minimum": 1, "preset": True})
    vq_num_embeddings: int = field(default=8192, metadata={"minimum": 2, "preset": True})
    vq_z_channels: int = field(default=3, metadata={"minimum": 1})
    latent_channels: int = field(default=3, metadata={"minimum": 1, "description": "codebook / UNet channels"})
    num_train_timesteps: int = field(default=1000, metadata={"minimum": 1})
    beta_start: float = field(default=0.0015, metadata={"exclusiveMinimum": 0, "preset": True})
    beta_end: float = field(default=0.0195, metadata={
        "exclusiveMinimum": 0, "preset": True, "description": "last beta of the CompVis 'linear' noise schedule"})

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
class LdmPretrainConfig:
    """Demo only: the tiny label-conditioned LDM that stands in for the ImageNet label2img LDM (`ldm_pretrain`).

    It trains on freshly generated images of every demo category (never the datasets' images): first the VQ
    autoencoder, then the UNet conditioned on the category through a learned class embedding.
    """

    images_per_category: int = field(default=6, metadata={"minimum": 1})
    vq_epochs: int = field(default=5, metadata={"minimum": 1})
    unet_epochs: int = field(default=3, metadata={"minimum": 1})
    batch_size: int = field(default=16, metadata={"minimum": 1})
    vq_lr: float = field(default=3e-3, metadata={"exclusiveMinimum": 0})
    unet_lr: float = field(default=2e-3, metadata={"exclusiveMinimum": 0})
    vq_crop_px: int | None = field(default=32, metadata={
        "minimum": 8, "description": "the VQ trains on random crops of this side (it is convolutional); null = whole"})
    gradient_loss_weight: float = field(default=0.0, metadata={
        "minimum": 0, "description": "weight of the L1 loss on image gradients (sharper edges) beside pixel L1"})
    chroma_loss_weight: float = field(default=0.0, metadata={
        "minimum": 0, "description": "weight of an L1 loss on chroma (each pixel minus its grey level) beside pixel "
                                     "L1: colour is a low-variance direction the VQ otherwise learns last"})
    commitment_weight: float = field(default=0.25, metadata={"minimum": 0})
    ema_decay: float = field(default=0.0, metadata={
        "minimum": 0, "exclusiveMaximum": 1,
        "description": "the UNet written out is this exponential moving average of its weights; 0 = the last weights"})
    min_snr_gamma: float | None = field(default=None, metadata={
        "exclusiveMinimum": 0, "description": "Min-SNR loss weighting min(SNR, gamma) / SNR of the eps-MSE (it weighs "
                                              "the noisy steps that set colour and layout up); null = plain eps-MSE"})
    class_embedding: ClassEmbeddingKind = field(default="per_class", metadata={
        "description": "per_class: one free vector per category (CompVis ClassEmbedder); attributes: the sum of one "
                       "vector per shape, texture and hue, so unseen categories sit where their attributes put them"})
    attribute_dropout: float = field(default=0.0, metadata={
        "minimum": 0, "exclusiveMaximum": 1,
        "description": "with class_embedding attributes: probability of leaving one attribute vector out of a training "
                       "sample's context, so partial contexts draw plausible objects instead of blobs"})
    sample_classes: int = field(default=8, metadata={"minimum": 1, "description": "categories in the sample grid"})
    checkpoint_every_n_steps: int = field(default=50, metadata={"minimum": 1})
    seed: int = field(default=2022, metadata={"minimum": 0})

    def __post_init__(self) -> None:
        if self.attribute_dropout > 0 and self.class_embedding != "attributes":
            raise ConfigError("attribute_dropout needs a composed class embedding",
                              path="stage_b.ldm_pretrain.attribute_dropout", value=self.attribute_dropout,
                              expected="0.0 with class_embedding: per_class",
                              hint="set class_embedding: attributes, or attribute_dropout: 0.0")


@dataclass(frozen=True)
class StageBTrainingConfig:
    """Fine-tuning of the conditioning stage + UNet cross-attention (paper preset = MinD-Vis)."""

    learning_rate: float | None = field(default=None, metadata={"exclusiveMinimum": 0})
    unet_learning_rate: float | None = field(default=None, metadata={
        "minimum": 0, "description": "AdamW rate of the pretrained UNet cross-attention layers Stage B tunes; "
                                     "null = learning_rate (the reference: one rate for every trainable tensor)"})
    weight_decay: float = field(default=0.01, metadata={
        "minimum": 0, "description": "AdamW decay on every trainable tensor (the reference's AdamW default)"})
    epochs: int | dict[str, int] | None = field(default=None, metadata={
        "minimum": 1, "description": "passes over the training pairs: one number, or per dataset (GOD: 5, ...)"})
    batch_size: dict[str, int] | None = field(default=None, metadata={
        "description": "per dataset and device (the reference uses 5 for GOD, 25 for BOLD5000)"})
    grad_clip: float | None = field(default=0.5, metadata={"exclusiveMinimum": 0,
                                                           "description": "max gradient norm; null = off"})
    crop_probability: float = field(default=0.5, metadata={"minimum": 0, "maximum": 1})
    crop_ratio: float = field(default=0.2, metadata={
        "minimum": 0, "maximum": 0.9, "description": "random crop removes this fraction of the side (256 -> 205 px)"})
    val_items: int | None = field(default=None, metadata={
        "minimum": 0, "description": "training pairs held out for validation sampling (never test data); 0 = none"})
    val_every_n_epochs: int | None = field(default=None, metadata={"minimum": 1})
    keep: Literal["best", "last"] | None = field(default=None, metadata={
        "description": "weights written out: best (the reference: best validation pixel correlation) | last"})
    val_steps: int | None = field(default=None, metadata={
        "minimum": 1, "description": "sampler steps of validation samples (sampling.scheduler)"})
    checkpoint_every_n_steps: int | None = field(default=None, metadata={
        "minimum": 1, "description": "how often the resume checkpoint is refreshed"})
    conditioning_init: ConditioningInit | None = field(default=None, metadata={
        "description": "reference: fresh token mapper and time head (PyTorch default init) | class_mean: every "
                       "context token starts at the LDM's mean class vector, the time head at zero"})
    seed: int = 2022


@dataclass(frozen=True)
class SamplingConfig:
    """Image generation from held-out fMRI (no guidance, eta 0, as the reference)."""

    scheduler: SamplerName | None = field(default=None, metadata={
        "description": "plms (reference) | ddim | dpmpp; null = preset"})
    steps: int | None = field(default=None, metadata={
        "minimum": 1, "description": "null = the preset's, else 250 for plms, 50 for ddim, 25 for dpmpp"})
    n_samples: int | None = field(default=None, metadata={"minimum": 1,
                                                          "description": "images generated per fMRI sample"})
    batch_size: int = field(default=5, metadata={"minimum": 1, "description": "latents denoised together"})


@dataclass(frozen=True)
class StageBConfig:
    pretrained_ldm: Path | None = field(default=None, metadata={
        "description": "directory with the label2img model.ckpt + config.yaml; null = the demo ldm_pretrain output"})
    finetuned: Path | None = field(default=None, metadata={
        "description": "a MinD-Vis finetuned.pth or own-format Stage B directory: skips Stage B training"})
    architecture: LdmArchitecture = LdmArchitecture()
    ldm_pretrain: LdmPretrainConfig = LdmPretrainConfig()
    training: StageBTrainingConfig = StageBTrainingConfig()
    sampling: SamplingConfig = SamplingConfig()


# Values filling keys the user left null or omitted (see mindvis.config presets). The demo architecture has the
# label2img structure at CPU size: 64 px images -> VQ-f4 latents 3x16x16, a two-level UNet with attention at ds 2.
# Its noise schedule ends less noisy than label2img's (0.012, Stable Diffusion's, vs 0.0195): at the last steps of
# 0.0195 the eps-to-x0 conversion multiplies the small UNet's noise error by ~50, so samples started at 2.5x the
# latents' spread (saturated, class-blind images); at 0.012 by ~14.
STAGE_B_PRESETS: dict[str, dict] = {
    "paper": {
        "architecture": {"model_channels": 192, "channel_mult": [1, 2, 3, 5], "attention_resolutions": [2, 4, 8],
                         "context_dim": 512, "vq_channels": 128, "vq_channel_mult": [1, 2, 4],
                         "vq_num_res_blocks": 2, "vq_num_embeddings": 8192, "beta_start": 0.0015, "beta_end": 0.0195},
        "training": {"learning_rate": 5.3e-5, "epochs": {"GOD": 500, "BOLD5000": 500, "NSD": 100},
                     "batch_size": {"GOD": 5, "BOLD5000": 25, "NSD": 25},
                     "val_items": 5, "val_every_n_epochs": 10, "val_steps": 50, "checkpoint_every_n_steps": 500,
                     "conditioning_init": "reference", "keep": "best"},
        "sampling": {"scheduler": "plms", "n_samples": 5},
    },
    "demo": {
        "architecture": {"model_channels": 64, "channel_mult": [1, 2], "attention_resolutions": [2],
                         "context_dim": 64, "vq_channels": 64, "vq_channel_mult": [1, 1, 2],
                         "vq_num_res_blocks": 1, "vq_num_embeddings": 1024, "beta_start": 0.00085, "beta_end": 0.012},
        "training": {"learning_rate": 1e-3, "epochs": {"GOD": 5, "BOLD5000": 20, "NSD": 6},
                     "batch_size": {"GOD": 8, "BOLD5000": 8, "NSD": 8},
                     "val_items": 4, "val_every_n_epochs": 1, "val_steps": 10, "checkpoint_every_n_steps": 25,
                     "conditioning_init": "class_mean", "keep": "last", "unet_learning_rate": 1e-5},
        "sampling": {"scheduler": "ddim", "steps": 20, "n_samples": 2},
    },
}
