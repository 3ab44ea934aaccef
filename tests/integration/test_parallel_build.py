"""`rayssl shards build --parallel`: Ray Data tasks write the same shards as the single-process
builder, sized by bytes, and an interrupted build resumes without rewriting finished shards."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import make_image_folder
from rayssl.config import StorageConfig
from rayssl.data.build import DONE_SUFFIX, build_shards_parallel
from rayssl.data.shards import read_manifest, validate_shards, write_shards
from rayssl.data.sources import load_source

pytestmark = pytest.mark.integration


def rows_by_id(uri: str, split: str) -> dict[str, tuple[int, int]]:
    manifest = read_manifest(uri)
    out = {}
    for shard in manifest["splits"][split]["shards"]:
        t = pq.read_table(Path(uri) / shard["path"], columns=["sample_id", "index", "label"])
        out.update(zip(t.column("sample_id").to_pylist(), zip(t.column("index").to_pylist(), t.column("label").to_pylist())))
    return out


def test_parallel_build_matches_the_sequential_one_and_resumes(ray_local, tmp_path):
    folder = make_image_folder(tmp_path / "raw")
    sequential = tmp_path / "sequential"
    write_shards(load_source("folder", str(folder)), str(sequential), rows_per_shard=16)
    out = tmp_path / "parallel"
    sizes = sorted(os.path.getsize(p) for p in folder.rglob("*.png"))
    shard_mb = 10 * sizes[-1] / 2**20  # about 10 images per shard
    manifest = build_shards_parallel(str(folder), str(out), shard_mb=shard_mb)
    validate_shards(str(out), checksums=True)
    assert manifest["build"] == {"shards_written": len(list(out.rglob("*.parquet"))), "shards_skipped": 0}
    for split in ("train", "test"):
        assert rows_by_id(str(out), split) == rows_by_id(str(sequential), split)  # same ids, indices and labels
        for shard in manifest["splits"][split]["shards"]:
            image_bytes = sum(len(b) for b in pq.read_table(out / shard["path"], columns=["image"]).column("image").to_pylist())
            assert image_bytes <= shard_mb * 2**20
    assert manifest["classes"] == read_manifest(str(sequential))["classes"]

    # An interrupted build: one shard never finished and the manifest was never written.
    victim = out / manifest["splits"]["train"]["shards"][1]["path"]
    victim.unlink()
    Path(str(victim) + DONE_SUFFIX).unlink()
    (out / "manifest.json").unlink()
    others = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    resumed = build_shards_parallel(str(folder), str(out), shard_mb=shard_mb)
    assert resumed["build"] == {"shards_written": 1, "shards_skipped": len(others)}
    assert all(p.stat().st_mtime_ns == t for p, t in others.items())  # finished shards untouched
    assert {k: v for k, v in resumed.items() if k != "build"} == {k: v for k, v in manifest.items() if k != "build"}
    assert json.loads((out / "manifest.json").read_text())["splits"] == manifest["splits"]
    validate_shards(str(out), StorageConfig(), checksums=True)
