"""Stage A checkpoints: read the masked brain model / its encoder from mindvis's own format or MinD-Vis releases.

Accepted files (`read_stage_a_weights` tells them apart by content, not by name):

- own format: a directory (or its model.safetensors / config.json) written by `save_mbm` / `save_fmri_encoder`;
- release `checkpoint.pth` of Stage A ({'model', 'optimizer', 'epoch', 'scaler', 'config'}) and the
  `fmri_encoder.pth` metafile Stage B reads ({'model', 'config'}): MAEforFMRI weights + a pickled Config_MBM_fMRI;
- release `finetuned.pth` of Stage B ({'model_state_dict', 'config', 'state'}): its `cond_stage_model.mae.*`
  weights are the tuned encoder; its Config_Generative_Model has no model sizes, so they are read off the weight
  shapes, and the head count (which shapes cannot tell) off the Stage A metafile its `pretrain_mbm_path` names;
- a bare MAEforFMRI state dict (`torch.save(model.state_dict())`).

Release files are unpickled with the restricted loader of `safe_pickle` only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mindvis.checkpoints.own_format import own_format_dir, read_own_format, save_own_format
from mindvis.checkpoints.safe_pickle import ReferenceConfig, load_release_checkpoint
from mindvis.errors import CheckpointError
from mindvis.models.mbm import FmriEncoder, MaskedBrainModel, MbmArchitecture, architecture_from_state_dict

log = logging.getLogger(__name__)

MBM_KIND = "masked_brain_model"
ENCODER_KIND = "fmri_encoder"
FINETUNED_ENCODER_PREFIX = "cond_stage_model.mae."
# Used when nothing in or beside a checkpoint says how many heads it has: the reference configs' value.
REFERENCE_DEFAULT_HEADS = 16


@dataclass(frozen=True)
class StageAWeights:
    """Weights of a masked brain model (or of its encoder only), under the reference's key names.

    state: tensor name -> tensor (CPU). arch: the sizes they fit. source: which layout they came from
    ("mindvis", "release-stage-a", "release-finetuned", "state-dict"). has_decoder: False for encoder-only files.
    """

    state: dict[str, torch.Tensor]
    arch: MbmArchitecture
    source: str
    has_decoder: bool


def _strip_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def _heads_from(config: Mapping[str, Any] | None) -> tuple[int | None, int | None]:
    if not config:
        return None, None
    return config.get("num_heads"), config.get("decoder_num_heads")


def _metafile_heads(config: Mapping[str, Any], checkpoint: Path) -> tuple[int | None, int | None]:
    """Head counts from the Stage A metafile a Stage B config names (as given, or by name beside the checkpoint)."""
    named = config.get("pretrain_mbm_path")
    if not isinstance(named, str) or not named:
        return None, None
    for candidate in (Path(named), checkpoint.parent / Path(named).name):
        if candidate.is_file() and candidate.resolve() != checkpoint.resolve():
            meta = load_release_checkpoint(candidate)
            if isinstance(meta, Mapping) and isinstance(meta.get("config"), Mapping):
                log.info("%s: head counts read from its Stage A metafile %s", checkpoint, candidate)
                return _heads_from(meta["config"])
    return None, None


def _architecture(state: dict[str, torch.Tensor], config: Mapping[str, Any] | None, where: Path,
                  num_heads: int | None, decoder_num_heads: int | None) -> MbmArchitecture:
    config = config or {}
    config_heads, config_decoder_heads = _heads_from(config)
    num_heads = num_heads or config_heads
    decoder_num_heads = decoder_num_heads or config_decoder_heads
    if num_heads is None and "pretrain_mbm_path" in config:
        num_heads, meta_decoder_heads = _metafile_heads(config, where)
        decoder_num_heads = decoder_num_heads or meta_decoder_heads
    if num_heads is None:
        width = state["patch_embed.proj.weight"].shape[0] if "patch_embed.proj.weight" in state else 0
        if width % REFERENCE_DEFAULT_HEADS:
            raise CheckpointError("number of attention heads unknown", path=where,
                                  expected="num_heads in the checkpoint's config or passed explicitly",
                                  hint="pass num_heads=... to the loader (it cannot be read from weight shapes)")
        log.warning("%s: no head count recorded; assuming the reference's %d", where, REFERENCE_DEFAULT_HEADS)
        num_heads = REFERENCE_DEFAULT_HEADS
    return architecture_from_state_dict(state, patch_size=config.get("patch_size"), num_heads=num_heads,
                                        decoder_num_heads=decoder_num_heads, where=str(where))


def read_stage_a_weights(path: str | os.PathLike[str], num_heads: int | None = None,
                         decoder_num_heads: int | None = None) -> StageAWeights:
    """Read masked-brain-model weights from any accepted layout (see module docstring).

    `num_heads` / `decoder_num_heads` override what the checkpoint says (only needed for files that do not say).
    """
    path = Path(path)
    if own_format_dir(path) is not None:
        state, document = read_own_format(path)
        if document.get("kind") not in (MBM_KIND, ENCODER_KIND):
            raise CheckpointError("checkpoint holds another kind of model", path=path, value=document.get("kind"),
                                  expected=f"{MBM_KIND} or {ENCODER_KIND}")
        try:
            arch = MbmArchitecture(**document["architecture"])
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"config.json lacks a valid architecture ({exc})", path=path,
                                  expected=f"architecture: {{{', '.join(MbmArchitecture.__dataclass_fields__)}}}"
                                  ) from exc
        return StageAWeights(state, arch, "mindvis", has_decoder=document["kind"] == MBM_KIND)

    obj = load_release_checkpoint(path)
    config: Mapping[str, Any] | None = None
    if isinstance(obj, Mapping) and _is_state_dict(obj.get("model")):
        state, config, source = dict(obj["model"]), obj.get("config"), "release-stage-a"
    elif isinstance(obj, Mapping) and _is_state_dict(obj.get("model_state_dict")):
        state = _strip_prefix(obj["model_state_dict"], FINETUNED_ENCODER_PREFIX)
        if not state:
            raise CheckpointError("Stage B checkpoint without fMRI encoder weights", path=path,
                                  value=sorted({k.split(".")[0] for k in obj["model_state_dict"]}),
                                  expected=f"keys starting with {FINETUNED_ENCODER_PREFIX}")
        config, source = obj.get("config"), "release-finetuned"
    elif _is_state_dict(obj):
        state, source = dict(obj), "state-dict"
    else:
        shown = sorted(obj)[:12] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError("unknown checkpoint layout", path=path, value=shown,
                              expected="a mindvis checkpoint directory, a MinD-Vis checkpoint.pth / fmri_encoder.pth "
                                       "({'model', 'config', ...}), a finetuned.pth ({'model_state_dict', ...}) "
                                       "or a MAEforFMRI state dict",
                              hint="see mindvis.checkpoints.stage_a for the accepted layouts")
    if all(key.startswith("module.") for key in state):  # saved from a DistributedDataParallel wrapper
        state = _strip_prefix(state, "module.")
    if config is not None and not isinstance(config, (ReferenceConfig, Mapping)):
        config = None
    arch = _architecture(state, config, path, num_heads, decoder_num_heads)
    return StageAWeights(state, arch, source, has_decoder="decoder_embed.weight" in state)


def load_weights_into(module: nn.Module, state: Mapping[str, torch.Tensor], where: str | os.PathLike[str],
                      ignore: tuple[str, ...] = ()) -> None:
    """Copy `state` into `module` exactly: every key of the module present with its shape, none left over.

    Keys in `ignore` (exact names) are skipped on both sides. Raises CheckpointError naming the first problem.
    """
    expected = {k: v for k, v in module.state_dict().items() if k not in ignore}
    given = {k: v for k, v in state.items() if k not in ignore}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        raise CheckpointError("checkpoint weights do not fit the model", path=where,
                              value={"missing": missing[:8], "unexpected": unexpected[:8]},
                              expected=f"the {len(expected)} tensors of {type(module).__name__}",
                              hint="is this checkpoint for this kind of model and of these sizes?")
    for key, tensor in given.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError("checkpoint tensor has the wrong shape", path=where,
                                  value=f"{key}: {tuple(tensor.shape)}",
                                  expected=f"{tuple(expected[key].shape)} for the model's sizes",
                                  hint="the config (heads, mlp ratio) may not match the weights")
    module.load_state_dict({**module.state_dict(), **given}, strict=True)


def resize_positions(pos_embed: torch.Tensor, num_patches: int) -> torch.Tensor:
    """(1, 1 + L, D) position table -> (1, 1 + num_patches, D): cls row kept, patch rows nearest-resampled.

    What the reference's Stage B does when its data has another voxel count than the encoder checkpoint.
    """
    patches = pos_embed[:, 1:, :].transpose(1, 2)  # (1, D, L)
    resized = F.interpolate(patches, size=num_patches).transpose(1, 2)  # nearest neighbour
    return torch.cat([pos_embed[:, :1, :], resized], dim=1)


def load_mbm(path: str | os.PathLike[str], num_heads: int | None = None,
             decoder_num_heads: int | None = None) -> MaskedBrainModel:
    """The whole masked brain model (encoder + decoder) of a checkpoint, in eval mode on CPU."""
    weights = read_stage_a_weights(path, num_heads, decoder_num_heads)
    if not weights.has_decoder:
        raise CheckpointError("checkpoint holds only an fMRI encoder, not the masked model's decoder", path=path,
                              value=weights.source, expected="a Stage A checkpoint (checkpoint.pth, mindvis format)",
                              hint="use load_fmri_encoder for encoder-only files such as finetuned.pth")
    model = MaskedBrainModel(weights.arch)
    load_weights_into(model, weights.state, path)
    return model.eval()


def load_fmri_encoder(path: str | os.PathLike[str], num_voxels: int | None = None, num_heads: int | None = None
                      ) -> FmriEncoder:
    """The Stage-B fMRI encoder of a checkpoint: fMRI (N, V) or (N, 1, V) -> tokens (N, V/patch, D), eval mode, CPU.

    `num_voxels` builds it for inputs of another length, resampling the position table as the reference does.
    """
    weights = read_stage_a_weights(path, num_heads)
    state = {k: v for k, v in weights.state.items()
             if k.split(".")[0] in ("patch_embed", "cls_token", "pos_embed", "blocks", "norm")}
    arch = weights.arch
    if num_voxels is not None and num_voxels != arch.num_voxels:
        arch = MbmArchitecture(**{**arch.to_dict(), "num_voxels": num_voxels})
        state["pos_embed"] = resize_positions(state["pos_embed"], arch.num_patches)
    encoder = FmriEncoder(arch)
    load_weights_into(encoder, state, path)
    return encoder.eval()


def save_mbm(model: MaskedBrainModel, out_dir: str | os.PathLike[str], extra: Mapping[str, Any] | None = None
             ) -> Path:
    """Write `model` in the own format (model.safetensors + config.json) to `out_dir`, atomically."""
    return save_own_format(out_dir, model.state_dict(), MBM_KIND,
                           {"architecture": model.arch.to_dict(), **(extra or {})})


def save_fmri_encoder(encoder: FmriEncoder, out_dir: str | os.PathLike[str],
                      extra: Mapping[str, Any] | None = None) -> Path:
    """Write an fMRI encoder in the own format; `load_fmri_encoder` reads it back."""
    return save_own_format(out_dir, encoder.state_dict(), ENCODER_KIND,
                           {"architecture": encoder.arch.to_dict(), **(extra or {})})
