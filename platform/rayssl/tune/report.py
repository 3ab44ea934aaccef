"""Label-efficiency results: JSON, a markdown table and a plot (accuracy vs labels per class,
mean +- std over label draws)."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from collections.abc import Sequence

import matplotlib
import matplotlib.ticker
import numpy as np

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from rayssl.config import StorageConfig  # noqa: E402
from rayssl.data import storage  # noqa: E402
from rayssl.methods.supervised import SUPERVISED  # noqa: E402  (the baseline row of every sweep)


def summarise(draws: list[dict]) -> list[dict]:
    """One row per (budget, variant) from the selected trial of each label draw.

    Row: budget, variant, test_acc_mean, test_acc_std (sample std, ddof=1; 0 for one draw), draws,
    val_acc_mean, collapsed (how many draws' selected trial collapsed), and the selected settings
    per draw (label_seed, alpha, beta, consistency, lr, val_acc, test_acc).
    """
    cells: dict[tuple[int | str, str], list[dict]] = defaultdict(list)
    for d in draws:
        cells[d["budget"], d["variant"]].append(d)
    rows = []
    for (budget, variant), cell in sorted(cells.items(), key=lambda item: (labels_per_class(item[1]), item[0][1])):
        test = np.array([d["test_acc"] for d in cell])
        rows.append(
            {
                "budget": budget,
                "labels_per_class": labels_per_class(cell),
                "variant": variant,
                "test_acc_mean": float(test.mean()),
                "test_acc_std": float(test.std(ddof=1)) if len(test) > 1 else 0.0,
                "draws": len(cell),
                "val_acc_mean": float(np.mean([d["val_acc"] for d in cell])),
                "collapsed": sum(d["collapsed"] for d in cell),
                "selected": [
                    {
                        k: d[k]
                        for k in (
                            "label_seed",
                            "alpha",
                            "beta",
                            "consistency",
                            "ivae_unlabelled",
                            "ivae_label_only",
                            "lr",
                            "val_acc",
                            "test_acc",
                            "corruption_acc",
                        )
                        if k in d
                    }
                    for d in cell
                ],
            }
        )
        if all("corruption_acc" in d for d in cell):  # the sweep scored the corruption suite (SweepConfig.robustness)
            corrupted = np.array([d["corruption_acc"] for d in cell])
            rows[-1] |= {
                "corruption_acc_mean": float(corrupted.mean()),
                "corruption_acc_std": float(corrupted.std(ddof=1)) if len(corrupted) > 1 else 0.0,
            }
    return rows


def labels_per_class(rows: list[dict]) -> float:
    """Where draws (or summary rows) of one budget sit on the labels-per-class axis: the budget, or for
    budget "all" the mean labelled images per class those draws trained on."""
    return float(np.mean([r.get("labels_per_class", r["budget"]) for r in rows]))


def budget_label(row: dict) -> str:
    """'5', or 'all (7.6)' for every label the user has (7.6 per class on average)."""
    return f"all ({labels_per_class([row]):.1f})" if row["budget"] == "all" else str(row["budget"])


def markdown(rows: list[dict], variants: list[str]) -> str:
    """budget x variant table of 'mean ± std % (n draws)', with the mean corruption accuracy when
    the sweep scored it; collapsed draws are flagged."""
    cell = {(r["budget"], r["variant"]): r for r in rows}
    lines = ["| labels / class | " + " | ".join(variants) + " |", "|---:|" + "---:|" * len(variants)]
    firsts: dict[int | str, dict] = {}
    for r in rows:  # in labels-per-class order (summarise)
        firsts.setdefault(r["budget"], r)
    for budget, first in firsts.items():
        cells = []
        for v in variants:
            row = cell.get((budget, v))
            if row is None:
                cells.append("–")
                continue
            text = f"{100 * row['test_acc_mean']:.2f} ± {100 * row['test_acc_std']:.2f}% (n={row['draws']})"
            if "corruption_acc_mean" in row:
                text += f"; corrupted {100 * row['corruption_acc_mean']:.2f} ± {100 * row['corruption_acc_std']:.2f}%"
            if row["collapsed"]:
                text += f" ⚠ collapsed in {row['collapsed']}/{row['draws']}"
            cells.append(text)
        lines.append(f"| {budget_label(first)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# Accuracy levels of the "how many labels do I need?" table, as fractions of the sweep's best mean.
LEVELS = (0.90, 0.95, 0.98)


def labels_to_reach(points: Sequence[tuple[float, float]], target: float) -> float | None:
    """Labels per class at which a curve first reaches `target` accuracy, interpolated linearly in
    log(labels) between the budgets that bracket it; None if no budget reaches it.

    points: (labels per class, mean accuracy), any order. A curve already at the target at its
    smallest budget gives that budget (nothing is extrapolated below the measured range).
    """
    curve = sorted(points)
    for i, (budget, acc) in enumerate(curve):
        if acc >= target:
            if i == 0:
                return float(budget)
            (b0, a0), (b1, a1) = curve[i - 1], (budget, acc)
            t = (target - a0) / (a1 - a0)
            return float(np.exp(np.log(b0) + t * (np.log(b1) - np.log(b0))))
    return None


def labels_needed(rows: list[dict], variants: list[str], baseline: str, levels: tuple[float, ...] = LEVELS) -> list[dict]:
    """Per variant and level: labels per class to reach level x the best mean accuracy of the sweep,
    and the labels per class saved against `baseline` (supervised only) at that accuracy.

    Row: variant, level, target_acc, labels (None: not reached within the budgets), baseline_labels,
    saved (baseline_labels - labels; None when either is not reached).
    """
    best = max(r["test_acc_mean"] for r in rows)
    curves = {v: [(labels_per_class([r]), r["test_acc_mean"]) for r in rows if r["variant"] == v] for v in variants}
    out = []
    for level in levels:
        target = level * best
        reference = labels_to_reach(curves.get(baseline, []), target)
        for v in variants:
            labels = labels_to_reach(curves[v], target) if curves[v] else None
            saved = reference - labels if reference is not None and labels is not None else None
            out.append({"variant": v, "level": level, "target_acc": target, "labels": labels, "baseline_labels": reference, "saved": saved})
    return out


def labels_needed_markdown(needed: list[dict], variants: list[str], max_budget: float) -> str:
    """variant x level table: 'labels per class (saved against supervised only)'."""
    levels = sorted({n["level"] for n in needed})
    cell = {(n["variant"], n["level"]): n for n in needed}
    header = [f"{100 * lv:.0f}% of best ({100 * cell[variants[0], lv]['target_acc']:.1f}%)" for lv in levels]
    lines = ["| labels per class to reach | " + " | ".join(header) + " |", "|---|" + "---:|" * len(levels)]
    for v in variants:
        texts = []
        for lv in levels:
            n = cell[v, lv]
            text = f"{n['labels']:.1f}" if n["labels"] is not None else f"> {max_budget:g}"
            if n["saved"] is not None and n["variant"] != SUPERVISED:
                text += f" (saves {n['saved']:.1f})"
            elif n["labels"] is not None and n["baseline_labels"] is None and n["variant"] != SUPERVISED:
                text += f" (supervised only: > {max_budget:g})"
            texts.append(text)
        lines.append(f"| {v} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def compute_markdown(compute: dict) -> str:
    """One paragraph: the sweep's wall time and the CPU/GPU-hours it reserved, per variant."""
    per_variant = "; ".join(
        f"{v}: {c['cpu_hours']:.2f} CPU-h"
        + (f", {c['gpu_hours']:.2f} GPU-h" if c["gpu_hours"] else "")
        + f" ({c['trials']} trial{'' if c['trials'] == 1 else 's'})"
        for v, c in compute["per_variant"].items()
    )
    gpu = f", {compute['gpu_hours']:.2f} GPU-hours" if compute["gpu_hours"] else ""
    return (
        f"Cost: {compute['wall_s'] / 60:.1f} min of wall time, {compute['cpu_hours']:.2f} CPU-hours{gpu} reserved through Ray "
        f"({compute['resources_per_trial']['CPU']:g} CPU, {compute['resources_per_trial']['GPU']:g} GPU per trial x its running time). "
        f"Per variant: {per_variant}."
    )


def annotation(needed: list[dict], variants: list[str], compute: dict | None, level: float = 0.95) -> str:
    """The PNG's corner note: labels per class each variant needs for `level` x the best accuracy, and the cost."""
    at_level = [n for n in needed if n["level"] == level]
    if not at_level:
        return ""
    lines = [f"labels/class for {100 * level:.0f}% of best ({100 * at_level[0]['target_acc']:.1f}%):"]
    for v in variants:
        n = next((n for n in at_level if n["variant"] == v), None)
        if n is not None:
            lines.append(f"  {v}: {n['labels']:.1f}" if n["labels"] is not None else f"  {v}: not reached")
    if compute:
        lines.append(
            f"{compute['wall_s'] / 60:.0f} min wall, {compute['cpu_hours']:.2f} CPU-h"
            + (f", {compute['gpu_hours']:.2f} GPU-h" if compute["gpu_hours"] else "")
        )
    return "\n".join(lines)


def plot_figure(rows: list[dict], variants: list[str], title: str, note: str = "") -> plt.Figure:
    """Accuracy vs labels per class (log axis, ticks at the budgets run), one errorbar line per variant."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    for v in variants:
        points = sorted((labels_per_class([r]), r["test_acc_mean"], r["test_acc_std"]) for r in rows if r["variant"] == v)
        if points:
            budgets, means, stds = zip(*points)
            ax.errorbar(budgets, [100 * m for m in means], yerr=[100 * s for s in stds], marker="o", capsize=3, label=v)
    ax.set_xscale("log")
    ticks = {labels_per_class([r]): budget_label(r) for r in rows}
    ax.set_xticks(sorted(ticks), labels=[ticks[t] for t in sorted(ticks)])  # the budgets, not 2x10^0, 3x10^0 ...
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("labels per class")
    ax.set_ylabel("test accuracy (%), mean ± std over label draws")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if note:
        ax.text(
            0.02,
            0.98,
            note,
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=7,
            family="monospace",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "edgecolor": "0.7"},
        )
    fig.tight_layout()
    return fig


def plot_png(rows: list[dict], variants: list[str], title: str, note: str = "") -> bytes:
    fig = plot_figure(rows, variants, title, note)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_report(
    sweep_dir: str,
    rows: list[dict],
    draws: list[dict],
    variants: list[str],
    storage_cfg: StorageConfig,
    title: str,
    compute: dict | None = None,
) -> str:
    """Write label_efficiency.{json,md,png} under sweep_dir; returns the markdown tables.

    compute: the sweep's wall time and reserved CPU/GPU-hours (rayssl.tune.sweep.compute_used).
    """
    needed = labels_needed(rows, variants, SUPERVISED)
    table = (
        markdown(rows, variants) + "\n\nHow many labels do I need? Labels per class at which each variant's mean first reaches "
        "a fraction of the sweep's best mean accuracy (interpolated on the log scale between budgets), and the labels per class "
        "saved against supervised only at that accuracy:\n\n"
        + labels_needed_markdown(needed, variants, max(labels_per_class([r]) for r in rows))
    )
    if compute is not None:
        table += "\n\n" + compute_markdown(compute)
    report = {"title": title, "variants": variants, "rows": rows, "labels_needed": needed, "compute": compute, "draws": draws}
    storage.write_bytes(storage.join(sweep_dir, "label_efficiency.json"), json.dumps(report, indent=2).encode(), storage_cfg)
    storage.write_bytes(storage.join(sweep_dir, "label_efficiency.md"), (f"{title}\n\n{table}\n").encode(), storage_cfg)
    storage.write_bytes(
        storage.join(sweep_dir, "label_efficiency.png"), plot_png(rows, variants, title, annotation(needed, variants, compute)), storage_cfg
    )
    return table
