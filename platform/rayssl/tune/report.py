"""Label-efficiency results: JSON, a markdown table and a plot (accuracy vs labels per class,
mean +- std over label draws)."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from typing import Any

import matplotlib
import matplotlib.ticker
import numpy as np

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from rayssl.config import ConfigError, StorageConfig  # noqa: E402
from rayssl.data import storage  # noqa: E402
from rayssl.methods.supervised import SUPERVISED  # noqa: E402  (the baseline row of every sweep)
from rayssl.tune.curve_fit import Extrapolation  # noqa: E402
from rayssl.tune.labels_needed import MIN_FIT_BUDGETS, fit_curves, labels_needed, labels_needed_markdown, targets_of  # noqa: E402


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


def best_by_validation(rows: list[dict], variants: list[str]) -> list[dict]:
    """Per budget, the variant whose selected trials have the best mean validation accuracy (the first
    in `variants`, the table's order, on ties: supervised only before a method that merely equals it):
    {budget, variant, val_acc_mean, test_acc_mean, test_acc_std}. The test split never chooses it, so
    its test accuracy is an honest estimate of what picking it gives."""
    best: dict[int | str, dict] = {}
    order = {v: i for i, v in enumerate(variants)}  # a row outside the table (none expected) goes last
    for r in sorted(rows, key=lambda r: order.get(r["variant"], len(order))):  # stable: budgets keep their order
        if r["budget"] not in best or r["val_acc_mean"] > best[r["budget"]]["val_acc_mean"]:
            best[r["budget"]] = r
    keys = ("budget", "variant", "val_acc_mean", "test_acc_mean", "test_acc_std")
    return [{k: r[k] for k in keys} for r in best.values()]


def best_markdown(rows: list[dict], variants: list[str]) -> str:
    """'Best variant by validation: 5 labels/class: + FixMatch (validation 97.0%; test 98.79 ± 0.18%)', one budget per line."""
    lines = ["Best variant by validation (the test split never chooses it):", ""]
    for b in best_by_validation(rows, variants):
        row = next(r for r in rows if r["budget"] == b["budget"] and r["variant"] == b["variant"])
        lines.append(
            f"- {budget_label(row)} labels/class: {b['variant']} (validation {100 * b['val_acc_mean']:.1f}%; "
            f"test {100 * b['test_acc_mean']:.2f} ± {100 * b['test_acc_std']:.2f}%)"
        )
    return "\n".join(lines)


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


def how_many_markdown(rows: list[dict], variants: list[str], needed: list[dict]) -> str:
    """The "how many labels do I need?" paragraph and table (rayssl.tune.labels_needed)."""
    return (
        "How many labels do I need? Labels per class at which each variant reaches the target: the median and 80% interval "
        "of its learning curve fitted to the label draws (power law, arctan, logarithmic or algebraic root, chosen by "
        "leave-one-budget-out error; Mahmood et al., arXiv 2207.01725), marked extrapolated past the largest budget; "
        f"interpolated between budgets where fewer than {MIN_FIT_BUDGETS} were run. Saved: against supervised only.\n\n"
        + labels_needed_markdown(needed, variants, max(labels_per_class([r]) for r in rows), SUPERVISED)
    )


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


def annotation(needed: list[dict], variants: list[str], compute: dict | None) -> str:
    """The PNG's corner note: labels per class each variant needs for the middle target, and the cost."""
    targets = list(dict.fromkeys(n["target_acc"] for n in needed))
    if not targets:
        return ""
    target = targets[len(targets) // 2]
    first = next(n for n in needed if n["target_acc"] == target)
    name = f"{100 * first['level']:.0f}% of best ({100 * target:.1f}%)" if first["level"] is not None else f"{100 * target:.1f}%"
    lines = [f"labels/class for {name}:"]
    for n in (n for n in needed if n["target_acc"] == target and n["variant"] in variants):
        text = "not reached" if n["labels"] is None else f"{n['labels']:.1f}" + (" (extrapolated)" if n["extrapolated"] else "")
        lines.append(f"  {n['variant']}: {text}")
    if compute:
        lines.append(
            f"{compute['wall_s'] / 60:.0f} min wall, {compute['cpu_hours']:.2f} CPU-h"
            + (f", {compute['gpu_hours']:.2f} GPU-h" if compute["gpu_hours"] else "")
        )
    return "\n".join(lines)


def plot_figure(
    rows: list[dict], variants: list[str], title: str, note: str = "", fits: dict[str, Extrapolation] | None = None
) -> plt.Figure:
    """Accuracy vs labels per class (log axis, ticks at the budgets run), one errorbar line per variant;
    a fitted variant's curve continues past its last budget, dashed, with its 80% band (fits)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    for v in variants:
        points = sorted((labels_per_class([r]), r["test_acc_mean"], r["test_acc_std"]) for r in rows if r["variant"] == v)
        if points:
            budgets, means, stds = zip(*points)
            line = ax.errorbar(budgets, [100 * m for m in means], yerr=[100 * s for s in stds], marker="o", capsize=3, label=v)
            if fits and v in fits:
                _plot_extrapolation(ax, fits[v], budgets[-1], line.lines[0].get_color())
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


def _plot_extrapolation(ax: plt.Axes, fit: Extrapolation, last_budget: float, color: Any) -> None:
    """The fitted median past the last budget, dashed, and its band, in the variant's colour."""
    labels = np.array(fit.band["labels"])
    beyond = labels >= last_budget
    pct = {k: 100 * np.array(fit.band[k])[beyond] for k in ("median", "low", "high")}
    ax.plot(labels[beyond], pct["median"], ls="--", color=color, lw=1)
    ax.fill_between(labels[beyond], pct["low"], pct["high"], color=color, alpha=0.12, lw=0)


def plot_png(rows: list[dict], variants: list[str], title: str, note: str = "", fits: dict[str, Extrapolation] | None = None) -> bytes:
    fig = plot_figure(rows, variants, title, note, fits)
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
    target_acc: float | None = None,
) -> str:
    """Write label_efficiency.{json,md,png} under sweep_dir; returns the markdown tables.

    compute: the sweep's wall time and reserved CPU/GPU-hours (rayssl.tune.sweep.compute_used).
    target_acc: the accuracy to find the labels for (None: 90, 95 and 98% of the best mean).
    """
    targets = targets_of(rows, target_acc)
    fits = fit_curves(rows, variants, targets)
    needed = labels_needed(rows, variants, SUPERVISED, targets, fits)
    table = markdown(rows, variants) + "\n\n" + best_markdown(rows, variants) + "\n\n" + how_many_markdown(rows, variants, needed)
    if compute is not None:
        table += "\n\n" + compute_markdown(compute)
    curves = {v: {"form": f.form, "budgets": f.budgets, "lobo_errors": f.lobo_errors, "band": f.band} for v, f in fits.items()}
    report = {
        "title": title,
        "variants": variants,
        "rows": rows,
        "best_by_validation": best_by_validation(rows, variants),
        "labels_needed": needed,
        "curves": curves,
        "compute": compute,
        "draws": draws,
    }
    storage.write_bytes(storage.join(sweep_dir, "label_efficiency.json"), json.dumps(report, indent=2).encode(), storage_cfg)
    storage.write_bytes(storage.join(sweep_dir, "label_efficiency.md"), (f"{title}\n\n{table}\n").encode(), storage_cfg)
    storage.write_bytes(
        storage.join(sweep_dir, "label_efficiency.png"),
        plot_png(rows, variants, title, annotation(needed, variants, compute), fits),
        storage_cfg,
    )
    return table


def show_sweep(sweep_dir: str, storage_cfg: StorageConfig, target_acc: float | None = None) -> str:
    """`rayssl runs show SWEEP`: the finished sweep's table and its "how many labels" answers, refitted
    for target_acc (None: 90, 95 and 98% of the best mean) from label_efficiency.json; writes nothing."""
    if target_acc is not None and not 0 < target_acc <= 1:
        raise ConfigError(f"--target-acc must be an accuracy in (0, 1], got {target_acc}")
    report = json.loads(storage.read_bytes(storage.join(sweep_dir, "label_efficiency.json"), storage_cfg))
    rows, variants = report["rows"], report["variants"]
    targets = targets_of(rows, target_acc)
    needed = labels_needed(rows, variants, SUPERVISED, targets, fit_curves(rows, variants, targets))
    return (
        f"{report['title']}\n\n{markdown(rows, variants)}\n\n{best_markdown(rows, variants)}\n\n{how_many_markdown(rows, variants, needed)}"
    )
