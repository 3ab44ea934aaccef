"""Markdown as rayssl's reports write it (robustness.md, quality.md, eval's table): blocks one
blank line apart, and pipe tables. Imports nothing of rayssl, so any layer may use it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def row(cells: Iterable[object]) -> str:
    """One line of a pipe table: `| a | b |`, each cell as str() gives it."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header: Sequence[str], align: str, rows: Iterable[Iterable[object]]) -> list[str]:
    """A pipe table's lines: the header, the alignment line (`align`: one letter a column, "l" left
    or "r" right), then a line a row."""
    if len(align) != len(header) or not set(align) <= {"l", "r"}:
        raise ValueError(f"align {align!r}: one of l or r for each of the {len(header)} columns")
    return [row(header), "|" + "".join("---:|" if a == "r" else "---|" for a in align), *(row(r) for r in rows)]


def document(*blocks: str | Sequence[str]) -> str:
    """The blocks (a line, or a list of lines; empty ones left out) one blank line apart, ending in a newline."""
    lines: list[str] = []
    for block in blocks:
        if block:
            lines += [*([""] if lines else []), *([block] if isinstance(block, str) else block)]
    return "\n".join(lines) + "\n"
