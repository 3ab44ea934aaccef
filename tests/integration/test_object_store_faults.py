"""Pretraining against a misbehaving object store: a seeded fault-injecting proxy (tests/fault_proxy.py)
on 127.0.0.1 in front of moto's server, between every reader and writer (driver, Ray Data tasks,
Ray Train workers and checkpoints) and the store."""

from __future__ import annotations

import threading
import time

import pytest

from fault_proxy import FaultProxy
from helpers import assert_every_sample_once_per_epoch, assert_table_is_bijection, make_image_folder, tiny_config
from rayssl.config import StorageConfig
from rayssl.data import storage
from rayssl.data.shards import validate_shards, write_shards
from rayssl.data.sources import load_source
from rayssl.train.launch import run_pretrain

pytestmark = pytest.mark.integration

CHECKPOINT_FILES = {"model.pt", "optimizer.pt", "method.pt", "meta.json"}


def put_shards(s3_endpoint: str, uri: str, tmp_path) -> None:
    """Shards written straight to moto, not through the proxy."""
    write_shards(
        load_source("folder", str(make_image_folder(tmp_path / "raw"))),
        uri,
        rows_per_shard=16,
        storage_cfg=StorageConfig(s3_endpoint=s3_endpoint),
    )


def checkpoint_dirs(run_uri: str, storage_cfg: StorageConfig) -> dict[str, set[str]]:
    """checkpoint directory name -> the file names inside it."""
    dirs: dict[str, set[str]] = {}
    for path in storage.list_files(run_uri, storage_cfg):
        parts = path.split("/")
        if len(parts) >= 2 and parts[-2].startswith("checkpoint_"):
            dirs.setdefault(parts[-2], set()).add(parts[-1])
    return dirs


def test_pretraining_finishes_through_a_store_failing_one_request_in_ten(ray_local, s3_endpoint, tmp_path):
    put_shards(s3_endpoint, "s3://rayssl-flaky/shards", tmp_path)
    with FaultProxy(s3_endpoint, fault_rate=0.10, seed=0) as proxy:
        flaky = StorageConfig(s3_endpoint=proxy.url, s3_max_attempts=6)  # 7.5% failing answers: 6 in a row ~ 2e-7
        cfg = tiny_config(
            "s3://rayssl-flaky/shards",
            "s3://rayssl-flaky/runs",
            "flaky",
            f"storage.s3_endpoint={proxy.url}",
            "storage.s3_max_attempts=6",
            "train.epochs=3",
            "train.num_to_keep=2",
        )
        outcome = run_pretrain(cfg)
        validate_shards("s3://rayssl-flaky/shards", flaky, checksums=True)  # every shard's sha256, read through the faults
    assert outcome.metrics["global_step"] == 9
    assert sum(proxy.faults.values()) >= 10 and set(proxy.faults) == {"slowdown", "internal", "reset", "delay"}, proxy.faults
    # Retention is exact: num_to_keep checkpoints remain, each complete.
    kept = checkpoint_dirs("s3://rayssl-flaky/runs/flaky", StorageConfig(s3_endpoint=s3_endpoint))
    assert len(kept) == 2 and all(CHECKPOINT_FILES <= files for files in kept.values()), kept
    assert_table_is_bijection(outcome.checkpoint, StorageConfig(s3_endpoint=s3_endpoint))
    assert_every_sample_once_per_epoch(outcome.checkpoint, epochs=3, storage_cfg=StorageConfig(s3_endpoint=s3_endpoint))


def test_store_gone_mid_run_fails_fast_naming_endpoint_and_object(ray_local, s3_endpoint, tmp_path):
    put_shards(s3_endpoint, "s3://rayssl-outage/shards", tmp_path)
    direct = StorageConfig(s3_endpoint=s3_endpoint)
    with FaultProxy(s3_endpoint, fault_rate=0.0) as proxy:
        cfg = tiny_config(
            "s3://rayssl-outage/shards",
            "s3://rayssl-outage/runs",
            "outage",
            f"storage.s3_endpoint={proxy.url}",
            "storage.s3_max_attempts=2",
            "storage.s3_connect_timeout_s=1",
            "storage.s3_request_timeout_s=2",
            "train.epochs=200",
            "train.max_failures=0",
        )

        def pull_the_plug() -> None:  # once the first checkpoint is in the store
            deadline = time.monotonic() + 180
            while not checkpoint_dirs("s3://rayssl-outage/runs/outage", direct) and time.monotonic() < deadline:
                time.sleep(0.2)
            proxy.down = True

        threading.Thread(target=pull_the_plug, daemon=True).start()
        with pytest.raises(storage.ObjectStoreError) as err:
            run_pretrain(cfg)
    assert proxy.down, "the store never went down: no checkpoint appeared"
    assert proxy.url in str(err.value) and "s3://rayssl-outage/runs/outage/config.yaml" in str(err.value)
