"""The headline benchmark: MNIST with 5 labels per class, each variant over 3 label draws, through
the platform (`run_finetune` on a local Ray, Ray Data stream, Ray Train worker), scored once on
the test split. Writes bench/results/mnist_5labels.{json,md}.

    .venv/bin/python bench/mnist_5labels.py            # needs data/shards/mnist (see configs/semisup_mnist.yaml)

Reference: Balestriero et al., arXiv 1711.04313: 99.14% with 50 labels (inversion loss, trained to convergence).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rayssl.config import FinetuneConfig, load_config
from rayssl.eval.classifier import score_on_test_split
from rayssl.train.launch import run_finetune

CONFIG = "configs/semisup_mnist.yaml"
REFERENCE = "99.14% (Balestriero et al., arXiv 1711.04313, inversion loss, 50 labels)"
# variant -> (overrides of CONFIG, target from issue 8)
# FixMatch and the inversion loss want a light view (crop 1.0, ±2 px, no rotation): with the config's
# crop 0.8, ±3 px, ±15° they lost 14 points (FixMatch, platform, draw 0: 80.9% vs 94.7%) and 3 (inversion, plain loop).
LIGHT_AUGMENT = ["data.augment.crop_scale_min=1.0", "data.augment.rotate_deg=0", "data.augment.translate_px=2"]
VARIANTS = {
    "supervised only": (["semisup.alpha=0", "schedule.steps=1500"], 0.85),
    "+ inversion loss": (["semisup.alpha=0.01", "semisup.beta=0.3", "data.batch_size=64", "schedule.steps=4000", *LIGHT_AUGMENT], 0.97),
    # every round's checkpoint is kept: the best variant's accuracy against wall time is read from them
    "+ FixMatch": (["semisup.consistency=1.0", "schedule.steps=6000", "train.num_to_keep=30", *LIGHT_AUGMENT], 0.985),
}
RUNS_LOG = "bench/out/mnist_5labels_runs.jsonl"
TIME_MARKS_MIN = (5, 10, 20)  # issue 8: accuracy of the best variant against wall time  # one line per finished run: an interrupted benchmark resumes


def accuracy_against_time(cfg: FinetuneConfig, run_dir: str, started: float) -> list[dict]:
    """Test accuracy of every checkpoint the run kept, against the seconds from the run's start to
    the checkpoint's write (its meta.json mtime): [{"seconds", "step", "test_acc"}]."""
    points = []
    for meta in sorted(Path(run_dir).glob("checkpoint_*/meta.json")):
        step = json.loads(meta.read_text())["global_step"]
        acc = score_on_test_split(cfg, str(meta.parent), run_dir)
        points.append({"seconds": round(meta.stat().st_mtime - started, 1), "step": step, "test_acc": acc})
    return sorted(points, key=lambda p: p["step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--out", default="bench/results/mnist_5labels")
    parser.add_argument("--logged-only", action="store_true", help=f"tabulate the runs already in {RUNS_LOG}, run nothing")
    args = parser.parse_args()
    results = []
    for variant in args.variants:
        overrides, target = VARIANTS[variant]
        done = {}
        if Path(RUNS_LOG).exists():
            done = {(r["variant"], r["label_seed"]): r for r in map(json.loads, Path(RUNS_LOG).read_text().splitlines())}
        runs = []
        for seed in args.seeds:
            if (variant, seed) in done:
                runs.append({k: v for k, v in done[variant, seed].items() if k != "variant"})
                continue
            if args.logged_only:
                continue
            name = f"bench_mnist5_{variant.strip('+ ').replace(' ', '_')}_{seed}"
            cfg = load_config(FinetuneConfig, CONFIG, [*overrides, f"semisup.label_seed={seed}", f"run.name={name}", "run.storage_path=bench/out/runs"])
            started, started_epoch = time.perf_counter(), time.time()
            outcome = run_finetune(cfg)
            wall = time.perf_counter() - started
            test = score_on_test_split(cfg, outcome.checkpoint, outcome.run_dir)
            runs.append({"label_seed": seed, "val_acc": outcome.metrics["val_acc"], "test_acc": test, "wall_s": round(wall, 1),
                         "curve": accuracy_against_time(cfg, outcome.run_dir, started_epoch)})
            print(json.dumps({"variant": variant, **runs[-1]}), flush=True)
            with open(RUNS_LOG, "a") as log:
                log.write(json.dumps({"variant": variant, **runs[-1]}) + "\n")
        if not runs:
            continue
        test = np.array([r["test_acc"] for r in runs])
        results.append({
            "budget": 5, "variant": variant, "test_acc_mean": float(test.mean()),
            "test_acc_std": float(test.std(ddof=1)) if len(test) > 1 else 0.0, "draws": len(runs),
            "target": target, "config": CONFIG, "overrides": overrides, "runs": runs,
        })
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps({"reference": REFERENCE, "rows": results}, indent=2))
    lines = [f"MNIST, 5 labels per class, test accuracy mean ± std over label draws (2-core CPU). Reference: {REFERENCE}.", "",
             "| variant | test accuracy | draws | target | met | wall time per run |", "|---|---:|---:|---:|:-:|---:|"]
    for r in results:
        wall = np.mean([x["wall_s"] for x in r["runs"]])
        lines.append(f"| {r['variant']} | {100 * r['test_acc_mean']:.2f} ± {100 * r['test_acc_std']:.2f}% | {r['draws']} | "
                     f"≥ {100 * r['target']:.1f}% | {'yes' if r['test_acc_mean'] >= r['target'] else 'no'} | {wall / 60:.1f} min |")
    best = max(results, key=lambda r: r["test_acc_mean"])
    curves = [r["curve"] for r in best["runs"] if r.get("curve")]
    if curves:
        lines += ["", f"Best variant ({best['variant']}): test accuracy of the latest checkpoint written by each mark of wall time since "
                  "the run started (Ray start-up included), mean ± std over label draws; every checkpoint is in the JSON:", "",
                  "| minutes | steps reached | test accuracy |", "|---:|---:|---:|"]
        for minutes in TIME_MARKS_MIN:
            reached = [max((p for p in c if p["seconds"] <= 60 * minutes), key=lambda p: p["step"], default=None) for c in curves]
            if any(p is None for p in reached):
                continue
            acc, steps = np.array([p["test_acc"] for p in reached]), sorted({p["step"] for p in reached})
            ended = " (runs had ended)" if all(p is c[-1] for p, c in zip(reached, curves)) and max(c[-1]["seconds"] for c in curves) < 60 * minutes else ""
            lines.append(f"| {minutes} | {steps[0]}–{steps[-1]}{ended} | {100 * acc.mean():.2f} ± {100 * acc.std(ddof=1) if len(acc) > 1 else 0:.2f}% |")
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
