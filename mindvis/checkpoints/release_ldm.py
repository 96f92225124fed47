"""Import of the CompVis / MinD-Vis latent-diffusion release layouts into diffusers modules.

Two layouts share the CompVis `LatentDiffusion` state-dict keys:
- the pretrained "label2img" LDM MinD-Vis starts from: `model.ckpt` ({'state_dict': ...}) + its OmegaConf
  `config.yaml`; keys `model.diffusion_model.*` (UNet), `first_stage_model.*` (VQ), `cond_stage_model.embedding.*`
  (the class embedder, not used here) and the diffusion schedule buffers;
- the MinD-Vis Stage-B result `finetuned.pth` ({'model_state_dict', 'config', 'state'}), which adds the fMRI
  conditioning stage (`cond_stage_model.{mae,channel_mapper,dim_mapper}.*`) and the time-conditioning head
  (`model.diffusion_model.time_embed_condtion.*`) and carries no LDM config.

UNet and VQ keys are renamed with diffusers' own single-file converters; their output is checked for completeness
here because they skip keys they do not know. Without a config.yaml the sizes are read off the weight shapes
(`infer_architecture`); the one size weights cannot show is the number of attention heads (1 in label2img).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from diffusers import UNet2DConditionModel, VQModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

from mindvis.checkpoints.safe_pickle import load_release_checkpoint
from mindvis.checkpoints.stage_a import load_fmri_encoder, load_weights_into
from mindvis.config.stage_b import LdmArchitecture
from mindvis.errors import CheckpointError
from mindvis.models.conditioning import FmriConditioner, TimeConditioningHead, TokenMapper
from mindvis.models.ldm import ClassConditionedLdm, FmriLDM, build_unet, build_vqvae, unet_config, vq_config

log = logging.getLogger(__name__)

UNET_PREFIX = "model.diffusion_model."
VQ_PREFIX = "first_stage_model."
TIME_HEAD_PREFIX = UNET_PREFIX + "time_embed_condtion."  # sic: the reference's spelling
COND_PREFIX = "cond_stage_model."
CLASS_EMBEDDING_KEY = COND_PREFIX + "embedding.weight"
ENCODER_PREFIX = COND_PREFIX + "mae."

# CompVis layer index -> our module name in TimeConditioningHead (the token mapper keeps the reference's names).
_TIME_HEAD_KEYS = {"0": "token_reducer.0", "1": "token_reducer.1", "2": "projection"}


@dataclass
class PretrainedLdm:
    """A pretrained LDM as diffusers modules: the UNet (without fMRI conditioning) and the VQ first stage.

    Attributes:
        class_embedding: (n_classes, context_dim) the label2img class embedder's table (the context token of
            each class), or None when the checkpoint has none.
    """

    architecture: LdmArchitecture
    unet: UNet2DConditionModel
    vqvae: VQModel
    class_embedding: torch.Tensor | None = None

    def class_conditioned(self) -> ClassConditionedLdm:
        """The LDM as label2img trained it: its UNet conditioned on its class table (the class token as context).

        Raises:
            CheckpointError: the checkpoint has no class embedding (not a label2img LDM).
        """
        if self.class_embedding is None:
            raise CheckpointError("the pretrained LDM has no class embedding",
                                  value="cond_stage_model.embedding.weight",
                                  expected="a label2img checkpoint (ClassEmbedder cond stage)")
        return ClassConditionedLdm(self.architecture, self.unet, nn.Embedding.from_pretrained(self.class_embedding))


def _shape(state: dict[str, torch.Tensor], key: str, path: Path | str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError("the checkpoint lacks a tensor of the CompVis LatentDiffusion layout", path=path,
                              value=key, expected="keys model.diffusion_model.* and first_stage_model.*",
                              hint="is this a label2img model.ckpt or a MinD-Vis finetuned.pth?")
    return tuple(state[key].shape)


def _unet_sizes(state: dict[str, torch.Tensor], path: Path | str) -> dict[str, Any]:
    """UNet sizes from `model.diffusion_model.*` shapes: input_blocks.<i> are ResBlocks (+ attention) or a
    downsample (`0.op`) that closes a level."""
    model_channels, latent_channels, *_ = _shape(state, UNET_PREFIX + "input_blocks.0.0.weight", path)
    levels: list[list[int]] = [[]]  # ResBlock output widths per level
    attention_levels: set[int] = set()
    block = 1
    while any(k.startswith(f"{UNET_PREFIX}input_blocks.{block}.") for k in state):
        prefix = f"{UNET_PREFIX}input_blocks.{block}."
        if prefix + "0.op.weight" in state:
            levels.append([])
        else:
            levels[-1].append(_shape(state, prefix + "0.in_layers.2.weight", path)[0])
            if prefix + "1.proj_in.weight" in state:
                attention_levels.add(len(levels) - 1)
            elif any(k.startswith(prefix + "1.") for k in state):
                raise CheckpointError("unsupported UNet attention block (not a SpatialTransformer)", path=path,
                                      value=prefix + "1", expected="use_spatial_transformer: true (label2img)")
        block += 1
    blocks_per_level = {len(widths) for widths in levels}
    if len(blocks_per_level) != 1 or 0 in blocks_per_level:
        raise CheckpointError("UNet levels have different numbers of ResBlocks", path=path,
                              value=[len(widths) for widths in levels], expected="the same num_res_blocks per level")
    depth = len({m.group(1) for k in state
                 if (m := re.match(re.escape(UNET_PREFIX) + r"middle_block\.1\.transformer_blocks\.(\d+)\.", k))})
    return {
        "latent_channels": latent_channels,
        "model_channels": model_channels,
        "channel_mult": tuple(widths[-1] // model_channels for widths in levels),
        "num_res_blocks": blocks_per_level.pop(),
        "attention_resolutions": tuple(2**level for level in sorted(attention_levels)),
        "transformer_depth": depth,
        "context_dim": _shape(state, UNET_PREFIX + "middle_block.1.transformer_blocks.0.attn2.to_k.weight", path)[1],
    }


def _vq_sizes(state: dict[str, torch.Tensor], path: Path | str) -> dict[str, Any]:
    """VQ first-stage sizes from `first_stage_model.*` shapes (encoder.down.<level>.block.<i>, the codebook)."""
    vq_channels, image_channels, *_ = _shape(state, VQ_PREFIX + "encoder.conv_in.weight", path)
    widths = []
    while VQ_PREFIX + f"encoder.down.{len(widths)}.block.0.conv1.weight" in state:
        level = len(widths)
        if any(k.startswith(f"{VQ_PREFIX}encoder.down.{level}.attn.") for k in state):
            raise CheckpointError("VQ first stages with attention inside the down levels are not supported",
                                  path=path, value=f"encoder.down.{level}.attn", expected="attn_resolutions: []")
        widths.append(_shape(state, VQ_PREFIX + f"encoder.down.{level}.block.0.conv1.weight", path)[0])
    n_embed, embed_dim = _shape(state, VQ_PREFIX + "quantize.embedding.weight", path)
    return {
        "image_channels": image_channels,
        "vq_channels": vq_channels,
        "vq_channel_mult": tuple(w // vq_channels for w in widths),
        "vq_num_res_blocks": len({k.split(".")[5] for k in state if k.startswith(VQ_PREFIX + "encoder.down.0.block.")}),
        "vq_num_embeddings": n_embed,
        "vq_z_channels": _shape(state, VQ_PREFIX + "encoder.conv_out.weight", path)[0],
        "codebook_dim": embed_dim,
    }


def infer_architecture(state: dict[str, torch.Tensor], image_size: int, num_heads: int = 1,
                       path: Path | str = "<state dict>") -> LdmArchitecture:
    """Read the LDM sizes off the CompVis weight shapes (the noise schedule: see schedule_from_betas).

    Args:
        state: a CompVis LatentDiffusion state dict (UNet + first stage keys).
        image_size: image side in px (weights do not fix it; it sets the latent size used for sampling).
        num_heads: attention heads per layer (weights do not show it; label2img uses 1).
    Raises:
        CheckpointError: keys missing, or a structure the diffusers recipe does not cover.
    """
    unet, vq = _unet_sizes(state, path), _vq_sizes(state, path)
    codebook_dim = vq.pop("codebook_dim")
    if codebook_dim != unet["latent_channels"]:
        raise CheckpointError("the UNet input channels differ from the VQ codebook dimension", path=path,
                              value={"unet_in": unet["latent_channels"], "codebook_dim": codebook_dim},
                              expected="equal (the UNet denoises first-stage latents)")
    return LdmArchitecture(image_size=image_size, num_heads=num_heads, **unet, **vq)


def architecture_from_yaml(config_yaml: str | Path) -> LdmArchitecture:
    """LDM sizes from a CompVis OmegaConf config (e.g. label2img config.yaml); image size = latent size x f."""
    config_yaml = Path(config_yaml)
    try:
        params = yaml.safe_load(config_yaml.read_text())["model"]["params"]
        unet = params["unet_config"]["params"]
        first = params["first_stage_config"]["params"]
        dd = first["ddconfig"]
        if dd.get("attn_resolutions"):
            raise CheckpointError("VQ first stages with attention inside the down levels are not supported",
                                  path=config_yaml, value=dd["attn_resolutions"], expected="attn_resolutions: []")
        if not unet.get("use_spatial_transformer", False):
            raise CheckpointError("only UNets with SpatialTransformer cross-attention are supported",
                                  path=config_yaml, value=unet.get("use_spatial_transformer"),
                                  expected="use_spatial_transformer: true")
        if "num_head_channels" in unet and unet["num_head_channels"] not in (None, -1):
            raise CheckpointError("num_head_channels configs are not supported (label2img sets num_heads)",
                                  path=config_yaml, value=unet["num_head_channels"], expected="num_heads: <int>")
        latent_size = int(params["image_size"])
        arch = LdmArchitecture(
            image_size=latent_size * 2 ** (len(dd["ch_mult"]) - 1),
            image_channels=int(dd["in_channels"]),
            model_channels=int(unet["model_channels"]),
            channel_mult=tuple(int(m) for m in unet["channel_mult"]),
            num_res_blocks=int(unet["num_res_blocks"]),
            attention_resolutions=tuple(int(r) for r in unet["attention_resolutions"]),
            num_heads=int(unet["num_heads"]),
            transformer_depth=int(unet.get("transformer_depth", 1)),
            context_dim=int(unet["context_dim"]),
            vq_channels=int(dd["ch"]),
            vq_channel_mult=tuple(int(m) for m in dd["ch_mult"]),
            vq_num_res_blocks=int(dd["num_res_blocks"]),
            vq_num_embeddings=int(first["n_embed"]),
            vq_z_channels=int(dd["z_channels"]),
            latent_channels=int(first["embed_dim"]),
            num_train_timesteps=int(params.get("timesteps", 1000)),
            beta_start=float(params.get("linear_start", 1e-4)),
            beta_end=float(params.get("linear_end", 2e-2)),
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot read the LDM config ({type(exc).__name__}: {exc})", path=config_yaml,
                              expected="a CompVis LatentDiffusion config.yaml (model.params.unet_config, "
                                       "first_stage_config)",
                              hint="use the config.yaml shipped beside the label2img model.ckpt") from exc
    unsupported = {key: params[key] for key, default in (("scale_factor", 1.0), ("parameterization", "eps"),
                                                         ("beta_schedule", "linear"))
                   if key in params and params[key] != default}
    if unsupported:
        raise CheckpointError("only eps-prediction LDMs with the linear schedule and scale_factor 1 are supported",
                              path=config_yaml, value=unsupported,
                              expected="scale_factor 1.0, parameterization eps, beta_schedule linear (label2img)")
    return arch


def unet_from_release(state: dict[str, torch.Tensor], arch: LdmArchitecture,
                      path: Path | str = "<state dict>") -> UNet2DConditionModel:
    """Build the diffusers UNet of `arch` and fill it from the CompVis keys `model.diffusion_model.*`.

    The time-conditioning head (`time_embed_condtion.*`) is not part of the UNet (see time_head_from_release).
    """
    source = {k: v for k, v in state.items() if k.startswith(UNET_PREFIX) and not k.startswith(TIME_HEAD_PREFIX)}
    converted = convert_ldm_unet_checkpoint(source, unet_config(arch))
    if len(converted) != len(source):
        # The diffusers converter silently skips keys it does not know: a count mismatch means lost weights.
        raise CheckpointError("some UNet weights have no diffusers counterpart", path=path,
                              value=f"{len(source)} CompVis tensors -> {len(converted)} converted",
                              expected="a CompVis openaimodel UNet with SpatialTransformers (label2img)")
    unet = build_unet(arch)
    load_weights_into(unet, converted, path)
    return unet


def vqvae_from_release(state: dict[str, torch.Tensor], arch: LdmArchitecture,
                       path: Path | str = "<state dict>") -> VQModel:
    """Build the diffusers VQModel of `arch` and fill it from the CompVis keys `first_stage_model.*`."""
    source = {k: v for k, v in state.items() if k.startswith(VQ_PREFIX)}
    converted = convert_ldm_vae_checkpoint(source, vq_config(arch))
    # The converter does not know the codebook; CompVis and diffusers both call it quantize.embedding.
    converted["quantize.embedding.weight"] = source.get(VQ_PREFIX + "quantize.embedding.weight")
    if len(converted) != len(source) or converted["quantize.embedding.weight"] is None:
        raise CheckpointError("some VQ first-stage weights have no diffusers counterpart", path=path,
                              value=f"{len(source)} CompVis tensors -> {len(converted)} converted",
                              expected="a CompVis VQModel(Interface) first stage without down-level attention")
    vqvae = build_vqvae(arch)
    load_weights_into(vqvae, converted, path)
    return vqvae


def time_head_from_release(state: dict[str, torch.Tensor], arch: LdmArchitecture,
                           path: Path | str = "<state dict>") -> TimeConditioningHead:
    """The time-conditioning head from `model.diffusion_model.time_embed_condtion.{0,1,2}.*`."""
    head = TimeConditioningHead(arch.context_dim, arch.time_embed_dim)
    renamed = {}
    for key, value in state.items():
        if key.startswith(TIME_HEAD_PREFIX):
            index, _, leaf = key[len(TIME_HEAD_PREFIX):].partition(".")
            renamed[f"{_TIME_HEAD_KEYS.get(index, index)}.{leaf}"] = value
    load_weights_into(head, renamed, path)
    return head


def token_mapper_from_release(state: dict[str, torch.Tensor], path: Path | str = "<state dict>") -> TokenMapper:
    """The token mapper from `cond_stage_model.{channel_mapper.0,channel_mapper.1,dim_mapper}.*`."""
    num_tokens = _shape(state, COND_PREFIX + "channel_mapper.0.weight", path)[1]
    context_dim, token_dim = _shape(state, COND_PREFIX + "dim_mapper.weight", path)
    mapper = TokenMapper(num_tokens, token_dim, context_dim)
    weights = {k[len(COND_PREFIX):]: v for k, v in state.items()
               if k.startswith(COND_PREFIX) and not k.startswith(ENCODER_PREFIX)}
    load_weights_into(mapper, weights, path)
    return mapper


def check_schedule(state: dict[str, torch.Tensor], arch: LdmArchitecture, path: Path | str) -> None:
    """Refuse a checkpoint whose stored betas differ from the schedule `arch` describes."""
    betas = state.get("betas")
    if betas is None:
        return
    expected = torch.linspace(arch.beta_start**0.5, arch.beta_end**0.5, arch.num_train_timesteps,
                              dtype=torch.float64) ** 2
    if betas.shape != expected.shape or not torch.allclose(betas.double(), expected, rtol=1e-4, atol=1e-7):
        raise CheckpointError("the checkpoint's noise schedule differs from the expected CompVis linear schedule",
                              path=path, value=f"betas[0]={float(betas[0]):.6g}, betas[-1]={float(betas[-1]):.6g}, "
                                               f"T={betas.shape[0]}",
                              expected=f"linspace(sqrt({arch.beta_start}), sqrt({arch.beta_end}), "
                                       f"{arch.num_train_timesteps})**2",
                              hint="pass the LDM's config.yaml (linear_start, linear_end, timesteps)")


def schedule_from_betas(state: dict[str, torch.Tensor], arch: LdmArchitecture) -> LdmArchitecture:
    """`arch` with beta_start/beta_end/T taken from the stored `betas` buffer, when the state dict has one."""
    betas = state.get("betas")
    if betas is None:
        return arch
    return replace(arch, num_train_timesteps=int(betas.shape[0]), beta_start=round(float(betas[0]), 8),
                   beta_end=round(float(betas[-1]), 8))


def state_dict_of(checkpoint: Any, key: str, path: Path | str) -> dict[str, torch.Tensor]:
    """The tensor dict stored under `key` in a loaded release checkpoint, with a clear error when absent."""
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(key), dict):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"the checkpoint has no '{key}' dict", path=path, value=found,
                              expected=f"a dict with '{key}' (CompVis/MinD-Vis layout)")
    return checkpoint[key]


def load_label2img(ckpt_path: str | Path, config_yaml: str | Path | None = None,
                   image_size: int | None = None) -> PretrainedLdm:
    """Load the pretrained CompVis label2img LDM (`model.ckpt`) as a diffusers UNet + VQModel.

    Args:
        ckpt_path: `{'state_dict': ...}` in CompVis LatentDiffusion layout (read with the restricted unpickler).
        config_yaml: its OmegaConf config; None = sizes read off the weight shapes (1 attention head, 256 px).
        image_size: override the image side in px (sets the latent size for sampling).
    Returns:
        PretrainedLdm with both modules in eval mode and the class embedder's table (`cond_stage_model.embedding`),
        which MinD-Vis replaces by the fMRI conditioning stage.
    """
    ckpt_path = Path(ckpt_path)
    state = state_dict_of(load_release_checkpoint(ckpt_path), "state_dict", ckpt_path)
    if config_yaml is not None:
        arch = architecture_from_yaml(config_yaml)
    else:
        arch = schedule_from_betas(state, infer_architecture(state, image_size=image_size or 256, path=ckpt_path))
    if image_size is not None:
        arch = replace(arch, image_size=image_size)
    check_schedule(state, arch, ckpt_path)
    unet = unet_from_release(state, arch, ckpt_path).eval()
    vqvae = vqvae_from_release(state, arch, ckpt_path).eval()
    log.info("loaded label2img LDM from %s: UNet %s, VQ %s", ckpt_path, arch.channel_mult, arch.vq_channel_mult)
    class_embedding = state.get(CLASS_EMBEDDING_KEY)
    if class_embedding is not None and tuple(class_embedding.shape[1:]) != (arch.context_dim,):
        raise CheckpointError("the class embedder does not fit the UNet's context width", path=ckpt_path,
                              value=tuple(class_embedding.shape), expected=f"(n_classes, {arch.context_dim})")
    return PretrainedLdm(arch, unet, vqvae, None if class_embedding is None else class_embedding.float())


def import_finetuned(path: str | Path, config_yaml: str | Path | None = None, image_size: int | None = None,
                     encoder_num_heads: int | None = None) -> FmriLDM:
    """Load a MinD-Vis Stage-B `finetuned.pth` as an FmriLDM (eval mode).

    The file carries no LDM config: UNet/VQ sizes are read off the weights unless `config_yaml` (the label2img
    config.yaml it was fine-tuned from) is given; the image size defaults to the pickled config's `img_size`
    (the size it was fine-tuned at, 256 for the releases). The fMRI encoder is read by the Stage-A loader
    (`load_fmri_encoder`): its head count comes from `encoder_num_heads`, else from the Stage-A metafile the
    pickled config names (found beside `path` in the release layout), else the reference's 16. The saved RNG
    `state` is not used: generation here is seeded explicitly (mindvis.models.sampling).
    """
    path = Path(path)
    # The encoder first: the Stage-A loader reads the file on its own, and only its encoder outlives that read.
    encoder = load_fmri_encoder(path, num_heads=encoder_num_heads)
    checkpoint = load_release_checkpoint(path)
    state = state_dict_of(checkpoint, "model_state_dict", path)
    if config_yaml is not None:
        arch = architecture_from_yaml(config_yaml)
    else:
        trained_size = (checkpoint.get("config") or {}).get("img_size") or 256
        arch = schedule_from_betas(state, infer_architecture(state, image_size=int(trained_size), path=path))
    if image_size is not None:
        arch = replace(arch, image_size=image_size)
    check_schedule(state, arch, path)
    mapper = token_mapper_from_release(state, path)
    sizes = {"encoder tokens": (encoder.num_patches, mapper.num_tokens),
             "encoder width": (encoder.embed_dim, mapper.token_dim),
             "context width": (arch.context_dim, mapper.context_dim)}
    mismatched = {name: pair for name, pair in sizes.items() if pair[0] != pair[1]}
    if mismatched:
        raise CheckpointError("the conditioning stage does not fit the encoder / UNet", path=path,
                              value=mismatched, expected="(model, mapper) sizes equal")
    conditioner = FmriConditioner(encoder, mapper)
    model = FmriLDM(arch, unet_from_release(state, arch, path), vqvae_from_release(state, arch, path),
                    conditioner, time_head_from_release(state, arch, path))
    log.info("imported MinD-Vis Stage-B checkpoint %s (%d voxels -> %d tokens -> context %s)", path,
             encoder.arch.num_voxels, encoder.num_patches, (77, arch.context_dim))
    return model.eval()
