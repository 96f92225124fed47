"""One config path: config.yaml -> JSON-schema validation -> preset resolution -> typed, frozen dataclasses.

`preset` (auto | demo | paper; auto = demo when `demo: true`) fills every preset-dependent key the user left null
or omitted: model sizes, schedules, image size. Keys a user sets always win. Section dataclasses live in the
sibling modules; each section's presets sit beside its dataclass.
"""

from __future__ import annotations

import contextlib
import copy
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml

from mindvis.config.build import build, to_dict
from mindvis.config.data import PREPROCESS_PRESETS, DemoDataConfig, PreprocessConfig
from mindvis.config.evaluation import EVALUATION_PRESETS, EvaluationConfig
from mindvis.config.runtime import JobResources, TrackingConfig, TrainerConfig
from mindvis.config.stage_a import STAGE_A_PRESETS, StageAConfig
from mindvis.config.stage_b import DEFAULT_SAMPLER_STEPS, STAGE_B_PRESETS, StageBConfig
from mindvis.config.schema import schema_of
from mindvis.errors import ConfigError

Dataset = Literal["HCP", "GOD", "BOLD5000", "NSD"]


@dataclass(frozen=True)
class Config:
    """The whole validated configuration (see config.yaml for each key's meaning)."""

    demo: bool = True
    preset: Literal["auto", "demo", "paper"] = "auto"
    data_root: Path = Path("data")
    results_root: Path = Path("results")
    datasets: tuple[Dataset, ...] = field(default=("HCP", "GOD", "BOLD5000", "NSD"), metadata={"minItems": 1})
    subjects: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    seed: int = 2022
    demo_data: DemoDataConfig = DemoDataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    stage_a: StageAConfig = StageAConfig()
    stage_b: StageBConfig = StageBConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    trainer: TrainerConfig = TrainerConfig()
    tracking: TrackingConfig = TrackingConfig()
    resources: dict[str, JobResources] = field(default_factory=dict)

    @property
    def preset_name(self) -> str:
        """The preset in force: `preset`, or demo/paper following `demo` when it is auto."""
        if self.preset != "auto":
            return self.preset
        return "demo" if self.demo else "paper"

    @property
    def raw_root(self) -> Path:
        """Where raw datasets are read: the demo root in demo mode, else data_root."""
        return self.demo_data.root if self.demo else self.data_root

    def resources_for(self, rule: str) -> JobResources:
        """Resources of `rule`: its own entry in `resources`, else the `default` entry, else built-in defaults."""
        return self.resources.get(rule) or self.resources.get("default") or JobResources()

    def as_dict(self) -> dict[str, Any]:
        return to_dict(self)


# Preset tables per section path: values fill keys left null/omitted by the user.
PRESETS: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {
    ("preprocess",): PREPROCESS_PRESETS,
    ("stage_a",): STAGE_A_PRESETS,
    ("stage_b",): STAGE_B_PRESETS,
    ("evaluation",): EVALUATION_PRESETS,
}

