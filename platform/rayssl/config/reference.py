"""docs/configuration.md, generated from the config dataclasses: every key of every job.

    python -m rayssl.config.reference --out docs/configuration.md    # or: ... > docs/configuration.md

Everything is read from the classes at run time, nothing is listed by hand but the five job roots:
the keys and types from `dataclasses.fields` and the resolved annotations; defaults from the field
defaults (factories called); constraints from the `check(...)` and `require(...)` calls in each
class's `__post_init__` (parsed with `ast`, rule names resolved in rayssl.config.rules); meanings
from the field's comment (the trailing `# ...` on its line, after the comment lines directly above
it), read with `tokenize` from the class's source.

A section class used in more than one place (StorageConfig, DataConfig, AugmentConfig, ...) is
documented once, under "Shared sections", and every place that uses it has a row pointing there;
a section used in one place only is a table of its own under its parent. What could not be
extracted well (a key without a comment, a rule that names no field) is printed on stderr.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

import rayssl.config as config_package
from rayssl.config import rules

# The job roots: (command, class name exported by rayssl.config).
JOBS = (
    ("pretrain", "PretrainConfig"),
    ("finetune", "FinetuneConfig"),
    ("sweep", "SweepConfig"),
    ("quality", "QualityConfig"),
    ("robustness", "RobustnessConfig"),
)

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


def job_roots() -> list[tuple[str, type]]:
    return [(command, getattr(config_package, name)) for command, name in JOBS]


# --- types and values -------------------------------------------------------------------------


def _union_args(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def section_class(hint: Any) -> type | None:
    """The dataclass a field holds (`X` or `X | None`), else None: the field is a leaf key."""
    for arg in _union_args(hint):
        if dataclasses.is_dataclass(arg) and isinstance(arg, type):
            return arg
    return None


def is_optional(hint: Any) -> bool:
    return type(None) in _union_args(hint)


def type_text(hint: Any) -> str:
    """`int`, `str | None`, `"global" | "multiscale"`, `list[int | "all"]`, `AugmentConfig | None`."""
    if hint is type(None):
        return "None"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is Literal:
        return " | ".join(json.dumps(a) if isinstance(a, str) else yaml_text(a) for a in args)
    if origin is not None and args:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_text(a) for a in args)}]"
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def yaml_text(value: Any) -> str:
    """A value as YAML writes it in flow style: null, true, 0.001, '', [1, 5], {}."""
    text = yaml.safe_dump(_plain(value), default_flow_style=True, width=1_000_000, sort_keys=False, allow_unicode=True).strip()
    return text.removesuffix("...").strip()


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def defaults_of(cls: type, instance: Any = None) -> dict[str, Any]:
    """Field name -> default: the instance's values when one is given, else the class's field defaults."""
    if instance is not None:
        return {f.name: getattr(instance, f.name) for f in dataclasses.fields(cls)}
    return {f.name: field_default(f) for f in dataclasses.fields(cls)}


def flat_defaults(cls: type, instance: Any = None, prefix: str = "") -> dict[str, Any]:
    """Dotted leaf key -> default, through nested sections (a section that is None is one leaf)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for name, value in defaults_of(cls, instance).items():
        child = section_class(hints[name])
        if child is not None and isinstance(value, child):
            out.update(flat_defaults(child, value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


# --- the class's source: comments and the rules of __post_init__ -------------------------------


@dataclass
class CrossRule:
    key: str  # relative to the class, may be dotted ("inversion.kind")
    message: str


@dataclass
class ClassInfo:
    doc: str = ""  # the docstring's first paragraph, one line
    module: str = ""
    comments: dict[str, str] = field(default_factory=dict)  # field -> its comment
    see: dict[str, str] = field(default_factory=dict)  # field without a comment -> the field whose comment names it
    constraints: dict[str, list[str]] = field(default_factory=dict)  # field -> rule descriptions
    cross: list[CrossRule] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


_INFO: dict[type, ClassInfo] = {}


def class_info(cls: type) -> ClassInfo:
    if cls not in _INFO:
        _INFO[cls] = _read_class(cls)
    return _INFO[cls]


def _read_class(cls: type) -> ClassInfo:
    info = ClassInfo(module=cls.__module__)
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError) as exc:
        info.problems.append(f"{cls.__name__}: source not found ({exc}): no comments or constraints")
        return info
    tree = ast.parse(source)
    classdef = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    docstring = ast.get_docstring(classdef) or ""
    info.doc = " ".join(docstring.split("\n\n")[0].split())
    info.comments, info.see = _field_comments(cls, classdef, source)
    module_globals = vars(sys.modules[cls.__module__])
    post_init = next((n for n in classdef.body if isinstance(n, ast.FunctionDef) and n.name == "__post_init__"), None)
    if post_init is not None:
        _RuleReader(cls, info, module_globals).statements(post_init.body, {})
    return info


def _field_comments(cls: type, classdef: ast.ClassDef, source: str) -> tuple[dict[str, str], dict[str, str]]:
    """Field -> the comment lines directly above it, then the trailing comment of its statement; and
    field -> an earlier field, for a field with neither that follows a field whose comment names it
    (by name, or every word of its name): a comment written once for a group of keys.
    """
    lines = source.splitlines()
    comment_at: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comment_at[tok.start[0]] = tok.string.lstrip("#").strip()

    def comment_only(lineno: int) -> bool:
        return 1 <= lineno <= len(lines) and lines[lineno - 1].lstrip().startswith("#")

    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, str] = {}
    see: dict[str, str] = {}
    previous: tuple[str, str] | None = None  # (field, its comment) for the group rule
    for node in classdef.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id in names):
            continue
        name = node.target.id
        above: list[str] = []
        lineno = node.lineno - 1
        while comment_only(lineno):
            above.insert(0, comment_at.get(lineno, ""))
            lineno -= 1
        trailing = [
            comment_at[n] for n in range(node.lineno, (node.end_lineno or node.lineno) + 1) if n in comment_at and not comment_only(n)
        ]
        text = " ".join(part for part in (" ".join(above), " ".join(trailing)) if part)
        if text:
            out[name] = text
            previous = (name, text)
        elif previous is not None and _names(name, previous[1]):
            see[name] = previous[0]
        else:
            previous = None
    return out, see


