"""Tune scheduling overhead: wall time of N fixed-length trials at concurrency 2 vs the ideal N*t/2,
for both ways a sweep's trial can train, side by side in one run:

- in process: the one-worker trial trains in its own Tune actor (`in_process_trials: true`, the default);
- worker group: the trial's driver function builds a TorchTrainer whose Ray Train worker reports
  through TuneReportCallback (`in_process_trials: false`, what multi-worker trials always do).

Each trial is the real sweep path on the bundled digits with a fixed number of steps; t is the mean
wall time of one fine-tuning run of each variant (supervised only, + inversion), measured alone in
the same process through `rayssl finetune`'s path (a Ray Train worker). Target: < 1.2.

    .venv/bin/python bench/tune_overhead.py [--trials 4]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from rayssl.config import FinetuneConfig, SweepConfig, load_config
from rayssl.data.shards import write_shards
from rayssl.data.sources import load_source
from rayssl.train.launch import init_ray, run_finetune
from rayssl.tune.sweep import build_tuner, with_absolute_paths

OUT = Path("bench/out/tune_overhead")
COMMON = ["data.image_size=16", "data.batch_size=64", "schedule.steps=16", "schedule.eval_every=8", "train.num_workers=1"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=4, help="3x this many trials run (N/2 budgets x 2 variants x 3 label draws)")
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    shards = OUT / "shards"
    write_shards(load_source("digits"), str(shards), rows_per_shard=256)
    base = [f"data.shards={shards}", f"run.storage_path={OUT / 'single'}", *COMMON]
    init_ray(load_config(FinetuneConfig, None, base).ray)

    run_finetune(load_config(FinetuneConfig, None, [*base, "run.name=warmup"]))  # workers and imports warm
    singles = []
    for alpha in (0.0, 0.01):  # the sweep's two variants: supervised only, + inversion (double backward)
        start = time.perf_counter()
        run_finetune(load_config(FinetuneConfig, None, [*base, f"run.name=single_{alpha}", f"inversion.alpha={alpha}"]))
        singles.append(time.perf_counter() - start)
    single = sum(singles) / len(singles)

    print(
        "| trials train | trials | one trial alone t s | sweep wall s | ideal N*t/2 s | ratio | mean trial s inside the sweep | sweep / sequential N*t |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    walls = {}
    for in_process in (False, True):
        sweep = load_config(
            SweepConfig,
            None,
            [
                f"storage_path={OUT}",
                f"name=sweep_{'in_process' if in_process else 'worker_group'}",
                f"in_process_trials={str(in_process).lower()}",
                f"budgets=[{', '.join(['5'] * (args.trials // 2))}]",
                "samples=1",
                "max_concurrent_trials=2",
                "grace_period=2",
                f"finetune.data.shards={shards}",
                *(f"finetune.{o}" for o in COMMON),
            ],
        )
        start = time.perf_counter()
        grid = build_tuner(with_absolute_paths(sweep)).fit()
        total = walls[in_process] = time.perf_counter() - start
        n = len(grid)
        ideal = n * single / 2
        # Where the time goes: a trial that runs slower beside another one (both want the same cores)
        # versus time Tune spends outside the trials (scheduling, actor start-up, result handling).
        in_sweep = sum(r.metrics["time_total_s"] for r in grid) / n
        where = "in process (Tune actor)" if in_process else "worker group (TorchTrainer)"
        print(
            f"| {where} | {n} | {single:.1f} | {total:.1f} | {ideal:.1f} | {total / ideal:.2f} | {in_sweep:.1f} | {total / (n * single):.2f} |",
            flush=True,
        )
    print(f"\nsweep wall time, in process / worker group: {walls[True] / walls[False]:.2f}")


if __name__ == "__main__":
    main()