SCHEMA: dict[str, Any] = schema_of(Config)
SUBJECT_DATASETS = ("HCP", "GOD", "BOLD5000", "NSD")
SCHEMA["properties"]["subjects"]["propertyNames"] = {"enum": list(SUBJECT_DATASETS)}


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate(raw: dict[str, Any], source: str = "config") -> None:
    """Raise ConfigError for the first schema violation, naming the key's dotted path and the offending value."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    error = errors[0]
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        raise ConfigError(f"unknown key(s) under '{_key_path(error)}' in {source}", path=_key_path(error),
                          value=unknown, expected=f"one of {allowed}", hint="check the spelling against config.yaml")
    raise ConfigError(f"invalid value in {source}: {error.message}", path=_key_path(error), value=error.instance,
                      expected=_describe(error.schema), hint="see the comments in config.yaml for allowed values")


def _describe(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return f"one of {schema['enum']}"
    if "anyOf" in schema:
        return " or ".join(_describe(s) for s in schema["anyOf"])
    text = schema.get("type", "a valid value")
    for bound in ("minimum", "maximum", "minItems"):
        if bound in schema:
            text += f" ({bound} {schema[bound]})"
    return str(text)


def _fill_presets(raw: dict[str, Any], preset: str) -> dict[str, Any]:
    resolved = copy.deepcopy(raw)
    for section_path, presets in PRESETS.items():
        node = resolved
        for key in section_path:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        _merge_nulls(node, presets[preset])
    return resolved


def _fill_derived(resolved: dict[str, Any]) -> dict[str, Any]:
    """Fill the null keys whose value follows from other resolved keys, so no code falls back at use time:
    the LDM's image size from the stimuli's, sampler steps from the sampler (DEFAULT_SAMPLER_STEPS) and Stage B's
    UNet rate from its learning rate (the reference's single rate)."""
    stage_b = resolved["stage_b"]
    sampling, training = stage_b.setdefault("sampling", {}), stage_b.setdefault("training", {})
    architecture = stage_b.setdefault("architecture", {})
    if architecture.get("image_size") is None:
        architecture["image_size"] = resolved["preprocess"]["image_size"]
    if sampling.get("steps") is None:
        sampling["steps"] = DEFAULT_SAMPLER_STEPS[sampling["scheduler"]]
    if training.get("unet_learning_rate") is None:
        training["unet_learning_rate"] = training["learning_rate"]
    return resolved


def _merge_nulls(node: dict[str, Any], defaults: dict[str, Any]) -> None:
    for key, value in defaults.items():
        if isinstance(value, dict):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if isinstance(child, dict):  # a user's plain number where the preset has one per dataset stays as is
                _merge_nulls(child, value)
        elif node.get(key) is None:
            node[key] = copy.deepcopy(value)


YAML_NULLS = ("", "~", "null", "Null", "NULL")


def read_command_line(values: Mapping[str, Any]) -> dict[str, Any]:
    """`snakemake --config` values read as YAML reads them, wherever the config key does not take text.

    Snakemake's --config parser turns `seed=1` into 1 but leaves `demo=false` and every value inside a mapping
    (`'evaluation={n_trials: 500}'`) as text. Here a text value goes through yaml.safe_load when the schema does not
    accept it as text (booleans in any case YAML knows, numbers, null, lists, mappings); a value the key does take as
    text stays as typed (subject IDs like 100206, paths, names, `precision=32`); a YAML null spelling becomes None
    where the key accepts null. The result is merged over the config and validated as usual.
    """
    return _read_text_values(dict(values), SCHEMA)


def _read_text_values(value: Any, schema: dict[str, Any]) -> Any:
    if isinstance(value, Mapping):
        schema = _alternative(schema, "object") or {}
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out = {}
        for key, item in value.items():
            child = properties.get(key, extra if isinstance(extra, dict) else None)
            out[key] = item if child is None else _read_text_values(item, child)  # unknown keys: validate() says so
        return out
    if isinstance(value, list):
        items = (_alternative(schema, "array") or {}).get("items")
        return [_read_text_values(v, items) if items else v for v in value]
    validator = jsonschema.Draft202012Validator(schema)
    if isinstance(value, str):
        if value in YAML_NULLS and validator.is_valid(None):
            return None
        if validator.is_valid(value):
            return value
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(parsed, (dict, list)):
            return _read_text_values(parsed, schema)
        if isinstance(parsed, str):  # YAML 1.1 reads 1e-3 (no dot) as text; the key wants a number
            for number in (int, float):
                with contextlib.suppress(ValueError):
                    return number(parsed)
        return parsed
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not validator.is_valid(value) \
            and validator.is_valid(str(value)):
        return str(value)  # Snakemake made a number of text meant for a text key (e.g. data_root=2024)
    return value


def _alternative(schema: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """`schema` itself or its `anyOf` alternative of JSON type `kind` (e.g. the array in `tuple[int, ...] | None`)."""
    for option in [schema, *schema.get("anyOf", [])]:
        if option.get("type") == kind:
            return option
    return None


def resolve(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate a raw config dict (as Snakemake or yaml.safe_load give it) and return the resolved Config."""
    raw = dict(raw or {})
    validate(raw, source)
    preset = raw.get("preset", "auto")
    if preset == "auto":
        preset = "demo" if raw.get("demo", True) else "paper"
    return build(Config, _fill_derived(_fill_presets(raw, preset)))


def load(path: str | os.PathLike[str]) -> Config:
    """Read and resolve a config.yaml file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config ({exc})", path=path, expected="a readable YAML file") from exc
    return resolve(raw, source=str(path))


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str:
    """Current git commit of the project (with '-dirty' if the tree has changes), or 'unknown' outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")
