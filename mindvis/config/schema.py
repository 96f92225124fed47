"""JSON schema generated from the config dataclasses, so types and allowed keys have one source of truth.

Field metadata may carry JSON-schema keywords (`minimum`, `maximum`, `minItems`, `description`...); they are copied
into the field's schema. `preset: True` marks a field whose value the config fills when it is loaded (presets and
derived keys): config.yaml may leave it null, while the typed dataclass always holds a concrete value.
Supported annotations: bool, int, float, str, Path, Literal[...], X | None, tuple[X, ...], list[X], dict[str, X]
and nested dataclasses (which forbid unknown keys).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

SCHEMA_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "minItems", "maxItems", "pattern", "description")


def schema_of(annotation: Any) -> dict[str, Any]:
    """JSON schema (draft 2020-12 subset) for a type annotation used in a config dataclass."""
    origin = get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return _dataclass_schema(annotation)
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is float:
        return {"type": "number"}
    if annotation in (str, Path):
        return {"type": "string"}
    if annotation is type(None):
        return {"type": "null"}
    if origin is Literal:
        return {"enum": list(get_args(annotation))}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [schema_of(arg) for arg in get_args(annotation)]}
    if origin in (tuple, list):
        return {"type": "array", "items": schema_of(get_args(annotation)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": schema_of(get_args(annotation)[1])}
    raise TypeError(f"no JSON schema for annotation {annotation!r}")


def _dataclass_schema(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties = {}
    for field in dataclasses.fields(cls):
        prop = schema_of(hints[field.name])
        prop.update({k: v for k, v in field.metadata.items() if k in SCHEMA_KEYWORDS})
        properties[field.name] = {"anyOf": [prop, {"type": "null"}]} if field.metadata.get("preset") else prop
    return {"type": "object", "properties": properties, "additionalProperties": False}
