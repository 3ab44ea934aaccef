"""How many labels a variant needs to reach an accuracy: the sweep's learning curves fitted and
extrapolated with an interval (rayssl.tune.curve_fit), or, with fewer than three budgets to fit,
interpolated between the budgets run (pure numpy, no Ray).

A target is an accuracy: `target_acc` when the user names one, else 90, 95 and 98% of the sweep's
best mean. Each answer is labels per class as a median and an 80% interval over bootstrap replicates
of the label draws, marked "extrapolated" when the median lies beyond the largest budget measured,
with the form the fit chose and the number of budgets it rests on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rayssl.tune.curve_fit import Extrapolation, extrapolate

LEVELS = (0.90, 0.95, 0.98)  # targets as fractions of the sweep's best mean accuracy
MIN_FIT_BUDGETS = 3  # a curve fit with its leave-one-budget-out choice of form needs three budgets
BAND_REACH = 4.0  # the plotted band runs to this multiple of the largest budget


def variant_draws(rows: list[dict], variant: str) -> dict[float, list[float]]:
    """labels per class -> test accuracies of the selected trial of each label draw, for one variant.
    rows: summarised rows (rayssl.tune.report.summarise), with their "selected" draws."""
    out: dict[float, list[float]] = {}
    for r in rows:
        if r["variant"] == variant:
            out.setdefault(float(r.get("labels_per_class", r["budget"])), []).extend(d["test_acc"] for d in r["selected"])
    return out


def targets_of(rows: list[dict], target_acc: float | None = None, levels: Sequence[float] = LEVELS) -> list[tuple[float | None, float]]:
    """[(level, accuracy)]: the named target (level None), else each level x the best mean accuracy."""
    if target_acc is not None:
        return [(None, float(target_acc))]
    best = max(r["test_acc_mean"] for r in rows)
    return [(level, level * best) for level in levels]


def fit_curves(rows: list[dict], variants: list[str], targets: list[tuple[float | None, float]], seed: int = 0) -> dict[str, Extrapolation]:
    """Per variant with at least MIN_FIT_BUDGETS budgets: its fitted curve, the labels for each target
    and a band to BAND_REACH x the largest budget. Variants with fewer are left out (interpolated)."""
    fits = {}
    for v in variants:
        draws = variant_draws(rows, v)
        if len(draws) >= MIN_FIT_BUDGETS:
            fits[v] = extrapolate(draws, targets=[t for _, t in targets], band_to=BAND_REACH * max(draws), seed=seed)
    return fits


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


def labels_needed(
    rows: list[dict], variants: list[str], baseline: str, targets: list[tuple[float | None, float]], fits: dict[str, Extrapolation]
) -> list[dict]:
    """Per variant and target: labels per class needed and saved against `baseline` (supervised only).

    Row: variant, level (None for a named target), target_acc, labels (median; None: not reached),
    low, high (the 80% interval; inf: not reached by the upper replicates), extrapolated, method
    ("fit: <form>" or "interpolated"), budgets (how many the answer rests on), baseline_labels, saved
    (baseline's median - this median; None when either is not reached).
    """
    out = []
    for i, (level, target) in enumerate(targets):
        answers = {v: _answer(rows, v, target, fits.get(v), i) for v in variants}
        reference = answers.get(baseline, {}).get("labels")
        for v, answer in answers.items():
            saved = reference - answer["labels"] if reference is not None and answer["labels"] is not None else None
            out.append({"variant": v, "level": level, "target_acc": target, **answer, "baseline_labels": reference, "saved": saved})
    return out


def _answer(rows: list[dict], variant: str, target: float, fit: Extrapolation | None, position: int) -> dict:
    """One variant's labels for one target: from its fit (target `position` of the fit's), else interpolated."""
    draws = variant_draws(rows, variant)
    if fit is not None:
        n = fit.needed[position]
        median = None if math.isinf(n["median"]) else n["median"]
        return {
            "labels": median,
            "low": n["low"],
            "high": n["high"],
            "extrapolated": n["extrapolated"],
            "method": f"fit: {fit.form}",
            "budgets": len(fit.budgets),
        }
    labels = labels_to_reach([(b, float(np.mean(a))) for b, a in draws.items()], target) if draws else None
    return {"labels": labels, "low": labels, "high": labels, "extrapolated": False, "method": "interpolated", "budgets": len(draws)}


def labels_needed_markdown(needed: list[dict], variants: list[str], max_budget: float, baseline: str) -> str:
    """variant x target table: 'median [low–high] (saves x against baseline)', 'extrapolated' past the
    largest budget, and how each variant's answer was reached."""
    targets = list(dict.fromkeys((n["level"], n["target_acc"]) for n in needed))
    cell = {(n["variant"], n["target_acc"]): n for n in needed}
    header = [f"{100 * lv:.0f}% of best ({100 * t:.1f}%)" if lv is not None else f"{100 * t:.1f}%" for lv, t in targets]
    lines = ["| labels per class to reach | " + " | ".join(header) + " | from |", "|---|" + "---:|" * len(targets) + "---|"]
    for v in variants:
        texts = [_cell_text(cell[v, t], max_budget, v != baseline) for _, t in targets]
        first = cell[v, targets[0][1]]
        lines.append(f"| {v} | " + " | ".join(texts) + f" | {first['method']}, {first['budgets']} budgets |")
    return "\n".join(lines)


def _cell_text(n: dict, max_budget: float, compare: bool) -> str:
    """'12.3 [8.1–20.5] extrapolated (saves 4.0)'; compare: say what it saves against the baseline."""
    if n["labels"] is None:
        return f"> {max_budget:g}" if n["method"] == "interpolated" else "not reached"
    text = f"{n['labels']:.1f}"
    if n["method"] != "interpolated":
        high = "∞" if math.isinf(n["high"]) else f"{n['high']:.1f}"
        text += f" [{n['low']:.1f}–{high}]" + (" extrapolated" if n["extrapolated"] else "")
    if compare and n["saved"] is not None:
        text += f" (saves {n['saved']:.1f})"
    elif compare and n["baseline_labels"] is None:
        text += " (supervised only: not reached)"
    return text
