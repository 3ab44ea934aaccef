"""docs/configuration.md is generated from the config classes (rayssl.config.reference) and kept fresh.

The expected keys come from walking the job roots' dataclass fields, never from a list: a key added
to any section must show up on the page, either under its dotted path or through the row that points
its section to where the section is documented once (a shared section, or the `finetune` job inside
`sweep`).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from pathlib import Path

import pytest

import rayssl.config as config
from rayssl.config import reference, rules

ROOT = Path(__file__).parents[2]
PAGE = ROOT / "docs" / "configuration.md"
JOB_ROOTS = {
    "pretrain": config.PretrainConfig,
    "finetune": config.FinetuneConfig,
    "sweep": config.SweepConfig,
    "quality": config.QualityConfig,
    "robustness": config.RobustnessConfig,
}


@pytest.fixture(scope="module")
def rendered() -> str:
    return reference.render()


def leaf_keys(cls: type, prefix: str = "") -> list[str]:
    """Every leaf key under a config class, descending into sections (also `Section | None` ones)."""
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        sections = [a for a in args if dataclasses.is_dataclass(a)]
        if sections:
            for section in sections:
                keys += leaf_keys(section, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def scopes(text: str) -> dict[str, tuple[str, dict[str, list[str]]]]:
    """anchor -> (key prefix, {row key: cells}) for each job (`## \\`rayssl X\\``, keys as written in
    that job's YAML) and each shared section (`### \\`name\\` section`, keys under `name.`). A scope's
    rows are those up to the next heading of its level or above (its own sections' tables included)."""
    lines = text.splitlines()
    found = {}
    for i, line in enumerate(lines):
        job = re.fullmatch(r"## `rayssl (\w+)`", line)
        shared = re.fullmatch(r"### `([\w.]+)` section", line)
        if not (job or shared):
            continue
        level = 2 if job else 3
        rows = {}
        for row in lines[i + 1 :]:
            heading = re.match(r"(#+) ", row)
            if heading and len(heading.group(1)) <= level:
                break
            match = re.match(r"\| `([\w.]+)` \|", row)
            if match:
                rows[match.group(1)] = cells(row)
        found[slug(line.lstrip("#"))] = ("" if job else shared.group(1), rows)
    return found


def documented(all_scopes, anchor: str, path: str) -> bool:
    """Whether `path` (relative to the scope) has a row there, or lies under a row that links to the
    scope documenting its section."""
    prefix, rows = all_scopes[anchor]
    full = f"{prefix}.{path}" if prefix else path
    if full in rows:
        return True
    for key, row in rows.items():
        if full.startswith(key + "."):
            for target in re.findall(r"\]\(#([\w-]+)\)", row[-1]):
                if target in all_scopes:
                    return documented(all_scopes, target, full[len(key) + 1 :])
    return False


def test_page_is_fresh(rendered):
    assert PAGE.exists() and PAGE.read_text(encoding="utf-8") == rendered, (
        "docs/configuration.md is stale: run `python -m rayssl.config.reference --out docs/configuration.md`"
    )


def test_every_leaf_key_of_every_job_is_documented(rendered):
    all_scopes = scopes(rendered)
    for command, root in JOB_ROOTS.items():
        anchor = slug(f"`rayssl {command}`")
        assert anchor in all_scopes, f"no section for rayssl {command}"
        keys = leaf_keys(root)
        assert keys
        missing = [key for key in keys if not documented(all_scopes, anchor, key)]
        assert not missing, f"rayssl {command}: keys not on the page: {missing}"


def test_every_link_on_the_page_resolves(rendered):
    anchors = {slug(line.lstrip("#")) for line in rendered.splitlines() if re.match(r"#+ ", line)}
    broken = sorted(set(re.findall(r"\]\(#([\w-]+)\)", rendered)) - anchors)
    assert not broken


def test_constraints_and_comments_are_extracted(rendered):
    all_scopes = scopes(rendered)
    rows = {key: row for anchor in ("optim-section", "augment-section", "data-section") for key, row in all_scopes[anchor][1].items()}
    # columns: key | type | default | constraint | meaning
    assert rules.POSITIVE[1] in rows["optim.lr"][3]  # a named rule of rayssl.config.rules
    assert "between 0 and 180" in rows["augment.rotate_deg"][3]  # an inline (lambda, "...") rule
    assert rows["optim.lr"][2] == "`0.001`" and rows["optim.lr"][1] == "`float`"
    # The trailing comment of `image_size: int = 32  # ...` in DataConfig, read here with plain string ops.
    line = next(line for line in inspect.getsource(config.DataConfig).splitlines() if line.strip().startswith("image_size:"))
    comment = line.split("#", 1)[1].strip()
    assert comment and comment in rows["data.image_size"][4]
    # A comment block above a field (FinetuneConfig.method) is its meaning too; require() gives a cross-field rule.
    assert "inverted_vae" in all_scopes["rayssl-finetune"][1]["method"][4]
    assert "`model.vit.width`:" in rendered and "not divisible by heads" in rendered


def test_every_key_has_a_meaning():
    from rayssl.config.reference import build

    _, problems = build()
    assert problems == [], "config keys without a comment (add one next to the field):\n" + "\n".join(problems)
