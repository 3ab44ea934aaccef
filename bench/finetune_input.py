"""Fine-tuning's unlabelled images streamed through Ray Data against read from memory, side by side in one run.

The same `rayssl finetune` run twice on one local Ray (started before both, so neither pays for it):
once with data.in_memory_max_mb=0 (the Ray Data stream decodes and augments in tasks beside the
trainer), once with the default (the driver decodes the split once, the worker augments from memory:
rayssl.data.in_memory). Reported per run: seconds from the call to the first checkpoint (start-up +
the first round), optimiser steps per second between the first and the last checkpoint (their
meta.json write times), and the ratios memory / stream, as medians over alternating repeats (this
2-core machine's step time drifts by a third between identical runs).

    .venv/bin/python bench/finetune_input.py [--config configs/semisup_mnist.yaml] [--steps 1000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from rayssl.config import FinetuneConfig, load_config
from rayssl.train.launch import init_ray, run_finetune

# FixMatch on MNIST, 5 labels per class, the headline's light view (bench/few_labels.py)
DEFAULT_OVERRIDES = ["fixmatch.weight=1.0", "data.augment.crop_scale_min=1.0", "data.augment.rotate_deg=0", "data.augment.translate_px=2"]


def timed_run(cfg: FinetuneConfig) -> dict[str, float]:
    """Run to the end; {"to_first_checkpoint_s", "steps_per_s", "total_s"}."""
    started = time.time()
    outcome = run_finetune(cfg, show_progress=False)
    total = time.time() - started
    metas = sorted(Path(outcome.run_dir).glob("checkpoint_*/meta.json"), key=lambda p: p.stat().st_mtime)
    (first, t_first), (last, t_last) = [(json.loads(m.read_text())["global_step"], m.stat().st_mtime) for m in (metas[0], metas[-1])]
    return {"to_first_checkpoint_s": t_first - started, "steps_per_s": (last - first) / (t_last - t_first), "total_s": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/semisup_mnist.yaml")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2, help="runs per input, alternating stream and memory; medians reported")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    storage = tempfile.mkdtemp(prefix="finetune_input_")
    common = [
        *DEFAULT_OVERRIDES,
        *args.overrides,
        f"schedule.steps={args.steps}",
        "schedule.eval_every=250",
        "train.num_to_keep=100",
        f"run.storage_path={storage}",
    ]
    modes = {"stream": ["data.in_memory_max_mb=0"], "memory": []}
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    init_ray(load_config(FinetuneConfig, args.config, common).ray)
    try:
        for repeat in range(args.repeats):
            for mode, extra in modes.items():
                cfg = load_config(FinetuneConfig, args.config, [*common, *extra, f"run.name={mode}_{repeat}"])
                results[mode].append(timed_run(cfg))
                print(f"{mode} #{repeat}: {json.dumps({k: round(v, 3) for k, v in results[mode][-1].items()})}", flush=True)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    median = {mode: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for mode, runs in results.items()}
    print(f"\n{args.config}, {args.steps} steps, overrides {DEFAULT_OVERRIDES + args.overrides}; medians of {args.repeats} runs each")
    print("| input | start-up + first round (s) | steps/s after it | ms/step | whole run (s) |\n|---|---:|---:|---:|---:|")
    for mode, r in median.items():
        print(
            f"| {mode} | {r['to_first_checkpoint_s']:.1f} | {r['steps_per_s']:.2f} | {1000 / r['steps_per_s']:.1f} | {r['total_s']:.1f} |"
        )
    stream, memory = median["stream"], median["memory"]
    print(
        f"\nmemory / stream: steps/s x{memory['steps_per_s'] / stream['steps_per_s']:.2f}, "
        f"whole run x{memory['total_s'] / stream['total_s']:.2f} of the time"
    )


if __name__ == "__main__":
    main()
