"""The full label-efficiency curve on MNIST (issue 8, target 2): runs (or resumes) the committed
sweep config, then checks the curve against its targets and writes
bench/results/label_efficiency_mnist.{json,md,png} with the published reference per budget.

    .venv/bin/python bench/label_efficiency.py                     # run or resume, then report
    .venv/bin/python bench/label_efficiency.py --report-only       # report a finished sweep
    .venv/bin/python bench/label_efficiency.py --variants "+ FixMatch"   # re-measure one row, merge it

With --variants, only those rows run, in a sweep of their own (`<name>_rows_<slug>`, the same
config otherwise), and their rows replace the same rows of the committed results; the JSON says
which sweep measured each row (`measured_in`) and keeps every sweep's compute. For a change that
touches only those rows (e.g. FixMatch's strong view), or a row an earlier sweep did not reach.

Before it: the MNIST shards and the two pretraining runs the config names
(`rayssl pretrain --config configs/nat_mnist_small_cnn.yaml`, `... configs/mae_mnist.yaml --set train.epochs=3`).
Targets: every variant's mean non-decreasing in labels per class within 0.5 points; at every
budget the best variant's mean above supervised only's mean + std; supervised only >= 97% at 100
labels per class.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
from pathlib import Path

from rayssl.config import SweepConfig, load_config
from rayssl.tune.report import SUPERVISED, plot_png
from rayssl.tune.report import markdown as table

# Published MNIST test accuracy for the same number of labels (10 x labels per class), with its source.
REFERENCES = {
    1: "none published for 10 labels that we know of",
    5: "99.14% (inversion loss; Balestriero et al., arXiv 1711.04313)",
    10: "98.94 ± 0.37% (Ladder network, 100 labels; Rasmus et al., arXiv 1507.02672, Table 1); 96.67% (M1+M2; Kingma et al., arXiv 1406.5298)",
    50: "none for 500 labels; nearest 97.41% with 600 (M1+M2; Kingma et al., arXiv 1406.5298, Table 1)",
    100: "99.16 ± 0.08% (Ladder network, 1,000 labels; Rasmus et al., arXiv 1507.02672, Table 1); 97.60% (M1+M2; Kingma et al.)",
}
MONOTONE_SLACK = 0.005
SUPERVISED_AT_100 = 0.97


def check_targets(rows: list[dict], variants: list[str]) -> list[dict]:
    """One entry per target: {"target", "met", "detail"} from the sweep's (budget, variant) rows."""
    cell = {(r["budget"], r["variant"]): r for r in rows}
    budgets = sorted({r["budget"] for r in rows})
    checks = []
    for v in variants:
        means = [cell[b, v]["test_acc_mean"] for b in budgets if (b, v) in cell]
        drops = [
            (budgets[i], budgets[i + 1], means[i] - means[i + 1]) for i in range(len(means) - 1) if means[i + 1] < means[i] - MONOTONE_SLACK
        ]
        missing = [b for b in budgets if (b, v) not in cell]
        detail = "; ".join(f"{a} -> {b}: -{100 * d:.2f} points" for a, b, d in drops) or "no drop over 0.5 points"
        checks.append(
            {
                "target": f"{v}: mean non-decreasing in labels per class (within 0.5 points)",
                "met": not drops and not missing,
                "detail": detail + (f"; no finished trial at {missing}" if missing else ""),
            }
        )
    for b in budgets:
        sup = cell.get((b, SUPERVISED))
        others = [cell[b, v] for v in variants if v != SUPERVISED and (b, v) in cell]
        if sup is None or not others:
            continue
        best = max(others, key=lambda r: r["test_acc_mean"])
        margin = best["test_acc_mean"] - sup["test_acc_mean"]
        checks.append(
            {
                "target": f"{b} labels/class: best variant beats supervised only by more than its std",
                "met": margin > sup["test_acc_std"],
                "detail": f"{best['variant']} {100 * best['test_acc_mean']:.2f}% vs {100 * sup['test_acc_mean']:.2f} ± {100 * sup['test_acc_std']:.2f}% "
                f"(margin {100 * margin:+.2f} points)",
            }
        )
    if (100, SUPERVISED) in cell:
        acc = cell[100, SUPERVISED]["test_acc_mean"]
        checks.append(
            {"target": "supervised only >= 97% at 100 labels/class", "met": acc >= SUPERVISED_AT_100, "detail": f"{100 * acc:.2f}%"}
        )
    return checks


