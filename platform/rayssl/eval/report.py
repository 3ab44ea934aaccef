"""Evaluation results as JSON and as a printed markdown table."""

from __future__ import annotations

import json

from rayssl import markdown as md
from rayssl.config import StorageConfig
from rayssl.data import storage


def markdown_table(rows: list[dict]) -> str:
    """rows: [{"features", "knn_acc", "linear_acc", ...}] -> a markdown table."""
    cells = [[r["features"], f"{100 * r['knn_acc']:.2f}%", f"{100 * r['linear_acc']:.2f}%"] for r in rows]
    return "\n".join(md.table(["features", "kNN acc", "linear-probe acc"], "lrr", cells))


def write_eval(run_dir: str, result: dict, storage_cfg: StorageConfig) -> str:
    uri = storage.join(run_dir, "eval.json")
    storage.write_bytes(uri, json.dumps(result, indent=2).encode(), storage_cfg)
    return uri
