"""The shape of the config tree that the docs page (rayssl.config.reference) follows.

The five job roots; the section (nested dataclass) a field holds; the field defaults; and the
layout: which section classes are shared (used in more than one place, so documented once under
"Shared sections") and every dotted path at which each section class is reached.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any

import rayssl.config as config_package

# The job roots: (command, class name exported by rayssl.config).
JOBS = (
    ("pretrain", "PretrainConfig"),
    ("finetune", "FinetuneConfig"),
    ("sweep", "SweepConfig"),
    ("quality", "QualityConfig"),
    ("robustness", "RobustnessConfig"),
)


def job_roots() -> list[tuple[str, type]]:
    return [(command, getattr(config_package, name)) for command, name in JOBS]


def section_class(hint: Any) -> type | None:
    """The dataclass a field holds (`X` or `X | None`), else None: the field is a leaf key."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return next((arg for arg in args if dataclasses.is_dataclass(arg) and isinstance(arg, type)), None)


def field_defaults(cls: type, instance: Any = None) -> dict[str, Any]:
    """Field name -> default: the instance's values when one is given, else the class's field defaults."""
    if instance is not None:
        return {f.name: getattr(instance, f.name) for f in dataclasses.fields(cls)}
    return {f.name: f.default_factory() if f.default_factory is not MISSING else f.default for f in dataclasses.fields(cls)}


def flat_defaults(cls: type, instance: Any = None, prefix: str = "") -> dict[str, Any]:
    """Dotted leaf key -> default, through nested sections (a section that is None is one leaf)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for name, value in field_defaults(cls, instance).items():
        child = section_class(hints[name])
        if child is not None and isinstance(value, child):
            out.update(flat_defaults(child, value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


@dataclass
class Layout:
    """Where each section class is documented and used."""

    jobs: list[tuple[str, type]]  # (command, root class)
    shared: dict[type, str]  # shared section class -> the name it is documented under ("data", "augment")
    used_as: dict[type, list[tuple[str, str]]]  # section class -> (dotted path, command) everywhere it is reached

    def job_of(self, cls: type) -> str | None:
        """The command whose root `cls` is, else None."""
        return next((command for command, root in self.jobs if root is cls), None)


def layout() -> Layout:
    """The jobs, the shared sections, and every path at which each section class is used."""
    jobs = job_roots()
    roots = {root for _, root in jobs}
    # A section class is shared when it sits in more than one (parent class, field); a job root
    # inside another job (sweep's finetune) is documented as that job, not as a shared section.
    shared = {cls: places[0][1] for cls, places in _places(jobs).items() if cls not in roots and len(places) > 1}
    used_as: dict[type, list[tuple[str, str]]] = {}

    def visit(cls: type, prefix: str, command: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            child = section_class(hints[f.name])
            if child is not None:
                used_as.setdefault(child, []).append((prefix + f.name, command))
                visit(child, f"{prefix}{f.name}.", command)

    for command, root in jobs:
        visit(root, "", command)
    return Layout(jobs, shared, used_as)


def _places(jobs: list[tuple[str, type]]) -> dict[type, list[tuple[type, str]]]:
    """Section class -> every (parent class, field name) that holds it, in the order first met; the
    walk does not go into a job root met inside another job."""
    roots = {root for _, root in jobs}
    places: dict[type, list[tuple[type, str]]] = {}
    seen: set[type] = set()

    def walk(cls: type) -> None:
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            child = section_class(hints[f.name])
            if child is None:
                continue
            places.setdefault(child, []).append((cls, f.name))
            if child not in roots and child not in seen:
                walk(child)

    for _, root in jobs:
        if root not in seen:
            walk(root)
    return places
