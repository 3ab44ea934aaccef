"""docs/configuration.md, generated from the config dataclasses: every key of every job.

    python -m rayssl.config.reference --out docs/configuration.md    # or: ... > docs/configuration.md

Everything is read from the classes at run time, nothing is listed by hand but the five job roots:
the keys and types from `dataclasses.fields` and the resolved annotations; defaults from the field
defaults (factories called); constraints from the `check(...)` and `require(...)` calls in each
class's `__post_init__` and meanings from the field's comment (both read by
rayssl.config.reference_source); which sections are shared and where each is used from the walk of
rayssl.config.reference_layout. This module writes the markdown.

A section class used in more than one place (StorageConfig, DataConfig, AugmentConfig, ...) is
documented once, under "Shared sections", and every place that uses it has a row pointing there;
a section used in one place only is a table of its own under its parent. What could not be
extracted well (a key without a comment, a rule that names no field) is printed on stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from rayssl.config.reference_layout import field_defaults, flat_defaults, layout, section_class
from rayssl.config.reference_source import ClassInfo, class_info

COMMAND = "python -m rayssl.config.reference --out docs/configuration.md"
NO_COMMENT = "no comment (meaning left empty)"

INTRO = """\
Every job (`rayssl pretrain`, `finetune`, `sweep`, `quality`, `robustness`) builds its config from
the defaults below, then the YAML file given with `--config FILE.yaml`, then each
`--set key.path=value` (the value is parsed as YAML, so `3` is an int and `null` is None). A key
that does not exist or a value of the wrong type fails before anything starts, naming the dotted
path of the key; so does a value outside the range given under *constraint*.

