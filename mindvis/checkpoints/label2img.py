"""The pretrained-LDM directory in the CompVis label2img layout: written by the demo's LDM pretraining, read by Stage B.

A directory holds
    model.ckpt    torch.save({'state_dict': ..., 'global_step': int}) with CompVis LatentDiffusion keys:
                  `model.diffusion_model.*` (UNet), `first_stage_model.*` (VQ), `cond_stage_model.embedding.weight`
                  (the ClassEmbedder: one context token per class) and the schedule buffers (betas, alphas_cumprod,
                  alphas_cumprod_prev)
    config.yaml   the CompVis OmegaConf config (model.params.{unet_config, first_stage_config, cond_stage_config})
exactly as the released cin256-v2 label2img LDM, so the demo goes through the same import
(`mindvis.checkpoints.release_ldm.load_label2img`) as real data. The diffusers -> CompVis renaming here is the
inverse of diffusers' own single-file converters, which `to_compvis_state_dict` runs on its output to prove it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import yaml
from diffusers import UNet2DConditionModel, VQModel
from diffusers.loaders.single_file_utils import (
    DIFFUSERS_TO_LDM_MAPPING,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)

from mindvis.checkpoints.release_ldm import (
    CLASS_EMBEDDING_KEY,
    UNET_PREFIX,
    VQ_PREFIX,
    PretrainedLdm,
    load_label2img,
)
from mindvis.config.stage_b import LdmArchitecture
from mindvis.errors import CheckpointError
from mindvis.io import atomic_directory
from mindvis.models.ldm import unet_config, vq_config

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.ckpt"
CONFIG_FILE = "config.yaml"

# diffusers ResnetBlock2D parameter -> CompVis openaimodel ResBlock layer
_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
# diffusers VQ mid-block Attention parameter -> CompVis AttnBlock layer (CompVis uses 1x1 convolutions)
_VQ_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_UNET_FIXED = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
_VQ_FIXED = DIFFUSERS_TO_LDM_MAPPING["vae"]


def _unet_block(prefix: str, kind: str, rest: list[str]) -> str:
    """CompVis name of a ResBlock (slot 0) or SpatialTransformer (slot 1) parameter in input/output block `prefix`."""
    if kind == "resnets":
        return f"{prefix}.0.{_UNET_RESNET[rest[0]]}.{'.'.join(rest[1:])}"
    return f"{prefix}.1.{'.'.join(rest)}"


def compvis_unet_key(key: str, layers_per_block: int, up_attention_levels: frozenset[int]) -> str:
    """CompVis `model.diffusion_model.` key (without prefix) of diffusers UNet2DConditionModel parameter `key`.

    CompVis numbers blocks flat: input block 0 is conv_in, then per level `layers_per_block` ResBlocks(+attention) and
    a downsample; output blocks hold `layers_per_block + 1` ResBlocks(+attention) per level, the last one with the
    upsample (slot 1, or 2 behind an attention); the middle block is ResBlock, SpatialTransformer, ResBlock.
    """
    if key in _UNET_FIXED:
        return _UNET_FIXED[key]
    parts = key.split(".")
    per_level = layers_per_block + 1
    if parts[0] == "down_blocks":
        level, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":  # down_blocks.L.downsamplers.0.conv.<w>
            return f"input_blocks.{(level + 1) * per_level}.0.op.{parts[-1]}"
        return _unet_block(f"input_blocks.{level * per_level + int(parts[3]) + 1}", kind, parts[4:])
    if parts[0] == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), parts[3:]
        if kind == "attentions":
            return f"middle_block.1.{'.'.join(rest)}"
        return f"middle_block.{2 * index}.{_UNET_RESNET[rest[0]]}.{'.'.join(rest[1:])}"
    if parts[0] == "up_blocks":
        level, kind = int(parts[1]), parts[2]
        if kind == "upsamplers":  # up_blocks.L.upsamplers.0.conv.<w>
            slot = 2 if level in up_attention_levels else 1
            return f"output_blocks.{level * per_level + layers_per_block}.{slot}.conv.{parts[-1]}"
        return _unet_block(f"output_blocks.{level * per_level + int(parts[3])}", kind, parts[4:])
    raise CheckpointError("UNet parameter without a CompVis counterpart", value=key,
                          expected="a UNet2DConditionModel built by mindvis.models.ldm.build_unet")


def compvis_vq_key(key: str, n_levels: int) -> str:
    """CompVis `first_stage_model.` key (without prefix) of diffusers VQModel parameter `key`.

    CompVis numbers the decoder's up levels from the lowest resolution up (diffusers: from the top down) and calls
    the shortcut convolution `nin_shortcut`.
    """
    if key in _VQ_FIXED or key == "quantize.embedding.weight":
        return _VQ_FIXED.get(key, key)
    parts = key.split(".")
    coder, block = parts[0], parts[1]
    if block == "mid_block":
        kind, index, rest = parts[2], int(parts[3]), parts[4:]
        if kind == "attentions":
            name = ".".join(rest[:-1])
            return f"{coder}.mid.attn_1.{_VQ_ATTENTION[name]}.{rest[-1]}"
        return f"{coder}.mid.block_{index + 1}.{'.'.join(rest).replace('conv_shortcut', 'nin_shortcut')}"
    level = int(parts[2]) if coder == "encoder" else n_levels - 1 - int(parts[2])
    stage = "down" if coder == "encoder" else "up"
    if parts[3] in ("downsamplers", "upsamplers"):  # <coder>.<x>_blocks.L.<x>samplers.0.conv.<w>
        return f"{coder}.{stage}.{level}.{parts[3][:-2]}.conv.{parts[-1]}"
    rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
    return f"{coder}.{stage}.{level}.block.{parts[4]}.{rest}"


def _unet_state(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    config = unet.config
    up_attention = frozenset(level for level, kind in enumerate(config.up_block_types) if "CrossAttn" in kind)
    return {UNET_PREFIX + compvis_unet_key(k, config.layers_per_block, up_attention): v
            for k, v in unet.state_dict().items()}


def _vq_state(vqvae: VQModel) -> dict[str, torch.Tensor]:
    n_levels = len(vqvae.config.block_out_channels)
    state = {}
    for key, value in vqvae.state_dict().items():
        name = compvis_vq_key(key, n_levels)
        if ".mid.attn_1." in name and name.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # CompVis AttnBlock q/k/v/proj_out are 1x1 Conv2d
        state[VQ_PREFIX + name] = value
    return state


def _check_inverse(converted: dict[str, torch.Tensor], original: dict[str, torch.Tensor], what: str) -> None:
    """diffusers' converter applied to our CompVis names must give back exactly the module's state dict."""
    same_keys = set(converted) == set(original)
    if not same_keys or any(not torch.equal(converted[k], original[k]) for k in original):
        lost = sorted(set(original) - set(converted))[:3]
        raise CheckpointError(f"the {what} does not convert to the CompVis layout and back", value=lost,
                              expected="a module built by mindvis.models.ldm (label2img structure)")


def schedule_buffers(arch: LdmArchitecture) -> dict[str, torch.Tensor]:
    """The DDPM buffers CompVis LatentDiffusion stores for its schedule (float64 maths, stored as float32).

    betas (linear in sqrt), their cumulative alphas, and the forward / posterior coefficients derived from them
    (posterior variance without the v_posterior mix, as label2img: v_posterior 0).
    """
    betas = torch.linspace(arch.beta_start**0.5, arch.beta_end**0.5, arch.num_train_timesteps,
                           dtype=torch.float64) ** 2
    cumprod = torch.cumprod(1.0 - betas, dim=0)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), cumprod[:-1]])
    posterior_variance = betas * (1.0 - previous) / (1.0 - cumprod)
    buffers = {
        "betas": betas,
        "alphas_cumprod": cumprod,
        "alphas_cumprod_prev": previous,
        "sqrt_alphas_cumprod": cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - cumprod).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / cumprod).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / cumprod - 1.0).sqrt(),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * previous.sqrt() / (1.0 - cumprod),
        "posterior_mean_coef2": (1.0 - previous) * (1.0 - betas).sqrt() / (1.0 - cumprod),
    }
    return {name: value.float() for name, value in buffers.items()}


def to_compvis_state_dict(unet: UNet2DConditionModel, vqvae: VQModel, arch: LdmArchitecture,
                          class_embedding: torch.Tensor) -> dict[str, torch.Tensor]:
    """A CompVis LatentDiffusion state dict of label2img structure (tensors detached, on CPU).

    Args:
        unet, vqvae: modules built from `arch` (mindvis.models.ldm.build_unet / build_vqvae).
        class_embedding: (n_classes, context_dim) the ClassEmbedder table (one context token per class).
    Raises:
        CheckpointError: the modules do not round-trip through diffusers' CompVis converters.
    """
    unet_state, vq_state = _unet_state(unet), _vq_state(vqvae)
    _check_inverse(convert_ldm_unet_checkpoint(unet_state, unet_config(arch)), unet.state_dict(), "UNet")
    _check_inverse(convert_ldm_vae_checkpoint(vq_state, vq_config(arch)) | {
        "quantize.embedding.weight": vq_state[VQ_PREFIX + "quantize.embedding.weight"]}, vqvae.state_dict(), "VQ")
    state: dict[str, torch.Tensor] = OrderedDict(schedule_buffers(arch))
    state.update(unet_state)
    state.update(vq_state)
    state[CLASS_EMBEDDING_KEY] = class_embedding
    return OrderedDict((k, v.detach().cpu().contiguous()) for k, v in state.items())


def compvis_config(arch: LdmArchitecture, n_classes: int) -> dict[str, Any]:
    """The label2img-style OmegaConf config of `arch` (the CompVis module paths of the original release)."""
    return {"model": {
        "base_learning_rate": 1.0e-4,
        "target": "ldm.models.diffusion.ddpm.LatentDiffusion",
        "params": {
            "linear_start": arch.beta_start, "linear_end": arch.beta_end, "timesteps": arch.num_train_timesteps,
            "num_timesteps_cond": 1, "log_every_t": 200, "first_stage_key": "image", "cond_stage_key": "class_label",
            "image_size": arch.latent_size, "channels": arch.latent_channels, "cond_stage_trainable": True,
            "conditioning_key": "crossattn", "monitor": "val/loss_simple_ema", "use_ema": False,
            "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": {
                "image_size": arch.latent_size, "in_channels": arch.latent_channels,
                "out_channels": arch.latent_channels, "model_channels": arch.model_channels,
                "attention_resolutions": list(arch.attention_resolutions), "num_res_blocks": arch.num_res_blocks,
                "channel_mult": list(arch.channel_mult), "num_heads": arch.num_heads,
                "use_spatial_transformer": True, "transformer_depth": arch.transformer_depth,
                "context_dim": arch.context_dim, "use_checkpoint": False, "legacy": False}},
            "first_stage_config": {"target": "ldm.models.autoencoder.VQModelInterface", "params": {
                "embed_dim": arch.latent_channels, "n_embed": arch.vq_num_embeddings,
                "ddconfig": {"double_z": False, "z_channels": arch.vq_z_channels, "resolution": arch.image_size,
                             "in_channels": arch.image_channels, "out_ch": arch.image_channels,
                             "ch": arch.vq_channels, "ch_mult": list(arch.vq_channel_mult),
                             "num_res_blocks": arch.vq_num_res_blocks, "attn_resolutions": [], "dropout": 0.0},
                "lossconfig": {"target": "torch.nn.Identity"}}},
            "cond_stage_config": {"target": "ldm.modules.encoders.modules.ClassEmbedder", "params": {
                "n_classes": n_classes, "embed_dim": arch.context_dim, "key": "class_label"}},
        },
    }}


def save_label2img(directory: str | Path, arch: LdmArchitecture, unet: UNet2DConditionModel, vqvae: VQModel,
                   class_embedding: torch.Tensor, global_step: int = 0,
                   extra_files: dict[str, str] | None = None) -> Path:
    """Write a pretrained LDM as `model.ckpt` + `config.yaml` (CompVis label2img layout) to `directory`, atomically.

    `extra_files` (file name -> text) are written into the same directory in the same atomic step (the demo LDM's
    class index and recipe); readers of the layout ignore them.
    """
    directory = Path(directory)
    state = to_compvis_state_dict(unet, vqvae, arch, class_embedding)
    config = compvis_config(arch, n_classes=int(class_embedding.shape[0]))
    with atomic_directory(directory) as tmp:
        torch.save({"state_dict": state, "global_step": int(global_step)}, tmp / CHECKPOINT_FILE)
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    log.info("saved pretrained LDM (CompVis label2img layout) to %s", directory)
    return directory


def _checkpoint_path(path: Path) -> Path:
    return path / CHECKPOINT_FILE if path.is_dir() else path


def load_pretrained_ldm(path: str | Path, image_size: int | None = None) -> PretrainedLdm:
    """The pretrained LDM Stage B starts from: a label2img directory (model.ckpt [+ config.yaml]) or model.ckpt.

    Args:
        path: the directory (config.yaml beside model.ckpt is used when present) or the model.ckpt file itself.
        image_size: image side in px to generate at (sets the latent size); None = the LDM's own.
    Raises:
        CheckpointError: nothing loadable at `path` (missing files, unknown layout).
    """
    path = Path(path)
    ckpt = _checkpoint_path(path)
    if not ckpt.is_file():
        raise CheckpointError("pretrained LDM checkpoint not found", path=ckpt,
                              expected=f"a directory with {CHECKPOINT_FILE} (+ {CONFIG_FILE}) or a model.ckpt file",
                              hint="set stage_b.pretrained_ldm to the label2img download "
                                   "(demo: the ldm_pretrain rule writes it)")
    config = ckpt.parent / CONFIG_FILE
    return load_label2img(ckpt, config if config.is_file() else None, image_size=image_size)
