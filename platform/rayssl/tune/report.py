"""Label-efficiency results: JSON, a markdown table and a plot (accuracy vs labels per class,
mean +- std over label draws)."""

from __future__ import annotations

import io
import json
from collections import defaultdict

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from rayssl.config import StorageConfig  # noqa: E402
from rayssl.data import storage  # noqa: E402


def summarise(draws: list[dict]) -> list[dict]:
    """One row per (budget, variant) from the selected trial of each label draw.

    Row: budget, variant, test_acc_mean, test_acc_std (sample std, ddof=1; 0 for one draw), draws,
    val_acc_mean, collapsed (how many draws' selected trial collapsed), and the selected settings
    per draw (label_seed, alpha, beta, consistency, lr, val_acc, test_acc).
    """
    cells: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for d in draws:
        cells[d["budget"], d["variant"]].append(d)
    rows = []
    for (budget, variant), cell in sorted(cells.items()):
        test = np.array([d["test_acc"] for d in cell])
        rows.append({
            "budget": budget, "variant": variant,
            "test_acc_mean": float(test.mean()), "test_acc_std": float(test.std(ddof=1)) if len(test) > 1 else 0.0,
            "draws": len(cell), "val_acc_mean": float(np.mean([d["val_acc"] for d in cell])),
            "collapsed": sum(d["collapsed"] for d in cell),
            "selected": [{k: d[k] for k in ("label_seed", "alpha", "beta", "consistency", "lr", "val_acc", "test_acc")} for d in cell],
        })
    return rows


def markdown(rows: list[dict], variants: list[str]) -> str:
    """budget x variant table of 'mean ± std % (n draws)'; collapsed draws are flagged."""
    cell = {(r["budget"], r["variant"]): r for r in rows}
    lines = ["| labels / class | " + " | ".join(variants) + " |", "|---:|" + "---:|" * len(variants)]
    for budget in sorted({r["budget"] for r in rows}):
        cells = []
        for v in variants:
            r = cell.get((budget, v))
            if r is None:
                cells.append("–")
                continue
            text = f"{100 * r['test_acc_mean']:.2f} ± {100 * r['test_acc_std']:.2f}% (n={r['draws']})"
            if r["collapsed"]:
                text += f" ⚠ collapsed in {r['collapsed']}/{r['draws']}"
            cells.append(text)
        lines.append(f"| {budget} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_png(rows: list[dict], variants: list[str], title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    for v in variants:
        points = sorted((r["budget"], r["test_acc_mean"], r["test_acc_std"]) for r in rows if r["variant"] == v)
        if points:
            budgets, means, stds = zip(*points)
            ax.errorbar(budgets, [100 * m for m in means], yerr=[100 * s for s in stds], marker="o", capsize=3, label=v)
    ax.set_xscale("log")
    ax.set_xlabel("labels per class")
    ax.set_ylabel("test accuracy (%), mean ± std over label draws")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_report(sweep_dir: str, rows: list[dict], draws: list[dict], variants: list[str], storage_cfg: StorageConfig, title: str) -> str:
    """Write label_efficiency.{json,md,png} under sweep_dir; returns the markdown table."""
    table = markdown(rows, variants)
    report = {"title": title, "variants": variants, "rows": rows, "draws": draws}
    storage.write_bytes(storage.join(sweep_dir, "label_efficiency.json"), json.dumps(report, indent=2).encode(), storage_cfg)
    storage.write_bytes(storage.join(sweep_dir, "label_efficiency.md"), (f"{title}\n\n{table}\n").encode(), storage_cfg)
    storage.write_bytes(storage.join(sweep_dir, "label_efficiency.png"), plot_png(rows, variants, title), storage_cfg)
    return table
