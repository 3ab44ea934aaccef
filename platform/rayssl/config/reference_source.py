"""What a config class's source says beyond its fields, for the docs page (rayssl.config.reference).

- Each field's comment, read with `tokenize`: the comment lines directly above the field, then the
  trailing `# ...` of its statement. It is the key's meaning on the page.
- The rules of its `__post_init__`, read with `ast`: a `check(self, RULE, "key", ...)` call is a
  constraint of each key it names (RULE is a rule of rayssl.config.rules or an inline
  `(test, "what the value must be")` pair); a `require(ok, "key", "message")` call is a cross-field
  rule, listed under the table with the error it raises.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import re
import sys
import textwrap
import tokenize
import typing
from dataclasses import dataclass, field
from typing import Any

from rayssl.config import rules


@dataclass
class CrossRule:
    """One require(ok, key, message) call of a __post_init__."""

    key: str  # relative to the class, may be dotted ("inversion.kind")
    message: str  # the error message, less its echoes of the bad values


@dataclass
class ClassInfo:
    """What the source of one config class says about its keys."""

    doc: str  # the docstring's first paragraph, on one line
    comments: dict[str, str]  # field -> its comment
    see: dict[str, str]  # field without a comment -> the field before it whose comment names it
    constraints: dict[str, list[str]] = field(default_factory=dict)  # field -> what its check() rules require
    cross: list[CrossRule] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # check()/require() calls that could not be read


@functools.cache
def class_info(cls: type) -> ClassInfo:
    """The docstring, field comments and __post_init__ rules of a config dataclass."""
    source = textwrap.dedent(inspect.getsource(cls))
    classdef = next(node for node in ast.parse(source).body if isinstance(node, ast.ClassDef))
    docstring = ast.get_docstring(classdef) or ""
    info = ClassInfo(" ".join(docstring.split("\n\n")[0].split()), *field_comments(cls, classdef, source))
    for node in classdef.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__post_init__":
            RuleReader(cls, info).read(node.body, {})
    return info


def field_comments(cls: type, classdef: ast.ClassDef, source: str) -> tuple[dict[str, str], dict[str, str]]:
    """Field -> its comment; and field -> an earlier field, for a field without a comment that
    follows a field whose comment names it: a comment written once for a group of keys.
    """
    lines = source.splitlines()
    comment_at = {
        token.start[0]: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }

    def comment_line(lineno: int) -> bool:
        return lineno in comment_at and lines[lineno - 1].lstrip().startswith("#")

    names = {f.name for f in dataclasses.fields(cls)}
    comments: dict[str, str] = {}
    see: dict[str, str] = {}
    group: tuple[str, str] | None = None  # (field, its comment): the last commented field, while the fields after it have none
    for node in classdef.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id in names):
            continue
        name = node.target.id
        first = node.lineno
        while comment_line(first - 1):
            first -= 1
        statement = range(node.lineno, (node.end_lineno or node.lineno) + 1)
        parts = [comment_at[n] for n in range(first, node.lineno)] + [comment_at[n] for n in statement if n in comment_at]
        text = " ".join(part for part in parts if part)
        if text:
            comments[name] = text
            group = (name, text)
        elif group is not None and names_key(group[1], name):
            see[name] = group[0]
        else:
            group = None
    return comments, see


def names_key(comment: str, key: str) -> bool:
    """Whether a comment names a key: the key itself, or every word of it (grayscale_p: "grayscale ... p")."""
    if re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", comment):
        return True
    words = set(re.split(r"[^a-z0-9]+", comment.lower()))
    return all(part in words for part in key.lower().split("_"))


UNKNOWN = object()  # an expression that needs `self` (or fails) to be computed


class RuleReader:
    """Reads the check() and require() calls of one __post_init__ into the class's ClassInfo.

    A name given a value that can be computed without `self` (`strategies = ("PACK", ...)`) is
    remembered for the calls after it; a for-loop over such a value is read once per item, with the
    loop variable bound to it.
    """

    def __init__(self, cls: type, info: ClassInfo) -> None:
        self.cls, self.info = cls, info
        self.globals = vars(sys.modules[cls.__module__])
        self.locals: dict[str, Any] = {}
        self.hints = typing.get_type_hints(cls)

    def read(self, body: list[ast.stmt], bound: dict[str, Any]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                value = self.evaluate(stmt.value, bound)
                if value is not UNKNOWN:
                    self.locals[stmt.targets[0].id] = value
            elif isinstance(stmt, ast.For) and isinstance(stmt.target, ast.Name):
                values = self.evaluate(stmt.iter, bound)
                if values is not UNKNOWN:
                    for value in values:
                        self.read(stmt.body, {**bound, stmt.target.id: value})
                    continue
            for node in ast.walk(stmt):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    if node.func.id == "check":
                        self.check(node, bound)
                    elif node.func.id == "require":
                        self.require(node, bound)

    def problem(self, call: ast.Call, what: str) -> None:
        self.info.problems.append(f"{self.cls.__name__}.__post_init__: {what}: {ast.unparse(call)[:120]}")

    def check(self, call: ast.Call, bound: dict[str, Any]) -> None:
        """check(self, RULE, "key", ...): RULE's description becomes a constraint of each key."""
        if len(call.args) < 3 or ast.unparse(call.args[0]) != "self":
            return self.problem(call, "check() call not understood")
        rule, description = self.rule(call.args[1], bound)
        if description is None:
            return self.problem(call, "rule not resolved")
        for arg in call.args[2:]:
            key = self.text(arg, bound)
            if key is None or key not in self.hints:
                self.problem(call, f"{ast.unparse(arg)} is not a field of {self.cls.__name__}")
                continue
            if rule is not rules.NONEMPTY and typing.get_origin(self.hints[key]) is list:
                description_here = f"each item: {description}"  # check() tests a list's items one by one
            else:
                description_here = description
            self.info.constraints.setdefault(key, []).append(description_here)

    def require(self, call: ast.Call, bound: dict[str, Any]) -> None:
        """require(ok, "key", "message"): a cross-field rule on the key, with its error message."""
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
        """The rule and its description: an inline (test, "description") pair, or a named rule."""
        if isinstance(node, ast.Tuple) and len(node.elts) == 2:
            return None, self.text(node.elts[1], bound)
        value = self.evaluate(node, bound)
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str):
            return value, value[1]
        return None, None

    def text(self, node: ast.expr, bound: dict[str, Any]) -> str | None:
        """A string literal, or an f-string with what it can compute filled in and the rest as {key}."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if not isinstance(node, ast.JoinedStr):
            return None
        parts = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                parts.append(str(part.value))
            elif isinstance(part, ast.FormattedValue):
                value = self.evaluate(part.value, bound)
                parts.append("{" + ast.unparse(part.value).replace("self.", "") + "}" if value is UNKNOWN else str(value))
        return "".join(parts)

    def evaluate(self, node: ast.expr, bound: dict[str, Any]) -> Any:
        """The expression's value from the module's names, the remembered locals and the loop
        variables; UNKNOWN when it uses `self` or fails."""
        if any(isinstance(n, ast.Name) and n.id == "self" for n in ast.walk(node)):
            return UNKNOWN
        try:
            return eval(compile(ast.Expression(node), "<config rule>", "eval"), dict(self.globals), {**self.locals, **bound})
        except Exception:
            return UNKNOWN
