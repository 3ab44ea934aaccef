"""Ray Data ingest throughput vs a plain 2-process pyarrow loop, side by side in one run.

Both read the same shards and run the same decode function (DecodeAndTransform); Ray Data's
path is read_parquet -> map_batches -> iter_torch_batches, as in training; the baseline is a
multiprocessing pool of 2 that reads each shard with pyarrow, decodes it and hands the arrays
to the parent, which turns them into torch tensors. Both consumers then normalise what the stage
shipped as a training worker does (rayssl.data.transforms.model_inputs: uint8 images, here without
augmentation, become float32 in [-1, 1]). Prints images/s for both and the ratio (target >= 0.9).
MNIST shards, or photo shards at 224 px with crop-then-resize decoding:

    .venv/bin/rayssl shards build --source mnist --path ../shared/data/mnist --out data/shards/mnist
    .venv/bin/python bench/ingest.py [--shards data/shards/mnist] [--repeats 2]
    .venv/bin/python bench/synthetic_imagenet.py --out /tmp/synthetic --n 20000
    .venv/bin/rayssl shards build --source folder --path /tmp/synthetic --out /tmp/synthetic_shards --parallel --shard-mb 64
    .venv/bin/python bench/ingest.py --shards /tmp/synthetic_shards --image-size 224 --channels 3 --crop random_crop
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import multiprocessing.pool
import time

import pyarrow.parquet as pq
import ray
import torch

from rayssl.config import DataConfig, StorageConfig
from rayssl.data.decode import image_spec
from rayssl.data.pipeline import DECODE_BATCH_ROWS, DecodeAndTransform, image_dataset
from rayssl.data.shards import list_shards
from rayssl.data.transforms import model_inputs

RUN_DIR = "bench/out/ingest"
BATCH = 256


def _decode_shard(args: tuple[str, DataConfig]) -> list[dict]:
    path, data = args
    fn = DecodeAndTransform(image_spec(data, train=True), data.augment, "train", RUN_DIR, StorageConfig())
    table = pq.read_table(path)
    return [fn(table.slice(i, DECODE_BATCH_ROWS)) for i in range(0, table.num_rows, DECODE_BATCH_ROWS)]


def plain_loop(data: DataConfig, pool: mp.pool.Pool) -> int:
    paths = [s.uri for s in list_shards(data.shards, "train")]
    images = 0
    for batches in pool.imap_unordered(_decode_shard, [(p, data) for p in paths]):
        for b in batches:
            images += len(model_inputs({"image": torch.from_numpy(b["image"])})["image"])
    return images


def ray_data(data: DataConfig) -> int:
    images = 0
    for batch in image_dataset(data, "train", RUN_DIR, StorageConfig()).iter_torch_batches(batch_size=BATCH, device="cpu"):
        images += len(model_inputs(batch)["image"])
    return images


def timed(fn, *args) -> tuple[int, float]:
    start = time.perf_counter()
    n = fn(*args)
    return n, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", default="data/shards/mnist")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--crop", default="resize", choices=["resize", "random_crop"])
    args = parser.parse_args()
    data = DataConfig(shards=args.shards, image_size=args.image_size, channels=args.channels, crop=args.crop)
    ray.init(address="local", num_cpus=2)  # same CPU budget as the 2-process baseline
    # Both sides run warm: the pool's processes are started (and import torch) once, outside the
    # timings, as Ray's worker processes are after the first run.
    pool = mp.get_context("spawn").Pool(2)
    pool.map(_decode_shard, [(list_shards(data.shards, "train")[0].uri, data)] * 2)
    ray_data(data)
    print("| run | Ray Data img/s | plain 2-proc img/s | ratio |\n|---|---:|---:|---:|")
    for r in range(args.repeats):
        n_ray, t_ray = timed(ray_data, data)
        n_plain, t_plain = timed(plain_loop, data, pool)
        assert n_ray == n_plain, (n_ray, n_plain)
        print(f"| {r} | {n_ray / t_ray:,.0f} | {n_plain / t_plain:,.0f} | {(n_ray / t_ray) / (n_plain / t_plain):.2f} |", flush=True)


if __name__ == "__main__":
    main()
