"""Read MinD-Vis release `.pth` files without running code from them.

The released checkpoints are `torch.save` pickles holding tensors, dicts and one pickled object of the reference
code's `config` module (`config.Config_MBM_fMRI`, `config.Config_Generative_Model`, ...). Unpickling that object
the usual way would import (and trust) whatever module and class the file names. Here:

1. the pickle is scanned statically (torch's `get_unsafe_globals_in_checkpoint`, nothing executed) and every
   global it names is checked against an allow-list: torch's own tensor/storage rebuild functions,
   `collections.OrderedDict`, the few numpy globals numpy scalars and arrays need, and the reference config classes.
   Anything else -> UnsafePickleError naming the file and the global.
2. the file is loaded with torch's restricted `weights_only` unpickler (which also refuses anything not allow-listed,
   whatever the scan missed), with each reference config class stood in for by a `ReferenceConfig`: a plain dict of
   the object's attributes that remembers the class it was read from.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mindvis.errors import CheckpointError, UnsafePickleError

# Classes of the reference's config.py that its checkpoints pickle (the first two are its back-compat aliases).
REFERENCE_CONFIG_CLASSES: tuple[str, ...] = (
    "Config_MAE_fMRI", "Config_MAE_finetune", "Config_MBM_fMRI", "Config_MBM_finetune", "Config_Generative_Model",
)
REFERENCE_CONFIG_MODULE = "config"


class ReferenceConfig(dict):
    """A pickled reference config object, read as data: `dict` of its attributes; `class_name` says which class.

    Attribute access (`cfg.patch_size`) works as on the original object, for keys that exist.
    """

    class_name: ClassVar[str] = ""

    def __setstate__(self, state: Any) -> None:
        # pickle's BUILD: the object's __dict__, or (dict_state, slot_state) for classes with __slots__
        parts = state if isinstance(state, tuple) else (state,)
        for part in parts:
            if isinstance(part, dict):
                self.update(part)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{self.class_name or 'config'} has no attribute {name!r}") from None


_STAND_INS: dict[str, type[ReferenceConfig]] = {
    f"{REFERENCE_CONFIG_MODULE}.{name}": type(name, (ReferenceConfig,), {
        "class_name": f"{REFERENCE_CONFIG_MODULE}.{name}", "__module__": __name__})
    for name in REFERENCE_CONFIG_CLASSES
}


def _numpy_globals() -> dict[str, Any]:
    """numpy globals that pickled numpy scalars/arrays name (numpy 1.x `numpy.core` and 2.x `numpy._core` paths)."""
    from numpy._core import multiarray

    allowed: dict[str, Any] = {"numpy.dtype": np.dtype, "numpy.ndarray": np.ndarray}
    for package in ("numpy.core", "numpy._core"):
        allowed[f"{package}.multiarray._reconstruct"] = multiarray._reconstruct
        allowed[f"{package}.multiarray.scalar"] = multiarray.scalar
    return allowed


def _numpy_dtype_classes() -> list[type]:
    """The concrete dtype classes (numpy.dtypes.Float32DType, ...): BUILD of an unpickled dtype checks its type."""
    return sorted({type(np.dtype(code)) for code in np.typecodes["All"] if code not in "OV"}, key=str)


# Globals a release file may name beyond what torch's weights_only unpickler allows by default.
EXTRA_ALLOWED_GLOBALS: dict[str, Any] = {**_numpy_globals(), **_STAND_INS}


def _release_globals() -> torch.serialization.safe_globals:
    """Context in which torch's weights_only machinery also allows EXTRA_ALLOWED_GLOBALS and numpy's dtype classes."""
    return torch.serialization.safe_globals([*[(obj, name) for name, obj in EXTRA_ALLOWED_GLOBALS.items()],
                                             *_numpy_dtype_classes()])


def disallowed_globals(path: str | os.PathLike[str]) -> list[str]:
    """Globals named by the torch zip checkpoint at `path` that `load_release_checkpoint` would refuse (sorted,
    unique), found by torch's static scan of its pickle (nothing is imported or run)."""
    with _release_globals():
        return sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path)))


def _refusal(path: Path, names: list[str]) -> UnsafePickleError:
    return UnsafePickleError(
        "checkpoint refers to code outside the allow-list; it was not loaded (unpickling it could run that code)",
        path=path, value=names,
        expected="tensors, dicts, numpy scalars/arrays and the MinD-Vis config classes "
                 f"({', '.join(sorted(_STAND_INS))})",
        hint="only load checkpoints from sources you trust; if this is a genuine MinD-Vis release file, re-save its "
             "tensors with torch.save(state_dict) in the reference environment and load that",
    )


def _unreadable_pickle(path: Path, exc: pickle.UnpicklingError) -> CheckpointError:
    reason = next((line for line in str(exc).splitlines() if line.startswith("Unsupported")), str(exc).splitlines()[0])
    return CheckpointError(f"torch's restricted reader cannot read this pickle ({reason}); it was not loaded",
                           path=path, expected="a torch.save file in torch's default pickle protocol (2)",
                           hint="re-save the tensors with torch.save(state_dict) (default protocol) and load that")


def load_release_checkpoint(path: str | os.PathLike[str]) -> Any:
    """Load a MinD-Vis `torch.save` file on CPU, refusing any global outside the allow-list.

    Returns whatever was saved (usually a dict), with reference config objects as `ReferenceConfig` dicts.
    Raises UnsafePickleError (naming the file and the globals) for anything else, CheckpointError for missing,
    truncated or non-torch files.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path=path, expected="an existing file",
                              hint="check the path in config.yaml (stage_a.pretrained, ...)")
    if zipfile.is_zipfile(path):  # torch.save's format; other files meet only the restricted unpickler below
        try:
            refused = disallowed_globals(path)
        except pickle.UnpicklingError as exc:
            raise _unreadable_pickle(path, exc) from exc
        except (zipfile.BadZipFile, RuntimeError, ValueError, OSError) as exc:
            raise CheckpointError(f"cannot read checkpoint ({exc})", path=path, expected="a file written by torch.save",
                                  hint="the file is probably truncated") from exc
        if refused:
            raise _refusal(path, refused)
    with _release_globals():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            named = re.findall(r"GLOBAL ([\w.]+)", str(exc))
            raise (_refusal(path, named) if named else _unreadable_pickle(path, exc)) from exc
        except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as exc:
            raise CheckpointError(f"cannot read checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                                  path=path, expected="a complete file written by torch.save",
                                  hint="the file is probably truncated or corrupt: download it again") from exc
