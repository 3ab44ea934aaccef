"""Label-efficiency results: JSON, a markdown table and a plot (accuracy vs labels per class)."""

from __future__ import annotations

import io
import json

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from rayssl.config import StorageConfig  # noqa: E402
from rayssl.data import storage  # noqa: E402


def markdown(rows: list[dict], variants: list[str]) -> str:
    """rows: [{"budget", "variant", "alpha", "val_acc", "test_acc"}] -> budget x variant table."""
    cell = {(r["budget"], r["variant"]): r for r in rows}
    lines = ["| labels / class | " + " | ".join(variants) + " |", "|---:|" + "---:|" * len(variants)]
    for budget in sorted({r["budget"] for r in rows}):
        cells = []
        for v in variants:
            r = cell.get((budget, v))
            cells.append(f"{100 * r['test_acc']:.2f}% (α={r['alpha']:.2g})" if r else "–")
        lines.append(f"| {budget} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_png(rows: list[dict], variants: list[str], title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for v in variants:
        points = sorted((r["budget"], r["test_acc"]) for r in rows if r["variant"] == v)
        if points:
            ax.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", label=v)
    ax.set_xscale("log")
    ax.set_xlabel("labels per class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_report(sweep_dir: str, rows: list[dict], variants: list[str], storage_cfg: StorageConfig, title: str) -> str:
    table = markdown(rows, variants)
    storage.write_bytes(storage.join(sweep_dir, "label_efficiency.json"), json.dumps({"variants": variants, "rows": rows}, indent=2).encode(), storage_cfg)
    storage.write_bytes(storage.join(sweep_dir, "label_efficiency.md"), (table + "\n").encode(), storage_cfg)
    storage.write_bytes(storage.join(sweep_dir, "label_efficiency.png"), plot_png(rows, variants, title), storage_cfg)
    return table
