"""Build typed (frozen) config dataclasses from validated plain dicts."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

T = TypeVar("T")


def build(cls: type[T], data: dict[str, Any]) -> T:
    """Instantiate dataclass `cls` from `data` (already schema-valid); missing keys take the field defaults."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name in data:
            kwargs[field.name] = _convert(hints[field.name], data[field.name])
    return cls(**kwargs)


def _convert(annotation: Any, value: Any) -> Any:
    origin = get_origin(annotation)
    if value is None:
        return None
    if dataclasses.is_dataclass(annotation):
        return build(annotation, value)
    if annotation is Path:
        return Path(value)
    if annotation is float:
        return float(value)
    if origin in (typing.Union, types.UnionType):
        non_null = [a for a in get_args(annotation) if a is not type(None)]
        return _convert(non_null[0], value) if len(non_null) == 1 else value
    if origin is tuple:
        return tuple(_convert(get_args(annotation)[0], v) for v in value)
    if origin is list:
        return [_convert(get_args(annotation)[0], v) for v in value]
    if origin is dict:
        return {k: _convert(get_args(annotation)[1], v) for k, v in value.items()}
    return value


def to_dict(obj: Any) -> Any:
    """Plain (JSON/YAML-serialisable) form of a config dataclass: Paths become strings, tuples lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
