"""Evaluation results as JSON and as a printed markdown table."""

from __future__ import annotations

import json

from rayssl.config import StorageConfig
from rayssl.data import storage


def markdown_table(rows: list[dict]) -> str:
    """rows: [{"features", "knn_acc", "linear_acc", ...}] -> a markdown table."""
    lines = ["| features | kNN acc | linear-probe acc |", "|---|---:|---:|"]
    lines += [f"| {r['features']} | {100 * r['knn_acc']:.2f}% | {100 * r['linear_acc']:.2f}% |" for r in rows]
    return "\n".join(lines)


def write_eval(run_dir: str, result: dict, storage_cfg: StorageConfig) -> str:
    uri = storage.join(run_dir, "eval.json")
    storage.write_bytes(uri, json.dumps(result, indent=2).encode(), storage_cfg)
    return uri
