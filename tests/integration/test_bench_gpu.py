"""`bench/gpu.py --tiny` end to end: the GPU suite's every item, with tiny models on the CPU, so that the script
cannot rot between the short windows a GPU machine is lent (docs/gpu.md).

The script starts a local Ray of its own (no dashboard; every item's process attaches to it through RAY_ADDRESS)
and writes to this test's temporary folder, so it shares nothing with the session's `ray_local` fixture and never
touches bench/results. It runs once for the module; the tests below read its JSON and markdown.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ITEMS = ("environment", "mae", "nat", "decode", "train_vs_plain", "compile", "predict", "peers", "few_labels")  # the run's order
# The peer (LightlySSL) is a bench-only extra: where it is installed the peers item runs for real, else it says why not.
HAS_PEER = importlib.util.find_spec("lightly") is not None
# The figures a CPU measures, per item: numbers above 0, never "failed: ..." or "skipped: ...".
MEASURED = {
    "mae": ("memory_images_per_s", "pipeline_images_per_s", "pipeline_over_memory"),
    "nat": ("memory_images_per_s", "pipeline_images_per_s", "pipeline_over_memory"),
    "decode": ("cpu_images_per_s", "header_images_per_s", "device_path_cpu_images_per_s"),
    "train_vs_plain": ("plain_step_ms", "ray_train_step_ms", "ratio"),
    "compile": ("eager_images_per_s", "compiled_images_per_s", "speedup"),
    "predict": ("images_per_s", "images"),
    "few_labels": ("steps_run", "steps_per_s"),
    **({"peers": ("images_per_s_rayssl", "images_per_s_peer", "rayssl_over_peer", "knn_rayssl", "knn_peer")} if HAS_PEER else {}),
}
# What needs CUDA by nature: recorded as skipped on the CPU, not failed.
NEEDS_CUDA = {
    "mae": ("memory_gpu_util_pct", "pipeline_gpu_util_pct"),
    "nat": ("memory_gpu_util_pct", "pipeline_gpu_util_pct"),
    "decode": ("nvjpeg_images_per_s", "nvjpeg_over_cpu"),
    "environment": ("memory_gib", "capability"),
}
HEADER = ("device", "driver", "cuda", "cudnn", "nccl", "torch", "ray")
# A tiny run takes ~5 minutes on 2 free cores (~9 with the peers item); its own budget (15 minutes, so that a busy
# machine is slow, not failed) bounds it, and the test gives up a little after that.
DEADLINE_S = 1200


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    """(the JSON report, the markdown page) of one `bench/gpu.py --tiny` run."""
    out = tmp_path_factory.mktemp("bench_gpu")
    command = [sys.executable, "bench/gpu.py", "--tiny", "--out", str(out)]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=DEADLINE_S)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (report,) = out.glob("gpu_*.json")  # gpu_cpu.json: named after the device
    return json.loads(report.read_text()), report.with_suffix(".md").read_text()


def test_every_item_runs_on_the_cpu(tiny_run: tuple[dict, str]) -> None:
    report, _ = tiny_run
    assert tuple(report["items"]) == ITEMS  # in the order they ran: few_labels last, on the time left
    for key, result in report["items"].items():
        if key == "peers" and not HAS_PEER:
            assert result["status"] == "skipped: LightlySSL is not installed: pip install -e '.[bench]'", result
            continue
        assert result["status"] == "ok", (key, result)
        assert 0 < result["seconds"] <= result["limit_s"] + 30, (key, result)
    for key, figures in MEASURED.items():
        for figure in figures:
            value = report["items"][key][figure]
            assert isinstance(value, int | float) and not isinstance(value, bool) and value > 0, (key, figure, value)
    assert report["items"]["environment"]["train_worker_cuda_available"] is False  # the tiny run asks for no GPU
    few = report["items"]["few_labels"]
    assert few["finished"] and few["steps_run"] == few["recipe_steps"] and 0 <= few["test_acc_pct"] <= 100


def test_cuda_figures_are_skipped_not_failed(tiny_run: tuple[dict, str]) -> None:
    report, _ = tiny_run
    for key, figures in NEEDS_CUDA.items():
        for figure in figures:
            assert report["items"][key][figure] == "skipped: no CUDA", (key, figure)


def test_markdown_has_the_header_and_every_item(tiny_run: tuple[dict, str]) -> None:
    report, page = tiny_run
    header = report["header"]
    assert all(header[field] for field in HEADER), header
    assert header["torch"] in page and header["ray"] in page and f"cuDNN {header['cudnn']}" in page
    assert f"NCCL {header['nccl']}" in page and f"driver {header['driver']}" in page
    rows = [line for line in page.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| # | item | figure | value | anchor | status |")
    numbered = [row.split("|")[1].strip() for row in rows[1:] if row.split("|")[1].strip()]
    assert numbered == [str(n) for n in range(1, 10)]  # every item, in the numbering
    assert "failed" not in page
