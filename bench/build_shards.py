"""Shard building throughput (MB/s of encoded images): Ray Data tasks (`rayssl shards build
--parallel`, a local Ray on this machine's cores) against the single-process builder, on the same
synthetic ImageNet-like JPEG folder (bench/synthetic_imagenet.py, generated at run time).

    .venv/bin/python bench/build_shards.py [--n 3000] [--shard-mb 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from rayssl.data.build import build_shards_parallel  # noqa: E402
from rayssl.data.shards import validate_shards, write_shards  # noqa: E402
from rayssl.data.sources import load_source  # noqa: E402
from synthetic_imagenet import write_corpus  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--shard-mb", type=float, default=32.0)
    args = parser.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = write_corpus(root / "images", args.n)
        megabytes = sum(p.stat().st_size for p in paths) / 2**20
        start = time.perf_counter()
        write_shards(load_source("folder", str(root / "images")), str(root / "sequential"), rows_per_shard=300)
        sequential_s = time.perf_counter() - start
        ray.init(address="local", num_cpus=os.cpu_count(), log_to_driver=False)
        try:
            start = time.perf_counter()
            manifest = build_shards_parallel(str(root / "images"), str(root / "parallel"), args.shard_mb)
            parallel_s = time.perf_counter() - start
            start = time.perf_counter()
            again = build_shards_parallel(str(root / "images"), str(root / "parallel"), args.shard_mb)  # everything done: a resume
            resume_s = time.perf_counter() - start
        finally:
            ray.shutdown()
        validate_shards(str(root / "parallel"), checksums=True)
        shards = sum(len(s["shards"]) for s in manifest["splits"].values())
    print(f"{args.n} synthetic JPEGs, {megabytes:.0f} MB; {os.cpu_count()} cores; parallel: {shards} shards of <= {args.shard_mb:g} MB")
    print("| builder | wall | MB/s |\n|---|---:|---:|")
    print(f"| single process (write_shards) | {sequential_s:.1f} s | {megabytes / sequential_s:.0f} |")
    print(f"| Ray Data tasks (--parallel), Ray start excluded | {parallel_s:.1f} s | {megabytes / parallel_s:.0f} |")
    print(f"| rerun of a finished build (all {again['build']['shards_skipped']} shards skipped) | {resume_s:.1f} s | – |")
    print(f"parallel / single process: {sequential_s / parallel_s:.2f}x")


if __name__ == "__main__":
    main()
