"""Build typed (frozen) config dataclasses from validated plain dicts, whole or partial.

`build` fills keys missing from the dict with the dataclass defaults (a config file leaves keys out). `build_partial`
builds a job's config from the values its Snakemake params carry (mindvis.plan.job_params): a key that is not carried
becomes a `NotCarried` placeholder that raises ConfigError when the job uses it, so a job can only compute with
values that its params (and with them Snakemake's rerun trigger) know about.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, NoReturn, TypeVar, get_args, get_origin

from mindvis.errors import ConfigError

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
    """Plain (JSON/YAML-serialisable) form of a config dataclass: Paths become strings, tuples lists.

    Fields holding a NotCarried placeholder are left out, so to_dict(build_partial(cls, d)) == d for a plain d.
    """
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not isinstance(getattr(obj, f.name), NotCarried)}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


class NotCarried:
    """Stands for a config value that a job's params do not carry; any use of it raises ConfigError.

    Attribute access, truth value, comparison, iteration, arithmetic and path or number conversion all raise, naming
    the key. Only repr/str (for log lines and resume fingerprints), identity, hashing, copying and pickling work.
    (An `is None` test cannot be intercepted: job code tests presence with values it reads, not with `is`.)
    """

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def _refuse(self, *_: Any, **__: Any) -> NoReturn:
        raise ConfigError("this job used a config value that its Snakemake params do not carry", path=self.key,
                          expected="every value a job reads listed for its rule in mindvis.plan.JOB_READS",
                          hint="add the key to the rule's entry in mindvis.plan.JOB_READS, so that changing it "
                               "reruns the job")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # protocol lookups (pickle, copy, numpy...) must see a plain object
            raise AttributeError(name)
        self._refuse()

    def __repr__(self) -> str:
        return f"<{self.key}: not carried by this job's params>"

    __str__ = __repr__
    __hash__ = object.__hash__

    def __deepcopy__(self, memo: dict[int, Any]) -> NotCarried:
        return self

    def __copy__(self) -> NotCarried:
        return self

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return NotCarried, (self.key,)

    __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse
    __iter__ = __len__ = __getitem__ = __contains__ = __call__ = _refuse
    __fspath__ = __int__ = __float__ = __index__ = __format__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _refuse
    __floordiv__ = __rfloordiv__ = __mod__ = __pow__ = __neg__ = _refuse


def build_partial(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Instantiate dataclass `cls` from the (schema-valid) values in `data`; absent fields become NotCarried.

    Nested dataclasses given as dicts are built partially in turn. `prefix` is the dotted config path of `cls`
    (for the placeholders' messages).
    """
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        key = f"{prefix}{field.name}"
        if field.name not in data:
            kwargs[field.name] = NotCarried(key)
            continue
        annotation, value = hints[field.name], data[field.name]
        if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
            kwargs[field.name] = build_partial(annotation, value, f"{key}.")
        else:
            kwargs[field.name] = _convert(annotation, value)
    return cls(**kwargs)
