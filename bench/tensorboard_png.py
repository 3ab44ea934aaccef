"""Render a run's TensorBoard scalars as one PNG, laid out like TensorBoard's Scalars dashboard.

For the README, where a browser screenshot cannot be taken on a headless machine: the curves are
read from the run's own event files with TensorBoard's reader, so the picture is the real run's.

    .venv/bin/python bench/tensorboard_png.py RUN_DIR OUT.png [--tags loss lr val_acc ...]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("out")
    parser.add_argument("--tags", nargs="+", help="scalar tags to draw (default: all)")
    args = parser.parse_args()
    # One accumulator per event file: a resumed run appends a new file, and the steps continue.
    series: dict[str, list[tuple[int, float]]] = {}
    for events in sorted((Path(args.run_dir) / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            series.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    if not series:
        raise SystemExit(f"no scalars under {args.run_dir}/tensorboard")
    tags = [t for t in (args.tags or sorted(series)) if t in series]
    cols = min(3, len(tags))
    rows = math.ceil(len(tags) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.5 * rows), dpi=110, squeeze=False)
    for ax, tag in zip(axes.flat, tags):
        steps, values = zip(*sorted(dict(series[tag]).items()))  # one value per step (a redone round overwrites)
        ax.plot(steps, values, color="#f57c00", linewidth=1.4)
        ax.set_title(tag, fontsize=9, loc="left")
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("step", fontsize=7)
    for ax in list(axes.flat)[len(tags) :]:
        ax.axis("off")
    fig.suptitle(f"TensorBoard scalars: {Path(args.run_dir).name}", fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}: {', '.join(tags)}")


if __name__ == "__main__":
    main()
