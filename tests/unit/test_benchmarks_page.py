"""docs/benchmarks.md is generated from bench/results by bench/render_docs.py and kept fresh."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PAGE = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results"


@pytest.fixture(scope="module")
def render_docs():
    # bench/ is not a package: load the script by path.
    spec = importlib.util.spec_from_file_location("bench_render_docs", ROOT / "bench" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_page_is_fresh(render_docs):
    assert PAGE.read_text(encoding="utf-8") == render_docs.render(), (
        "docs/benchmarks.md is stale: run `python bench/render_docs.py --out docs/benchmarks.md`"
    )


def test_every_results_page_is_linked(render_docs):
    page = render_docs.render()
    pages = sorted(RESULTS.glob("*.md"))
    assert pages
    for path in pages:
        assert f"(../bench/results/{path.name})" in page, f"{path.name} is not linked from docs/benchmarks.md"
    for path in RESULTS.glob("*.json"):  # JSON-only results get a link line too
        assert f"(../bench/results/{path.name})" in page, f"{path.name} is not linked from docs/benchmarks.md"


def test_first_table_is_copied_verbatim(render_docs):
    page = render_docs.render()
    for path in RESULTS.glob("*.md"):
        lines = path.read_text(encoding="utf-8").splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("|"))
        table = []
        for line in lines[start:]:
            if not line.startswith("|"):
                break
            table.append(line)
        assert "\n" + "\n".join(table) + "\n" in page, f"the first table of {path.name} is not on the page"


def test_headline_results_come_first(render_docs):
    page = render_docs.render()
    positions = [
        page.index(f"[{name}.md](../bench/results/{name}.md)\n") for name in render_docs.HEADLINE if (RESULTS / f"{name}.md").exists()
    ]
    assert positions == sorted(positions)
