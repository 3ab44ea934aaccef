"""Peak resident memory of the driver and of Ray's worker processes while the training stream
(read_parquet -> decode + crop + augment -> iter_torch_batches) delivers 100,000 images, reported
at 10 k, 50 k and 100 k images: it must stay flat. The shards are read again pass after pass.

    .venv/bin/python bench/synthetic_imagenet.py --out /tmp/synth --n 4000
    .venv/bin/rayssl shards build --source folder --path /tmp/synth --out /tmp/synth_shards --parallel --shard-mb 64
    .venv/bin/python bench/ingest_memory.py --shards /tmp/synth_shards [--images 100000]
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import psutil
import ray

from rayssl.config import AugmentConfig, DataConfig, StorageConfig
from rayssl.data.pipeline import image_dataset

RUN_DIR = "bench/out/ingest_memory"
CHECKPOINTS = (10_000, 50_000, 100_000)


def rss_mb(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:  # the process ended between listing and reading
        return 0.0


def ray_worker_pids(driver: int) -> list[int]:
    """The Ray worker processes (they rename themselves `ray::...`) of the local Ray this driver
    started: descendants of `driver` only, so that another Ray on the machine is not counted."""
    pids = []
    for proc in psutil.Process(driver).children(recursive=True):
        try:
            if proc.cmdline()[:1] and proc.cmdline()[0].startswith("ray::"):
                pids.append(proc.pid)
        except psutil.Error:
            continue
    return pids


class Sampler(threading.Thread):
    """Every 0.5 s: the driver's RSS and the largest and summed RSS of Ray's workers; keeps the peaks."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_driver = self.peak_worker = self.peak_workers_total = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            workers = [rss_mb(p) for p in ray_worker_pids(os.getpid())]
            self.peak_driver = max(self.peak_driver, rss_mb(os.getpid()))
            self.peak_worker = max(self.peak_worker, max(workers, default=0.0))
            self.peak_workers_total = max(self.peak_workers_total, sum(workers))

    def snapshot(self) -> tuple[float, float, float]:
        return self.peak_driver, self.peak_worker, self.peak_workers_total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", required=True)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    data = DataConfig(
        shards=args.shards,
        image_size=args.image_size,
        channels=3,
        batch_size=256,
        crop="random_crop",
        augment=AugmentConfig(crop_scale_min=0.2, horizontal_flip=True),
    )
    ray.init(address="local", num_cpus=2, log_to_driver=False)
    sampler = Sampler()
    sampler.start()
    seen, rows, started = 0, [], time.perf_counter()
    marks = [m for m in CHECKPOINTS if m <= args.images]
    while marks:
        for batch in image_dataset(data, "train", RUN_DIR, StorageConfig()).iter_torch_batches(batch_size=256, device="cpu"):
            seen += len(batch["image"])
            while marks and seen >= marks[0]:
                rows.append((marks.pop(0), time.perf_counter() - started, *sampler.snapshot()))
                print(rows[-1], flush=True)
            if not marks:
                break
    sampler.stop.set()
    ray.shutdown()
    print(f"{args.images:,} images of {args.image_size} px streamed from {args.shards} (pass after pass), 2 CPUs")
    print("| images | elapsed | driver peak RSS | largest Ray worker peak RSS | all Ray workers peak RSS |\n|---:|---:|---:|---:|---:|")
    for n, elapsed, driver, worker, total in rows:
        print(f"| {n:,} | {elapsed:.0f} s | {driver:.0f} MB | {worker:.0f} MB | {total:.0f} MB |")


if __name__ == "__main__":
    main()
