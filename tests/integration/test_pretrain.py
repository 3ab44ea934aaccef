"""Pretraining flows on a local Ray with tiny generated data and 2 Train workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from ray.util.placement_group import PlacementGroup, placement_group

from helpers import (
    SECRET_SENTINEL,
    assert_every_sample_once_per_epoch,
    assert_table_is_bijection,
    committed_ledger,
    inject_faults,
    jpeg_bytes,
    make_image_folder,
    tensorboard_scalars,
    tiny_config,
)
from rayssl import cli
from rayssl.config import StorageConfig, to_dict
from rayssl.data import quarantine, storage
from rayssl.data.shards import ShardError, write_shards
from rayssl.data.sources import load_source
from rayssl.eval.run import run_eval
from rayssl.methods.nat import initial_table
from rayssl.train import checkpoints, ledger
from rayssl.train.launch import TrainingDiverged, run_pretrain
from rayssl.train.placement import release_placement_group
from rayssl.train.runs import list_runs, read_heartbeat, write_heartbeat

pytestmark = pytest.mark.integration

TRAIN_IMAGES = 48  # 2 classes x 24; 2 workers x batch 8 -> 3 steps per epoch


def test_pretrain_eval_and_rerun_resumes(nat_run):
    cfg, outcome = nat_run
    assert outcome.metrics["epoch"] == 1 and outcome.metrics["global_step"] == 6
    table = assert_table_is_bijection(outcome.checkpoint)
    # The last epoch may legitimately reassign nothing (the assignment is already optimal for
    # its batches); what must hold is that the Hungarian steps moved the table off its seed.
    assert not torch.equal(table, initial_table(TRAIN_IMAGES, cfg.nat.seed))
    assert (Path(outcome.run_dir) / "config.yaml").read_text().startswith("method: nat")
    scalars = tensorboard_scalars(Path(outcome.run_dir) / "tensorboard")
    assert {"loss", "images_per_s", "quarantined", "reassigned_fraction"} <= set(scalars) and scalars["loss"] == [3, 6]

    result = run_eval(cfg, outcome.checkpoint)
    assert [r["features"] for r in result["results"]] == ["random init", "NAT (epoch 2)"]
    # bright-left vs bright-right blobs: any conv features separate them (chance is 50%)
    assert all(r["knn_acc"] >= 0.75 and r["test_samples"] == 16 for r in result["results"]), result["results"]
    assert (Path(outcome.run_dir) / "eval.json").exists()
    (listed,) = list_runs(cfg.run.storage_path)  # `rayssl runs` reads what the run wrote
    assert (listed.name, listed.status, listed.rounds_done, listed.rounds_total) == ("nat", "finished", 2, 2)
    assert listed.headline.startswith("kNN ")

    # Same name again: the run had finished, so nothing is retrained and no worker starts.
    again = run_pretrain(cfg)
    assert again.metrics["global_step"] == 6 and again.checkpoint == outcome.checkpoint
    assert torch.equal(assert_table_is_bijection(again.checkpoint), table)


def placement_group_state(group_id: str) -> str:
    import ray

    return ray.util.placement_group_table(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id)))).get("state")


def test_a_placement_group_left_by_ray_train_is_released(ray_local, nat_run, tmp_path):
    """Rank 0 names its workers' placement group in the heartbeat; after fit() the group is gone,
    and one that Ray Train left behind (here: made by the test, as if so) is removed by the driver."""
    last_beat = read_heartbeat(nat_run[1].run_dir, StorageConfig())
    assert last_beat["loop_done"] is True  # what placement.release_if_fit_hangs waits for
    assert placement_group_state(last_beat["placement_group"]) == "REMOVED"

    left = placement_group([{"CPU": 1}])
    ray_local.get(left.ready(), timeout=60)
    run_dir = str(tmp_path / "left_behind")  # a run of its own: the shared one's heartbeat stays as it is
    write_heartbeat(run_dir, StorageConfig(), global_step=6, round_index=1, placement_group=left.id.hex())
    release_placement_group(run_dir, StorageConfig())
    assert placement_group_state(left.id.hex()) == "REMOVED"
    release_placement_group(run_dir, StorageConfig())  # an already removed group: nothing to do


def test_worker_crash_resumes_from_checkpoint(ray_local, local_shards, tmp_path, monkeypatch):
    marker = tmp_path / "crashed"
    inject_faults(monkeypatch, crash_rank=1, crash_at_step=4, crash_marker=str(marker))
    cfg = tiny_config(local_shards, str(tmp_path / "runs"), "crash", "train.epochs=3")
    outcome = run_pretrain(cfg)
    assert marker.exists(), "the fault was never injected"
    # 3 epochs x 3 steps: the interrupted epoch was redone from its start, not counted twice.
    assert outcome.metrics["epoch"] == 2 and outcome.metrics["global_step"] == 9
    assert_table_is_bijection(outcome.checkpoint)
    assert_every_sample_once_per_epoch(outcome.checkpoint, epochs=3)  # the redone epoch counted once


def test_crash_without_retries_fails_the_command(ray_local, local_shards, tmp_path, capsys, monkeypatch):
    inject_faults(monkeypatch, crash_rank=1, crash_at_step=1, crash_marker=str(tmp_path / "crashed"))
    cfg = tiny_config(local_shards, str(tmp_path / "runs"), "no_retries", "train.max_failures=0")
    config_file = tmp_path / "pretrain.yaml"
    config_file.write_text(yaml.safe_dump(to_dict(cfg)))
    assert cli.main(["pretrain", "--config", str(config_file)]) == 1
    assert "training failed after its retries (train.max_failures)" in capsys.readouterr().err
    assert [r.status for r in list_runs(str(tmp_path / "runs"))] == ["failed"]


def test_corrupt_image_is_quarantined_and_run_completes(ray_local, tmp_path):
    raw = make_image_folder(tmp_path / "raw")
    (raw / "train" / "class1" / "img005.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    shards = tmp_path / "shards"
    write_shards(load_source("folder", str(raw)), str(shards), rows_per_shard=16)
    cfg = tiny_config(str(shards), str(tmp_path / "runs"), "corrupt", "data.quarantine_threshold=0.05")
    outcome = run_pretrain(cfg)
    records = quarantine.read_records(outcome.run_dir, cfg.storage)
    assert list(records) == ["train/train/class1/img005.png"]
    assert records["train/train/class1/img005.png"]["reason"]
    assert outcome.metrics["quarantined"] == 1
    # 47 good rows: equal split over 2 workers -> 23 each -> 2 full batches of 8 per epoch.
    assert outcome.metrics["global_step"] == 4
    # The ledger lists the quarantined sample and counts what was trained: 2 x 16 of the 47 good ones
    # (equal split and whole batches leave 15 out; the audit shows it as a difference, not as "exactly once").
    for line, audit in zip(
        committed_ledger(outcome.checkpoint),
        ledger.audit(committed_ledger(outcome.checkpoint), 48, [records["train/train/class1/img005.png"]["index"]]),
    ):
        assert line["quarantined"] == ["train/class1/img005.png"] and line["samples"] == 32
        assert audit["expected"] == 47 and audit["difference"] == -15 and not audit["exactly_once"]

    strict = tiny_config(str(shards), str(tmp_path / "runs"), "corrupt_strict", "data.quarantine_threshold=0.001")
    with pytest.raises(quarantine.QuarantineThresholdExceeded, match="1 of 48 images"):
        run_pretrain(strict)


def test_device_decode_streams_jpegs_and_quarantines_a_truncated_one(ray_local, tmp_path):
    # data.decode: device on this machine's CPU device: the Ray Data stage reads headers and draws
    # crop boxes, each worker decodes its JPEGs (libjpeg-turbo here, nvJPEG on a GPU) and crops.
    import numpy as np

    raw = make_image_folder(tmp_path / "raw")
    rng = np.random.default_rng(0)
    for png in sorted((raw / "train").rglob("*.png")):  # 12 x 16 px JPEGs: crop-then-resize to 8 x 8
        png.unlink()
        png.with_suffix(".jpg").write_bytes(jpeg_bytes(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)))
    broken = jpeg_bytes(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (raw / "train" / "class1" / "img005.jpg").write_bytes(broken[: len(broken) // 2])  # the header reads; the pixels do not
    shards = tmp_path / "shards"
    write_shards(load_source("folder", str(raw)), str(shards), rows_per_shard=16)
    cfg = tiny_config(
        str(shards),
        str(tmp_path / "runs"),
        "device_decode",
        "data.decode=device",
        "data.crop=random_crop",
        "data.channels=3",
        "data.quarantine_threshold=0.05",
    )
    outcome = run_pretrain(cfg)
    records = quarantine.read_records(outcome.run_dir, cfg.storage)
    assert list(records) == ["train/train/class1/img005.jpg"] and "truncated" in records["train/train/class1/img005.jpg"]["reason"].lower()
    assert outcome.metrics["quarantined"] == 1
    # 48 rows reach the workers (the header stage cannot tell the broken one): 2 x 3 batches of 8 over 2 epochs
    assert outcome.metrics["global_step"] == 6 and np.isfinite(outcome.metrics["loss"])


def test_nan_loss_stops_as_diverged_and_keeps_last_checkpoint(ray_local, local_shards, tmp_path, monkeypatch):
    inject_faults(monkeypatch, nan_at_step=4)
    cfg = tiny_config(local_shards, str(tmp_path / "runs"), "nan", "train.epochs=3", "train.max_failures=0")
    with pytest.raises(TrainingDiverged, match="not finite at global step 4 \\(epoch 1\\)"):
        run_pretrain(cfg)
    latest = checkpoints.latest_checkpoint(str(tmp_path / "runs" / "nan"), StorageConfig())
    _, meta = checkpoints.load_model_state(latest, StorageConfig())
    assert meta["global_step"] == 3  # the epoch-0 checkpoint, not a diverged one
    (listed,) = list_runs(str(tmp_path / "runs"))
    assert (listed.status, listed.rounds_done, listed.headline) == ("diverged", 1, "loss not finite at step 4")


def test_broken_shard_fails_before_training(ray_local, local_shards, tmp_path):
    victim = Path(local_shards) / "train" / "part-00001.parquet"
    victim.write_bytes(victim.read_bytes()[:50])
    with pytest.raises(ShardError, match="part-00001.parquet"):
        run_pretrain(tiny_config(local_shards, str(tmp_path / "runs"), "broken"))
    with pytest.raises(ShardError, match="no shards found under"):
        run_pretrain(tiny_config(str(tmp_path / "missing"), str(tmp_path / "runs"), "missing"))


def test_pretrain_from_s3(ray_local, s3_endpoint, tmp_path, capfd):
    storage_cfg = StorageConfig(s3_endpoint=s3_endpoint)
    data = load_source("folder", str(make_image_folder(tmp_path / "raw")))
    write_shards(data, "s3://rayssl-test/shards/tiny", rows_per_shard=16, storage_cfg=storage_cfg)
    cfg = tiny_config("s3://rayssl-test/shards/tiny", "s3://rayssl-test/runs", "s3run", f"storage.s3_endpoint={s3_endpoint}")
    outcome = run_pretrain(cfg)
    assert outcome.checkpoint.startswith("s3://rayssl-test/runs/s3run/checkpoint_")
    assert storage.list_files("s3://rayssl-test/runs/s3run/tensorboard", storage_cfg)  # staged locally, copied up each round
    assert_table_is_bijection(outcome.checkpoint, storage_cfg)
    # Credentials never leak: not into the run's files (config.yaml, metrics, checkpoints), the
    # console, or Ray's session logs (driver, workers, Ray Data, Train), though they are in the environment.
    secret = SECRET_SENTINEL.encode()
    run_files = storage.list_files("s3://rayssl-test/runs/s3run", storage_cfg)
    assert run_files and not [f for f in run_files if secret in storage.read_bytes(f"s3://{f}", storage_cfg)]
    out, err = capfd.readouterr()
    assert SECRET_SENTINEL not in out + err
    logs = Path(ray_local._private.worker._global_node.get_session_dir_path()) / "logs"
    leaked = [str(p) for p in logs.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert list(logs.rglob("*.log")) and not leaked, leaked
