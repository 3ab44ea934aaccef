"""Loading a job config: defaults, then a YAML file, then `--set key.path=value` overrides.

Unknown keys and values of the wrong type fail before anything starts, with the dotted path of the
offending key, so a typo never silently trains the default.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml

from rayssl.config.rules import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# Keys that moved to another section: the error names where they went.
MOVED_KEYS = {
    "semisup.alpha": "inversion.alpha",
    "semisup.inversion": "inversion.kind",
    "semisup.beta": "inversion.beta",
    "semisup.beta_rampup_steps": "inversion.beta_rampup_steps",
    "semisup.consistency": "fixmatch.weight",
    "semisup.confidence": "fixmatch.confidence",
    "semisup.strong_augment": "fixmatch.strong_augment",
}

_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

C = TypeVar("C", bound="DataclassInstance")  # a config section: a dataclass


def load_config(cls: type[C], path: str | Path | None = None, overrides: Sequence[str] = ()) -> C:
    """Build `cls` from its defaults, then the YAML at `path`, then `key.path=value` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
        raw = loaded or {}
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(cls, raw)


def _apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `a.b.c=value` override; the value is parsed as YAML (so 3 is an int)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like key.path=value")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(value) if value else ""


def from_dict(cls: type[C], raw: dict[str, Any], prefix: str = "") -> C:
    """Recursively build dataclass `cls` from a plain mapping, checking keys and types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or '<root>'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        if unknown[0] == "faults":  # fault drills are not configuration (rayssl.train.faults)
            raise ConfigError(f"{where}faults is not a config key: fault drills are set with the RAYSSL_FAULTS environment variable")
        moved = next((new for old, new in MOVED_KEYS.items() if f".{where}{unknown[0]}".endswith(f".{old}")), None)
        if moved:
            raise ConfigError(f"config key {where}{unknown[0]} has moved to {where.removesuffix('semisup.')}{moved}")
        raise ConfigError(
            f"unknown config key {where}{unknown[0]!r} (valid keys{' under ' + prefix if prefix else ''}: {', '.join(sorted(fields))})"
        )
    kwargs = {name: _coerce(hints[name], value, _join(prefix, name)) for name, value in raw.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a range rule of this section: name the key by its full dotted path
        raise ConfigError(_join(prefix, str(exc))) from None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _coerce(hint: Any, value: Any, path: str) -> Any:
    """Check `value` against the annotation `hint`; int -> float is the only widening."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):  # annotations are classes, never instances
        return from_dict(hint, value, path)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise ConfigError(f"{path}: {value!r} matches none of: " + "; ".join(e.removeprefix(f"{path}: ") for e in errors))
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__} {value!r}")
        key_type, item = typing.get_args(hint)
        return {_coerce(key_type, k, path): _coerce(item, v, f"{path}.{k}") for k, v in value.items()}
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{path}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
        # PyYAML follows YAML 1.1, where 1e-4 (no dot) is a string; it is meant as a number.
        return float(value)
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported annotation {hint!r}")  # a bug in the dataclass


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config (for YAML dumps and for shipping to Ray workers)."""
    return dataclasses.asdict(config)


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
