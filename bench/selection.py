"""Which images to label (issue 32): random, class-balanced (oracle), k-center, TypiClust and ProbCover
picks of 10, 20 (and 50) labels in total on MNIST and CIFAR-10, trained by supervised only and
+ FixMatch, 3 seeds each -> bench/results/selection.{json,md,png}.

One sweep per (dataset, strategy): the dataset's config (configs/sweep_selection_<dataset>.yaml)
with `selection` set; each (budget, seed) picks budget x 10 images on the SimCLR run's embeddings
(random draws its seed's picks without them; balanced is today's per-class draw, which reads the labels).
Model selection on validation only; test accuracy mean ± std over the 3 seeds.

    .venv/bin/python bench/selection.py                       # every dataset and strategy (resumes finished sweeps)
    .venv/bin/python bench/selection.py --datasets mnist      # one dataset
    .venv/bin/python bench/selection.py --report-only         # tables from the finished sweeps
A sweep whose directory is not here keeps its rows from the last bench/results/selection.json.

Before it: the shards and the SimCLR runs the configs name (`rayssl pretrain --config configs/simclr_mnist_small_cnn.yaml`,
`... configs/simclr_cifar10_small_cnn.yaml`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rayssl.config import SweepConfig, load_config  # noqa: E402
from rayssl.markdown import table  # noqa: E402

STRATEGIES = ("random", "balanced", "kcenter", "typiclust", "probcover")
LEARNERS = {"supervised only": "supervised", "+ FixMatch": "semi-supervised"}
CONFIGS = {"mnist": "configs/sweep_selection_mnist.yaml", "cifar10": "configs/sweep_selection_cifar10.yaml"}
REFERENCE = (
    "CIFAR-10, 10 labels in total, FlexMatch on a WRN-28-2 trained on GPUs: TypiClust 93.2%, ProbCover 94.1%, random 53.8% "
    "(Hacohen et al., arXiv 2202.02794; Yehuda et al., arXiv 2205.11320). No published MNIST figure for these selections that we know of."
)


def sweep_config(dataset: str, strategy: str) -> SweepConfig:
    cfg = load_config(SweepConfig, CONFIGS[dataset], [])
    return dataclasses.replace(cfg, name=f"{cfg.name}_{strategy}", selection=strategy)  # type: ignore[arg-type]


def rows_of(dataset: str, strategy: str, report: dict, classes: int) -> list[dict]:
    """selection.json rows of one sweep: one per (budget, learner)."""
    out = []
    for row in report["rows"]:
        if row["variant"] not in LEARNERS:
            continue
        draws = [d for d in report["draws"] if d["budget"] == row["budget"] and d["variant"] == row["variant"]]
        out.append(
            {
                "dataset": dataset,
                "budget": int(row["budget"]) * classes,
                "learner": LEARNERS[row["variant"]],
                "strategy": strategy,
                "test_acc_mean": row["test_acc_mean"],
                "test_acc_std": row["test_acc_std"],
                "seeds": row["draws"],
                "classes_covered": sum(d["classes_covered"] for d in draws) / len(draws),
                "per_seed": [{"seed": d["label_seed"], "test_acc": d["test_acc"], "classes_covered": d["classes_covered"]} for d in draws],
            }
        )
    return out


def check_targets(rows: list[dict]) -> list[dict]:
    """At 10 and 20 labels with the semi-supervised learner, per dataset: the better of TypiClust and
    ProbCover beats random by more than random's std, and is within balanced's std of balanced or above."""
    cell = {(r["dataset"], r["budget"], r["learner"], r["strategy"]): r for r in rows}
    checks = []
    for dataset in sorted({r["dataset"] for r in rows}):
        for budget in (10, 20):
            by_strategy = {s: cell.get((dataset, budget, "semi-supervised", s)) for s in STRATEGIES}
            picks = [r for r in (by_strategy["typiclust"], by_strategy["probcover"]) if r]
            rnd, bal = by_strategy["random"], by_strategy["balanced"]
            if not picks or rnd is None or bal is None:
                checks.append({"target": f"{dataset}, {budget} labels", "met": None, "detail": "not measured"})
                continue
            best = max(picks, key=lambda r: r["test_acc_mean"])
            beats = best["test_acc_mean"] - rnd["test_acc_mean"] > rnd["test_acc_std"]
            matches = best["test_acc_mean"] >= bal["test_acc_mean"] - bal["test_acc_std"]
            checks.append(
                {
                    "target": f"{dataset}, {budget} labels, semi-supervised: {best['strategy']} > random + std and >= balanced - std",
                    "met": beats and matches,
                    "detail": f"{best['strategy']} {100 * best['test_acc_mean']:.2f}% vs random {100 * rnd['test_acc_mean']:.2f} ± "
                    f"{100 * rnd['test_acc_std']:.2f}%, balanced {100 * bal['test_acc_mean']:.2f} ± {100 * bal['test_acc_std']:.2f}%",
                }
            )
    return checks


def markdown(rows: list[dict], checks: list[dict]) -> str:
    blocks = [
        "# Which images to label: selection strategies at 10, 20 and 50 labels in total",
        "Test accuracy of the trial selected on validation, mean ± std over 3 seeds (selection seeds for random, "
        "label-draw and k-means seeds elsewhere); classes: how many of the 10 classes the picks hold, mean over seeds. "
        "balanced is the per-class draw, which reads the labels: an oracle no user can run. Configs: "
        + ", ".join(f"`{c}`" for c in CONFIGS.values())
        + "; embeddings from the SimCLR runs they name; 2-core CPU.",
    ]
    for dataset in sorted({r["dataset"] for r in rows}):
        for learner in ("supervised", "semi-supervised"):
            sub = [r for r in rows if r["dataset"] == dataset and r["learner"] == learner]
            budgets = sorted({r["budget"] for r in sub})
            cells = {(r["budget"], r["strategy"]): r for r in sub}
            body = [[s] + [_cell(cells.get((b, s))) for b in budgets] for s in STRATEGIES if any((b, s) in cells for b in budgets)]
            header = ["strategy"] + [f"{b} labels" for b in budgets]
            blocks += [f"## {dataset}, {learner}", "\n".join(table(header, "l" + "r" * len(budgets), body))]
    blocks += ["## Reference", REFERENCE, "## Targets"]
    blocks.append("\n".join(table(["target", "met", "measured"], "lll", [[c["target"], _met(c["met"]), c["detail"]] for c in checks])))
    return "\n\n".join(blocks) + "\n"


def _cell(row: dict | None) -> str:
    if row is None:
        return "–"
    return f"{100 * row['test_acc_mean']:.2f} ± {100 * row['test_acc_std']:.2f}% ({row['classes_covered']:.1f} classes)"


def _met(met: bool | None) -> str:
    return "not measured" if met is None else ("yes" if met else "no")


def plot(rows: list[dict], path: Path) -> None:
    panels = sorted({(r["dataset"], r["learner"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), dpi=110, squeeze=False)
    for ax, (dataset, learner) in zip(axes[0], panels):
        for strategy in STRATEGIES:
            pts = sorted(
                (r["budget"], r["test_acc_mean"], r["test_acc_std"])
                for r in rows
                if (r["dataset"], r["learner"], r["strategy"]) == (dataset, learner, strategy)
            )
            if pts:
                b, m, s = zip(*pts)
                ax.errorbar(
                    b,
                    [100 * v for v in m],
                    yerr=[100 * v for v in s],
                    marker="o",
                    capsize=3,
                    label=strategy,
                    ls="--" if strategy == "balanced" else "-",
                )
        ax.set_xscale("log")
        ticks = sorted({r["budget"] for r in rows if r["dataset"] == dataset})
        ax.set_xticks(ticks, labels=[str(t) for t in ticks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_title(f"{dataset}, {learner}", fontsize=9)
        ax.set_xlabel("labels in total")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--out", default="bench/results/selection")
    args = parser.parse_args()
    # Rows of sweeps that are not on this machine (run elsewhere, runs/ cleaned) are kept from the last report.
    previous = json.loads(Path(f"{args.out}.json").read_text())["rows"] if Path(f"{args.out}.json").exists() else []
    rows = []
    for dataset in CONFIGS:
        for strategy in STRATEGIES:
            cfg = sweep_config(dataset, strategy)
            result = Path(cfg.storage_path) / cfg.name / "label_efficiency.json"
            if not args.report_only and dataset in args.datasets and strategy in args.strategies and not result.exists():
                from rayssl.tune.sweep import run_sweep

                run_sweep(cfg)
            if result.exists():
                rows += rows_of(dataset, strategy, json.loads(result.read_text()), cfg.finetune.semisup.num_classes)
            else:
                rows += [r for r in previous if (r["dataset"], r["strategy"]) == (dataset, strategy)]
    checks = check_targets(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps({"rows": rows, "targets": checks, "reference": REFERENCE}, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(rows, checks))
    plot(rows, Path(f"{args.out}.png"))
    print(Path(f"{args.out}.md").read_text())


if __name__ == "__main__":
    main()
