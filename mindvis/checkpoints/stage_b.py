"""Stage-B checkpoints: mindvis's own format, and `load_stage_b` for both it and MinD-Vis `finetuned.pth`.

Own format: a directory
    stage_b.json               {"format": "mindvis-stage-b", "version": 1, "architecture": LdmArchitecture,
                                "token_mapper": {...}, "metadata": {...}}
    unet/                      diffusers `save_pretrained` (config.json + safetensors): loads on its own in diffusers
    vqvae/                     diffusers `save_pretrained`
    encoder/                   the tuned fMRI encoder in the Stage-A own format (load_fmri_encoder reads it)
    conditioning.safetensors   mapper.* (token mapper) and time_head.* tensors
No pickles anywhere, so loading never runs code. Directories are written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from diffusers import UNet2DConditionModel, VQModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mindvis.checkpoints.release_ldm import import_finetuned
from mindvis.checkpoints.stage_a import load_fmri_encoder, load_weights_into, save_fmri_encoder
from mindvis.config.stage_b import LdmArchitecture
from mindvis.errors import CheckpointError
from mindvis.io import atomic_directory
from mindvis.models.conditioning import FmriConditioner, TimeConditioningHead, TokenMapper
from mindvis.models.ldm import FmriLDM, unet_config, vq_config
from mindvis.models.mbm import FmriEncoder

log = logging.getLogger(__name__)

FORMAT_NAME = "mindvis-stage-b"
FORMAT_VERSION = 1
MANIFEST = "stage_b.json"
CONDITIONING_FILE = "conditioning.safetensors"


def save_stage_b(model: FmriLDM, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write `model` in the own format to `directory` (atomically); returns the directory.

    Args:
        model: an FmriLDM whose conditioner encoder is an FmriEncoder.
        directory: created if needed; files of an earlier save are replaced.
        metadata: JSON-serialisable extras kept in stage_b.json (source checkpoint, run id, epoch, ...).
    """
    directory = Path(directory)
    encoder = model.conditioner.encoder
    if not isinstance(encoder, FmriEncoder):
        raise TypeError(f"the own Stage-B format stores FmriEncoder conditioners, got {type(encoder).__name__}")
    mapper = model.conditioner.mapper
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "architecture": dataclasses.asdict(model.architecture),
        "token_mapper": {"num_tokens": mapper.num_tokens, "token_dim": mapper.token_dim,
                         "context_dim": mapper.context_dim},
        "metadata": metadata or {},
    }
    tensors = {f"mapper.{k}": v for k, v in mapper.state_dict().items()}
    tensors.update({f"time_head.{k}": v for k, v in model.time_head.state_dict().items()})
    with atomic_directory(directory) as tmp:
        model.unet.save_pretrained(tmp / "unet")
        model.vqvae.save_pretrained(tmp / "vqvae")
        save_fmri_encoder(encoder, tmp / "encoder")
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / CONDITIONING_FILE))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    log.info("saved Stage-B model to %s", directory)
    return directory


def _read_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read the Stage-B manifest ({exc})", path=directory / MANIFEST,
                              expected="a JSON file written by mindvis.checkpoints.save_stage_b") from exc
    if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
        raise CheckpointError("unknown Stage-B checkpoint format", path=directory / MANIFEST,
                              value={k: manifest.get(k) for k in ("format", "version")},
                              expected=f"format {FORMAT_NAME!r}, version {FORMAT_VERSION}")
    return manifest


def _check_config(module_config: Any, expected: dict[str, Any], what: str, path: Path) -> None:
    """The saved diffusers config must describe the architecture in stage_b.json."""
    normalise = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    differing = {key: (normalise(module_config.get(key)), normalise(value)) for key, value in expected.items()
                 if key != "sample_size" and normalise(module_config.get(key)) != normalise(value)}
    if differing:
        raise CheckpointError(f"the saved {what} config disagrees with {MANIFEST}", path=path,
                              value=dict(list(differing.items())[:3]), expected="(saved, manifest) equal",
                              hint="the directory mixes files of different saves: save the model again")


def _load_own(directory: Path) -> FmriLDM:
    manifest = _read_manifest(directory)
    try:
        arch = LdmArchitecture(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in manifest["architecture"].items()})
        mapper_sizes = manifest["token_mapper"]
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"incomplete Stage-B manifest ({exc})", path=directory / MANIFEST,
                              expected="architecture and token_mapper entries") from exc
    try:
        unet = UNet2DConditionModel.from_pretrained(directory / "unet", local_files_only=True, low_cpu_mem_usage=False)
        vqvae = VQModel.from_pretrained(directory / "vqvae", local_files_only=True, low_cpu_mem_usage=False)
        tensors = load_file(str(directory / CONDITIONING_FILE))
    except (OSError, ValueError, SafetensorError) as exc:
        raise CheckpointError(f"cannot load the Stage-B weights ({type(exc).__name__}: {exc})", path=directory,
                              expected=f"unet/, vqvae/ (diffusers save_pretrained), encoder/ and {CONDITIONING_FILE}",
                              hint="the save was interrupted or files were removed: save the model again") from exc
    _check_config(unet.config, unet_config(arch), "UNet", directory / "unet")
    _check_config(vqvae.config, vq_config(arch), "VQ", directory / "vqvae")
    encoder = load_fmri_encoder(directory / "encoder")
    mapper = TokenMapper(**mapper_sizes)
    time_head = TimeConditioningHead(arch.context_dim, arch.time_embed_dim)
    for prefix, module in (("mapper.", mapper), ("time_head.", time_head)):
        part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        load_weights_into(module, part, directory / CONDITIONING_FILE)
    return FmriLDM(arch, unet, vqvae, FmriConditioner(encoder, mapper), time_head).eval()


def is_own_stage_b(path: str | Path) -> bool:
    """True when `path` is a directory in the own Stage-B format."""
    return (Path(path) / MANIFEST).is_file()


def load_stage_b(path: str | Path, config_yaml: str | Path | None = None, image_size: int | None = None,
                 encoder_num_heads: int | None = None) -> FmriLDM:
    """Load a Stage-B model (eval mode, CPU) from the own format or a MinD-Vis `finetuned.pth`.

    Args:
        path: an own-format directory (stage_b.json inside) or its stage_b.json, or a release `finetuned.pth`.
        image_size: override the image side in px used for sampling (either format).
        config_yaml, encoder_num_heads: only for `finetuned.pth`, which lacks the LDM config (see
            mindvis.checkpoints.release_ldm.import_finetuned); an own-format directory knows its sizes.
    Raises:
        CheckpointError (UnsafePickleError for pickles naming code) with the file and what was expected.
    """
    path = Path(path)
    if path.name == MANIFEST and path.is_file():  # the file the workflow's rules name as the model
        path = path.parent
    if path.is_dir():
        if not is_own_stage_b(path):
            raise CheckpointError("directory is not a Stage-B checkpoint", path=path,
                                  expected=f"{MANIFEST} with unet/, vqvae/, encoder/ and {CONDITIONING_FILE}",
                                  hint="point to the directory written by save_stage_b, or to a finetuned.pth file")
        model = _load_own(path)
        if image_size is not None:
            model.architecture = dataclasses.replace(model.architecture, image_size=image_size)
        return model
    return import_finetuned(path, config_yaml=config_yaml, image_size=image_size,
                            encoder_num_heads=encoder_num_heads)

