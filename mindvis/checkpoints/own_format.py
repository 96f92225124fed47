"""mindvis's own checkpoint format: a directory with `model.safetensors` (weights) and `config.json` (what they are).

Loading never unpickles anything: safetensors holds raw tensors only and the JSON is data. `config.json` has at least
`format` ("mindvis"), `version`, `kind` (what the weights are, e.g. "masked_brain_model") and the architecture the
kind needs; writers may add provenance (source checkpoint, training summary).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mindvis.errors import CheckpointError
from mindvis.io import atomic_directory

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_NAME = "mindvis"
FORMAT_VERSION = 1


def own_format_dir(path: str | os.PathLike[str]) -> Path | None:
    """The checkpoint directory if `path` is one (or its model.safetensors / config.json), else None."""
    path = Path(path)
    if path.is_dir():
        return path if (path / WEIGHTS_FILE).is_file() or (path / CONFIG_FILE).is_file() else None
    if path.name in (WEIGHTS_FILE, CONFIG_FILE):
        return path.parent
    return None


def save_own_format(out_dir: str | os.PathLike[str], state: dict[str, torch.Tensor], kind: str,
                    config: dict[str, Any]) -> Path:
    """Write `state` and `{format, version, kind, **config}` to `out_dir` atomically (both files appear together).

    Tensors are stored contiguous, on CPU, in their own dtype. Returns `out_dir`.
    """
    out_dir = Path(out_dir)
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in state.items()}
    document = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "kind": kind, **config}
    with atomic_directory(out_dir) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT_NAME, "kind": kind})
        (tmp / CONFIG_FILE).write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
        _make_readable(tmp / WEIGHTS_FILE)
    return out_dir


def _make_readable(path: Path) -> None:
    """Give a file written through a private temporary the permissions a plain open() would (0666 - umask)."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def read_own_format(path: str | os.PathLike[str], kind: str | None = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(weights on CPU, config document) of an own-format checkpoint; `kind` checks what it holds."""
    directory = own_format_dir(path)
    if directory is None:
        raise CheckpointError("not a mindvis checkpoint directory", path=path,
                              expected=f"a directory with {WEIGHTS_FILE} and {CONFIG_FILE}")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for required in (config_path, weights_path):
        if not required.is_file():
            raise CheckpointError("incomplete mindvis checkpoint", path=required, expected="an existing file",
                                  hint="rerun the job that wrote this checkpoint")
    try:
        document = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"unreadable checkpoint config ({exc})", path=config_path,
                              expected="a JSON object") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise CheckpointError("config.json is not a mindvis checkpoint description", path=config_path,
                              value=document.get("format") if isinstance(document, dict) else document,
                              expected=f"format: {FORMAT_NAME}")
    if document.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError("checkpoint written by a newer mindvis", path=config_path, value=document["version"],
                              expected=f"format version <= {FORMAT_VERSION}", hint="upgrade mindvis")
    if kind is not None and document.get("kind") != kind:
        raise CheckpointError("checkpoint holds another kind of model", path=config_path, value=document.get("kind"),
                              expected=kind)
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"unreadable weights ({exc})", path=weights_path,
                              expected="a complete safetensors file", hint="rerun the job that wrote it") from exc
    return state, document