In the tables, *key* is the dotted path to write in the YAML file (nested mappings) or after
`--set`; *default* is written as YAML would write it. A section shared by several jobs is
described once under [Shared sections](#shared-sections); each job's table has a row pointing
there, and its *default* column then lists the keys whose defaults differ in that job. *Cross-field
rules* under a table are the checks that involve more than one key, with the error each raises
(`{key}` stands for the value in the message)."""


Row = tuple[str, str, str, str, str]  # key, type, default, constraint, meaning: the cells as written


# --- cell text --------------------------------------------------------------------------------


def type_text(hint: Any) -> str:
    """`int`, `str | None`, `"global" | "multiscale"`, `list[int | "all"]`, `AugmentConfig | None`."""
    if hint is type(None):
        return "None"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_text(a) for a in args)}]"
    return hint.__name__


def _plain(value: Any) -> Any:
    """Lists for tuples, all the way down: what yaml.safe_dump can write."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def yaml_text(value: Any) -> str:
    """A value as YAML writes it in flow style: null, true, 0.001, '', [1, 5], {}."""
    text = yaml.safe_dump(_plain(value), default_flow_style=True, width=1_000_000, sort_keys=False, allow_unicode=True).strip()
    return text.removesuffix("...").strip()


def section_default_text(cls: type, value: Any) -> str:
    """A section's default: null, the section's own defaults, or the keys whose defaults differ here."""
    if value is None:
        return "`null`"
    base, here = flat_defaults(cls), flat_defaults(cls, value)
    changed = [f"`{k}: {yaml_text(v)}`" for k, v in here.items() if k not in base or base[k] != v]
    return ", ".join(changed) + ", others: section defaults" if changed else "section defaults"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def job_heading(command: str) -> str:
    return f"`rayssl {command}`"


def shared_heading(name: str) -> str:
    return f"`{name}` section"


def _cell(text: str) -> str:
    """Text for a table cell: a paragraph's text with pipes escaped."""
    return _para(text).replace("|", "\\|")


def _para(text: str) -> str:
    """Text for a paragraph or list item: tag-like `<` escaped outside code spans, one line."""
    parts = " ".join(text.split()).split("`")
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", parts[i])
    return "`".join(parts)


def _sentence(text: str) -> str:
    return f"{text}." if text and text[-1] not in ".!?:" else text


# --- the page ---------------------------------------------------------------------------------


class Renderer:
    """Writes the page: the intro, each job's tables, then each shared section's.

    A key's row names the tables that list a cross-field rule on it elsewhere (a rule of a parent
    class on a key of a section below it); those are known only once every table has been written,
    so render() writes the page twice.
    """

    def __init__(self) -> None:
        self.layout = layout()
        self.problems: list[str] = []  # what could not be extracted well, one line each
        self.out: list[str] = []
        self.rules_elsewhere: dict[str, list[str]] = {}  # row key -> links to the tables listing a cross-field rule on it

    def render(self) -> str:
        self.page()  # the first pass fills rules_elsewhere
        self.out, self.problems = [], []
        return self.page()

    def link(self, cls: type) -> str:
        """A link to where a job root or shared section is documented."""
        command = self.layout.job_of(cls)
        if command:
            return f"[`rayssl {command}`](#{slug(job_heading(command))})"
        name = self.layout.shared[cls]
        return f"[`{name}`](#{slug(shared_heading(name))})"

    def page(self) -> str:
        jobs, shared = self.layout.jobs, self.layout.shared
        self.out += [
            "# Configuration reference",
            "",
            f"<!-- Generated by `{COMMAND}` from the classes in rayssl.config; edit those, not this page. -->",
            "",
            INTRO,
            "",
        ]
        self.out.append("Jobs: " + " · ".join(self.link(cls) for _, cls in jobs) + ".")
        self.out.append("Shared sections: " + " · ".join(self.link(cls) for cls in shared) + ".")
        self.out.append("")
        for command, cls in jobs:
            self.out += [f"## {job_heading(command)}", ""]
            self.section(cls, prefix="", values=None, level=2, intro=f"`{cls.__name__}` ({cls.__module__})", scope=self.link(cls))
        self.out += [
            "## Shared sections",
            "",
            "Each is documented under its usual name; the keys are the same wherever it is used (the list after "
            "*used as*), with that place's path in front.",
            "",
        ]
        for cls, name in shared.items():
            self.out += [f"### {shared_heading(name)}", ""]
            used: dict[str, list[str]] = {}
            for path, command in self.layout.used_as[cls]:
                used.setdefault(path, []).append(f"`rayssl {command}`")
            where = "; ".join(f"`{path}` in {', '.join(dict.fromkeys(commands))}" for path, commands in used.items())
            intro = f"`{cls.__name__}` ({cls.__module__})"
            self.section(cls, prefix=f"{name}.", values=None, level=3, intro=intro, scope=self.link(cls), used=where)
        text = "\n".join(self.out).rstrip("\n") + "\n"
        return re.sub(r"\n{3,}", "\n\n", text)

    def section(self, cls: type, prefix: str, values: Any, level: int, intro: str, scope: str, used: str = "") -> None:
        """The table of `cls`'s keys (written under `prefix`), its cross-field rules, then its own sections' tables.

        values: the instance whose values are the defaults here (None: the class's field defaults);
        scope: a link to the job or shared section that the table belongs to.
        """
        info = class_info(cls)
        self.problems += info.problems
        head = f"{intro}: {info.doc}" if info.doc else f"{intro}."
        self.out += [_para(head) + (f" Used as {used}." if used else ""), ""]
        for rule in info.cross:
            if "." in rule.key:  # a key of a section below: its row is in another table
                where = self.rules_elsewhere.setdefault(self.row_key(cls, prefix, rule.key), [])
                if scope not in where:
                    where.append(scope)
        rows, children = self.rows(cls, prefix, values, info)
        if rows:
            self.out += ["| key | type | default | constraint | meaning |", "|---|---|---|---|---|"]
            for key, type_, default, constraint, meaning in rows:
                self.out.append(f"| `{key}` | `{_cell(type_)}` | {_cell(default)} | {_cell(constraint)} | {_cell(meaning)} |")
            self.out.append("")
        if info.cross:
            self.out += ["Cross-field rules (the error each raises):", ""]
            self.out += [f"- `{prefix}{rule.key}`: {_para(rule.message)}" for rule in info.cross]
            self.out.append("")
        for name, child, child_values in children:
            self.out += [f"{'#' * (level + 1)} `{prefix}{name}`", ""]
            self.section(child, prefix=f"{prefix}{name}.", values=child_values, level=level + 1, intro=f"`{child.__name__}`", scope=scope)

    def rows(self, cls: type, prefix: str, values: Any, info: ClassInfo) -> tuple[list[Row], list[tuple[str, type, Any]]]:
        """The rows of `cls`'s table, and (field, class, value) of the sections below it that get tables
        of their own. A shared section or a job root gets a row that links to where it is documented."""
        hints = typing.get_type_hints(cls)
        crossed = {rule.key for rule in info.cross}
        rows: list[Row] = []
        children: list[tuple[str, type, Any]] = []
        for name, value in field_defaults(cls, values).items():
            hint, key, child = hints[name], prefix + name, section_class(hints[name])
            comment = info.comments.get(name) or (f"see `{prefix}{info.see[name]}`" if name in info.see else "")
            if child is not None and child not in self.layout.shared and self.layout.job_of(child) is None:
                children.append((name, child, value))
            elif child is not None:
                meaning = f"{_sentence(comment)} Keys: see {self.link(child)}.".strip()
                rows.append((key, type_text(hint), section_default_text(child, value), "", meaning))
            else:
                notes = ["see below"] if name in crossed else []
                notes += [f"a cross-field rule under {where}" for where in self.rules_elsewhere.get(key, [])]
                if not comment:
                    self.problems.append(f"{cls.__name__}.{name}: {NO_COMMENT}")
                constraint = "; ".join(info.constraints.get(name, []) + notes)
                rows.append((key, type_text(hint), f"`{yaml_text(value)}`", constraint, comment))
        return rows, children

    def row_key(self, cls: type, prefix: str, dotted: str) -> str:
        """The key that the row of a dotted key below `cls` (whose table writes keys under `prefix`)
        shows: a shared section's keys are written under the section's name."""
        *sections, leaf = dotted.split(".")
        for name in sections:
            child = section_class(typing.get_type_hints(cls)[name])
            assert child is not None, f"{cls.__name__}.{name} is not a section"
            prefix = f"{self.layout.shared[child]}." if child in self.layout.shared else f"{prefix}{name}."
            cls = child
        return prefix + leaf


def build() -> tuple[str, list[str]]:
    """The page and what could not be extracted well (one line each)."""
    renderer = Renderer()
    text = renderer.render()
    return text, renderer.problems


def render() -> str:
    """The page, as docs/configuration.md holds it."""
    return build()[0]


def main(argv: list[str] | None = None) -> None:
    """Write the page (to --out, else stdout); list on stderr what could not be extracted well."""
    parser = argparse.ArgumentParser(prog="python -m rayssl.config.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the page here (default: stdout)")
    parser.add_argument("--problems", action="store_true", help="list every key without a comment on stderr too")
    args = parser.parse_args(argv)
    text, problems = build()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.flush()
    uncommented = [p for p in problems if p.endswith(NO_COMMENT)]
    for problem in problems:  # rules that could not be read are always listed, keys without a comment on request
        if args.problems or problem not in uncommented:
            print(f"rayssl.config.reference: {problem}", file=sys.stderr)
    if uncommented and not args.problems:
        print(
            f"rayssl.config.reference: {len(uncommented)} keys have no comment (meaning left empty); --problems lists them", file=sys.stderr
        )


if __name__ == "__main__":
    main()