def _names(name: str, comment: str) -> bool:
    """Whether a comment names a key: the key itself, or every word of it (grayscale_p: "grayscale ... p")."""
    if re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", comment):
        return True
    words = set(re.split(r"[^a-z0-9]+", comment.lower()))
    return all(part in words for part in name.lower().split("_"))


class _RuleReader:
    """The check(...) and require(...) calls of one __post_init__, for-loops over literals unrolled."""

    def __init__(self, cls: type, info: ClassInfo, module_globals: dict[str, Any]) -> None:
        self.cls, self.info, self.globals = cls, info, module_globals
        self.locals: dict[str, Any] = {}  # literal assignments (strategies = ("PACK", ...))
        self.fields = {f.name for f in dataclasses.fields(cls)}
        self.hints = typing.get_type_hints(cls)

    def problem(self, node: ast.AST, what: str) -> None:
        self.info.problems.append(f"{self.cls.__name__}.__post_init__: {what}: {ast.unparse(node)[:120]}")

    def statements(self, body: list[ast.stmt], bound: dict[str, Any]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                try:
                    self.locals[stmt.targets[0].id] = ast.literal_eval(stmt.value)
                except (ValueError, TypeError, SyntaxError):
                    pass
            if isinstance(stmt, ast.For):
                try:
                    values = ast.literal_eval(stmt.iter)
                except (ValueError, TypeError, SyntaxError):
                    values = None
                if values is not None and isinstance(stmt.target, ast.Name):
                    for value in values:
                        self.statements(stmt.body, {**bound, stmt.target.id: value})
                    continue
            if isinstance(stmt, (ast.For, ast.While, ast.If, ast.With, ast.Try)):
                for part in ("body", "orelse", "finalbody"):
                    self.statements(getattr(stmt, part, []), bound)
                for handler in getattr(stmt, "handlers", []):
                    self.statements(handler.body, bound)
                continue
            for node in ast.walk(stmt):
                if isinstance(node, ast.Call):
                    func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                    if func == "check":
                        self.check(node, bound)
                    elif func == "require":
                        self.require(node, bound)

    def check(self, call: ast.Call, bound: dict[str, Any]) -> None:
        if len(call.args) < 3 or call.keywords:
            return self.problem(call, "check() call not understood")
        where = ast.unparse(call.args[0])
        if where != "self" and not where.startswith("self."):
            return self.problem(call, "check() on something other than self")
        prefix = where.removeprefix("self").removeprefix(".")
        prefix = f"{prefix}." if prefix else ""
        rule, description = self.rule(call.args[1], bound)
        if description is None:
            return self.problem(call, "rule not resolved")
        for arg in call.args[2:]:
            name = self.text(arg, bound)
            if name is None:
                self.problem(call, "key name not a string")
                continue
            key = prefix + name
            if not prefix and name not in self.fields:
                self.problem(call, f"names {name!r}, not a field of {self.cls.__name__}")
                continue
            text = description
            if rule is not rules.NONEMPTY and not prefix and typing.get_origin(self.hints[name]) is list:
                text = f"each item: {description}"  # check() tests a list's items one by one
            self.info.constraints.setdefault(key, []).append(text)

    def require(self, call: ast.Call, bound: dict[str, Any]) -> None:
        if len(call.args) != 3:
            return self.problem(call, "require() call not understood")
        key, message = self.text(call.args[1], bound), self.text(call.args[2], bound)
        if key is None or message is None:
            return self.problem(call, "require() key or message not a string")
        # The message is an error for a bad value: drop its echoes of values ("..., got {x}", " ({y})").
        message = re.sub(r",? got [^{}]*\{[^}]*\}$", "", message)
        message = re.sub(r" \(\{[^}]*\}\)", "", message).strip()
        self.info.cross.append(CrossRule(key, message))

    def rule(self, node: ast.expr, bound: dict[str, Any]) -> tuple[Any, str | None]:
        if isinstance(node, ast.Tuple) and len(node.elts) == 2:
            return None, self.text(node.elts[1], bound)
        value = None
        if isinstance(node, ast.Name):
            value = getattr(rules, node.id, None) or self.globals.get(node.id) or self.locals.get(node.id)
        elif isinstance(node, ast.Attribute):
            value = self.evaluate(node, bound)
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str):
            return value, value[1]
        return None, None

    def text(self, node: ast.expr, bound: dict[str, Any]) -> str | None:
        """A string literal, or an f-string: values it can compute without `self` filled in, the rest as {key}."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name) and isinstance(bound.get(node.id), str):
            return bound[node.id]
        if not isinstance(node, ast.JoinedStr):
            return None
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
                continue
            assert isinstance(value, ast.FormattedValue)
            result = self.evaluate(value.value, bound)
            if result is _UNKNOWN:
                parts.append("{" + ast.unparse(value.value).replace("self.", "") + "}")
            else:
                parts.append(repr(result) if value.conversion == ord("r") else str(result))
        return "".join(parts)

    def evaluate(self, node: ast.expr, bound: dict[str, Any]) -> Any:
        if any(isinstance(n, ast.Name) and n.id == "self" for n in ast.walk(node)):
            return _UNKNOWN
        try:
            return eval(compile(ast.Expression(node), "<config rule>", "eval"), dict(self.globals), {**self.locals, **bound})
        except Exception:
            return _UNKNOWN


_UNKNOWN = object()


# --- layout: which sections are shared, and where each class is used -------------------------


@dataclass
class Layout:
    jobs: list[tuple[str, type]]
    shared: dict[type, str]  # shared section class -> its name ("data", "augment")
    used_as: dict[type, list[tuple[str, str]]]  # class -> (dotted path, command) everywhere it is reached

    def job_of(self, cls: type) -> str | None:
        return next((command for command, root in self.jobs if root is cls), None)


def layout() -> Layout:
    jobs = job_roots()
    roots = {cls for _, cls in jobs}
    places: dict[type, list[tuple[type, str]]] = {}  # class -> [(parent class, field name)], first seen first
    seen: set[type] = set()

    def walk(cls: type) -> None:
        if cls in seen:
            return
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            child = section_class(hints[f.name])
            if child is None:
                continue
            if (cls, f.name) not in places.setdefault(child, []):
                places[child].append((cls, f.name))
            if child not in roots:
                walk(child)

    for _, root in jobs:
        walk(root)
    shared: dict[type, str] = {}
    for cls, where in places.items():
        if cls in roots or len(where) < 2:
            continue
        name = where[0][1]
        if name in shared.values():
            name = cls.__name__.removesuffix("Config").lower()
        shared[cls] = name

    used_as: dict[type, list[tuple[str, str]]] = {}

    def paths(cls: type, prefix: str, command: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            child = section_class(hints[f.name])
            if child is not None:
                used_as.setdefault(child, []).append((prefix + f.name, command))
                paths(child, f"{prefix}{f.name}.", command)

    for command, root in jobs:
        paths(root, "", command)
    return Layout(jobs, shared, used_as)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def job_heading(command: str) -> str:
    return f"`rayssl {command}`"


def shared_heading(name: str) -> str:
    return f"`{name}` section"


# --- markdown ---------------------------------------------------------------------------------


def _md(text: str) -> str:
    """Text for a table cell: pipes escaped, tag-like `<` escaped outside code spans, one line."""
    return _para(text).replace("|", "\\|")


def _para(text: str) -> str:
    """Text for a paragraph or list item: tag-like `<` escaped outside code spans, one line."""
    parts = " ".join(text.split()).split("`")
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", parts[i])
    return "`".join(parts)


def _sentence(text: str) -> str:
    return f"{text}." if text and text[-1] not in ".!?:" else text


def _code(text: str) -> str:
    return f"`{text}`"


class Renderer:
    def __init__(self) -> None:
        self.layout = layout()
        self.problems: list[str] = []
        self.out: list[str] = []
        # Documented key -> links to where a cross-field rule on it is listed, when that is not under its own table.
        self.rules_elsewhere: dict[str, list[str]] = {}

    def link(self, cls: type) -> str:
        command = self.layout.job_of(cls)
        heading = job_heading(command) if command else shared_heading(self.layout.shared[cls])
        label = f"`rayssl {command}`" if command else f"`{self.layout.shared[cls]}`"
        return f"[{label}](#{slug(heading)})"

    def render(self) -> str:
        self.page()  # a first pass finds the cross-field rules listed away from their key's table
        self.out, self.problems = [], []
        return self.page()

    def documented_key(self, cls: type, prefix: str, dotted: str) -> str | None:
        """The row key a dotted key below `cls` (documented under `prefix`) has on the page."""
        parts = dotted.split(".")
        for part in parts[:-1]:
            hints = typing.get_type_hints(cls)
            child = section_class(hints[part]) if part in hints else None
            if child is None:
                return None
            if child in self.layout.shared:
                prefix = f"{self.layout.shared[child]}."
            elif self.layout.job_of(child):
                prefix = ""
            else:
                prefix = f"{prefix}{part}."
            cls = child
        return prefix + parts[-1]

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
            for path, command in self.layout.used_as.get(cls, []):
                used.setdefault(path, []).append(f"`rayssl {command}`")
            where = "; ".join(f"`{path}` in {', '.join(dict.fromkeys(commands))}" for path, commands in used.items())
            self.section(
                cls, prefix=f"{name}.", values=None, level=3, intro=f"`{cls.__name__}` ({cls.__module__})", scope=self.link(cls), used=where
            )
        text = "\n".join(self.out).rstrip("\n") + "\n"
        return re.sub(r"\n{3,}", "\n\n", text)

    def section(self, cls: type, prefix: str, values: Any, level: int, intro: str, scope: str, used: str = "") -> None:
        """One table for `cls` (keys under `prefix`), its cross-field rules, then its own sections' tables."""
        info = class_info(cls)
        for problem in info.problems:
            if problem not in self.problems:
                self.problems.append(problem)
        head = f"{intro}: {info.doc}" if info.doc else f"{intro}."
        self.out += [_para(head) + (f" Used as {used}." if used else ""), ""]
        hints = typing.get_type_hints(cls)
        defaults = defaults_of(cls, values)
        rows, children = [], []
        cross = list(info.cross)
        for key, rule_list in info.constraints.items():
            if "." in key:  # check(self.section, ...): a rule on a key of a section below, listed with the rules
                cross.append(CrossRule(key, "must be " + " and ".join(rule_list)))
        crossed = {rule.key for rule in cross}
        for rule in cross:
            documented = self.documented_key(cls, prefix, rule.key) if "." in rule.key else None
            if documented is not None and scope not in self.rules_elsewhere.setdefault(documented, []):
                self.rules_elsewhere[documented].append(scope)
        for f in dataclasses.fields(cls):
            hint, value, key = hints[f.name], defaults[f.name], prefix + f.name
            child = section_class(hint)
            comment = info.comments.get(f.name, "")
            if not comment and f.name in info.see:
                comment = f"see `{prefix}{info.see[f.name]}`"
            if child is not None and child not in self.layout.shared and self.layout.job_of(child) is None:
                children.append((f.name, child, value if isinstance(value, child) else None))
                if not is_optional(hint):
                    continue
                meaning = f"{_sentence(comment)} The keys: the `{key}` table below.".strip()
                rows.append((key, type_text(hint), self.default_text(child, value), "", meaning))
                continue
            if child is not None:
                meaning = f"{_sentence(comment)} Keys: see {self.link(child)}.".strip()
                rows.append((key, type_text(hint), self.default_text(child, value), "", meaning))
                continue
            constraint = "; ".join(info.constraints.get(f.name, []))
            notes = ["see below"] if f.name in crossed else []
            notes += [f"a cross-field rule under {where}" for where in self.rules_elsewhere.get(key, [])]
            constraint = "; ".join([constraint, *notes] if constraint else notes)
            if not comment:
                self.problems.append(f"{cls.__name__}.{f.name}: {NO_COMMENT}")
            rows.append((key, type_text(hint), "required" if value is MISSING else _code(yaml_text(value)), constraint, comment))
        if rows:
            self.out += ["| key | type | default | constraint | meaning |", "|---|---|---|---|---|"]
            for key, type_, default, constraint, meaning in rows:
                self.out.append(f"| `{key}` | `{_md(type_)}` | {_md(default)} | {_md(constraint)} | {_md(meaning)} |")
            self.out.append("")
        if cross:
            self.out += ["Cross-field rules (the error each raises):", ""]
            self.out += [f"- `{prefix}{rule.key}`: {_para(rule.message)}" for rule in cross]
            self.out.append("")
        for name, child, child_values in children:
            self.out += [f"{'#' * (level + 1)} `{prefix}{name}`", ""]
            self.section(child, prefix=f"{prefix}{name}.", values=child_values, level=level + 1, intro=f"`{child.__name__}`", scope=scope)

    def default_text(self, cls: type, value: Any) -> str:
        """A section's default: null, the section's own defaults, or the keys whose defaults differ here."""
        if value is None:
            return "`null`"
        if value is MISSING:
            return "required"
        if not isinstance(value, cls):
            return _code(yaml_text(value))
        base, here = flat_defaults(cls), flat_defaults(cls, value)
        changed = [f"`{k}: {yaml_text(v)}`" for k, v in here.items() if base.get(k, MISSING) != v]
        if not changed:
            return "section defaults"
        return ", ".join(changed) + ", others: section defaults"


def build() -> tuple[str, list[str]]:
    """The page and what could not be extracted well (one line each)."""
    _INFO.clear()
    renderer = Renderer()
    text = renderer.render()
    return text, renderer.problems


def render() -> str:
    return build()[0]


def main(argv: list[str] | None = None) -> None:
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
