"""Extrapolation backtest (issue 32): fit each learning curve on its small budgets only, predict the
large ones, and compare with what was measured -> bench/results/labels_needed.{json,md}.

- MNIST: the committed curve (bench/results/label_efficiency_mnist.json, 5 variants x 3 label
  draws), fitted on 1, 5 and 10 labels per class, predicting 50 and 100.
- CIFAR-10: supervised only at 1, 4, 25 and 100 labels per class (configs/sweep_curve_cifar10.yaml,
  run here unless finished), fitted on 1, 4 and 25, predicting 100.

The fit, its choice of form and its 80% interval are rayssl.tune.curve_fit's, as in every sweep report.

    .venv/bin/python bench/labels_needed.py                  # both datasets (runs the CIFAR-10 sweep if needed)
    .venv/bin/python bench/labels_needed.py --datasets mnist # the committed MNIST curve only
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rayssl.config import SweepConfig, load_config
from rayssl.markdown import table
from rayssl.tune.curve_fit import extrapolate

MNIST_CURVE = Path("bench/results/label_efficiency_mnist.json")
CIFAR_CONFIG = "configs/sweep_curve_cifar10.yaml"
SPLITS = {"mnist": ((1, 5, 10), (50, 100)), "cifar10": ((1, 4, 25), (100,))}


def curve_draws(report: dict) -> dict[str, dict[float, list[float]]]:
    """variant -> labels per class -> test accuracies of its label draws, from a label_efficiency.json."""
    out: dict[str, dict[float, list[float]]] = {}
    for d in report["draws"]:
        out.setdefault(d["variant"], {}).setdefault(float(d.get("labels_per_class", d["budget"])), []).append(d["test_acc"])
    return out


def backtest(dataset: str, report: dict) -> list[dict]:
    """One row per (variant, held-out budget): the prediction from the small budgets and the measured mean."""
    fit_on, held_out = SPLITS[dataset]
    rows = []
    for variant, draws in curve_draws(report).items():
        small = {n: draws[n] for n in fit_on if n in draws}
        if len(small) < 3:
            continue
        fit = extrapolate(small, predict_at=held_out)
        for p in fit.predictions:
            measured = float(np.mean(draws[p["labels"]])) if p["labels"] in draws else None
            inside = measured is not None and p["low"] <= measured <= p["high"]
            rows.append(
                {
                    "dataset": dataset,
                    "variant": variant,
                    "budget": int(p["labels"]),
                    "fit_on": list(fit_on),
                    "form": fit.form,
                    "predicted_median": p["median"],
                    "interval_low": p["low"],
                    "interval_high": p["high"],
                    "measured": measured,
                    "inside": inside,
                    "miss": 0.0 if inside or measured is None else min(abs(measured - p["low"]), abs(measured - p["high"])),
                }
            )
    return rows


def markdown(rows: list[dict]) -> str:
    body = [
        [
            r["dataset"],
            r["variant"],
            f"{', '.join(map(str, r['fit_on']))} → {r['budget']}",
            r["form"].replace("_", " "),
            f"{100 * r['predicted_median']:.2f}%",
            f"{100 * r['interval_low']:.2f}–{100 * r['interval_high']:.2f}%",
            "–" if r["measured"] is None else f"{100 * r['measured']:.2f}%",
            "yes" if r["inside"] else f"no (by {100 * r['miss']:.2f} points)",
        ]
        for r in rows
    ]
    header = ["dataset", "variant", "fit on → predict (labels/class)", "form", "predicted median", "80% interval", "measured", "inside"]
    mnist = [r for r in rows if r["dataset"] == "mnist"]
    met = all(r["inside"] for r in mnist if r["variant"] == "supervised only")
    return (
        "\n\n".join(
            [
                "# Extrapolation backtest: how many labels, predicted from small budgets",
                "Each learning curve fitted on its small budgets only (rayssl.tune.curve_fit: four forms, chosen by "
                "leave-one-budget-out, bootstrap over label draws, widened past the data by the form's own forward error), "
                "then compared at the held-out budgets with the measured mean over 3 label draws. MNIST: the committed curve "
                "(`bench/results/label_efficiency_mnist.json`); CIFAR-10: `configs/sweep_curve_cifar10.yaml`.",
                "\n".join(table(header, "llllrrrl", body)),
                f"Target: the interval holds the measured value at both held-out MNIST budgets (supervised only): "
                f"{'met' if met else 'missed'}; {sum(r['inside'] for r in rows)} of {len(rows)} intervals hold it over every variant.",
                "Reference: Mahmood et al. (arXiv 2207.01725) report that a one-shot power-law fit under-estimates the data "
                "needed by up to 2.6× on CIFAR-10.",
            ]
        )
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--out", default="bench/results/labels_needed")
    args = parser.parse_args()
    rows = backtest("mnist", json.loads(MNIST_CURVE.read_text())) if "mnist" in args.datasets else []
    if "cifar10" in args.datasets:
        cfg = load_config(SweepConfig, CIFAR_CONFIG, [])
        result = Path(cfg.storage_path) / cfg.name / "label_efficiency.json"
        if not result.exists():
            from rayssl.tune.sweep import run_sweep

            run_sweep(cfg)
        rows += backtest("cifar10", json.loads(result.read_text()))
    Path(f"{args.out}.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(rows))
    print(Path(f"{args.out}.md").read_text())


if __name__ == "__main__":
    main()