def markdown(report: dict, checks: list[dict], config: str) -> str:
    """The sweep's budget x variant table, the published reference per budget, and the targets."""
    lines = [
        f"{report['title']}: MNIST test accuracy, mean ± std over label draws of the trial selected on validation, "
        f"2-core CPU, config `{config}`.",
        "",
        table(report["rows"], report["variants"]),
        "",
        "| labels / class | published reference (MNIST, the same number of labels) |",
        "|---:|---|",
    ]
    lines += [f"| {b} | {REFERENCES.get(b, '–')} |" for b in sorted({r["budget"] for r in report["rows"]})]
    lines += ["", "| target | met | measured |", "|---|:-:|---|"]
    lines += [f"| {c['target']} | {'yes' if c['met'] else '**no**'} | {c['detail']} |" for c in checks]
    for sweep, compute in report.get("compute_by_sweep", {"": report.get("compute")}).items():
        if compute:
            rows = [v for v, where in report.get("measured_in", {}).items() if where == sweep]
            what = f"Sweep `{sweep}` ({', '.join(rows)})" if sweep else "Sweep"
            lines += ["", f"{what}: wall time {compute['wall_s'] / 60:.1f} min, {compute['cpu_hours']:.2f} CPU-hours reserved through Ray."]
    return "\n".join(lines) + "\n"


def merge_rows(committed: dict, rerun: dict, sweep: str, base_sweep: str) -> dict:
    """The committed report with the re-measured variants' rows (and draws) replaced by the rerun's.

    committed: the JSON of an earlier run of this bench, whose rows without a `measured_in` entry
    came from the full sweep `base_sweep`; rerun: label_efficiency.json of the sweep `sweep` that
    ran only some variants. Returns the merged report with `measured_in` (variant -> sweep name)
    and `compute_by_sweep` (sweep name -> its compute)."""
    fresh = set(rerun["variants"])
    measured_in = {v: committed.get("measured_in", {}).get(v, base_sweep) for v in committed["variants"]} | {v: sweep for v in fresh}
    compute_by_sweep = committed.get("compute_by_sweep", {base_sweep: committed.get("compute")}) | {sweep: rerun.get("compute")}
    variants = committed["variants"] + [v for v in rerun["variants"] if v not in committed["variants"]]
    return {
        **committed,
        "variants": variants,
        "rows": sorted(
            [r for r in committed["rows"] if r["variant"] not in fresh] + rerun["rows"],
            key=lambda r: (r["budget"], variants.index(r["variant"])),
        ),
        "draws": [d for d in committed.get("draws", []) if d["variant"] not in fresh] + rerun.get("draws", []),
        "labels_needed": None,  # of the sweep that wrote it: stale once rows are replaced
        "measured_in": {v: measured_in[v] for v in variants},
        "compute_by_sweep": {k: v for k, v in compute_by_sweep.items() if k in measured_in.values()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/sweep_mnist.yaml")
    parser.add_argument("--report-only", action="store_true", help="read the finished sweep's label_efficiency.json, run nothing")
    parser.add_argument("--out", default="bench/results/label_efficiency_mnist")
    parser.add_argument("--variants", nargs="+", help="re-measure only these rows and merge them into --out's committed rows")
    args = parser.parse_args()
    cfg = load_config(SweepConfig, args.config, [])
    full_sweep = cfg.name
    if args.variants:
        slug = re.sub(r"[^a-z0-9]+", "_", "_".join(args.variants).lower()).strip("_")
        cfg = dataclasses.replace(cfg, variants=args.variants, name=f"{cfg.name}_rows_{slug}")
    sweep_dir = Path(cfg.storage_path) / cfg.name
    if not args.report_only:
        from rayssl.tune.sweep import run_sweep

        run_sweep(cfg)
    report = json.loads((sweep_dir / "label_efficiency.json").read_text())
    if args.variants:
        report = merge_rows(json.loads(Path(f"{args.out}.json").read_text()), report, cfg.name, full_sweep)
    checks = check_targets(report["rows"], report["variants"])
    report |= {"config": args.config, "references": {str(b): text for b, text in REFERENCES.items()}, "targets": checks}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(report, checks, args.config))
    if args.variants:
        Path(f"{args.out}.png").write_bytes(plot_png(report["rows"], report["variants"], report["title"]))
    else:
        shutil.copyfile(sweep_dir / "label_efficiency.png", f"{args.out}.png")
    print(Path(f"{args.out}.md").read_text())


if __name__ == "__main__":
    main()
