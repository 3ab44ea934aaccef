"""`rayssl pretrain` killed with SIGKILL mid-run, then run again: it resumes from the latest
checkpoint, and the committed ledger shows every sample trained exactly once per epoch."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from heads import kill_leftovers

from helpers import assert_every_sample_once_per_epoch, tiny_config
from rayssl.config import StorageConfig, to_dict
from rayssl.train import checkpoints

pytestmark = pytest.mark.integration

EPOCHS = 8  # 3 steps each


def test_killed_driver_resumes_and_trains_no_sample_twice(local_shards, tmp_path):
    config = tmp_path / "pretrain.yaml"
    config.write_text(
        yaml.safe_dump(to_dict(tiny_config(local_shards, str(tmp_path / "runs"), "killed", f"train.epochs={EPOCHS}", "ray.num_cpus=4")))
    )
    command = [str(Path(sys.executable).parent / "rayssl"), "pretrain", "--no-eval", "--config", str(config)]
    ray_tmp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # the driver's own local Ray, found by path below
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_TMPDIR": ray_tmp}
    run_dir = str(tmp_path / "runs" / "killed")

    try:
        driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        while checkpoints.latest_checkpoint(run_dir, StorageConfig()) is None and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert driver.poll() is None, "the run ended before it could be killed"
        first = checkpoints.latest_checkpoint(run_dir, StorageConfig())
        assert first is not None, "no checkpoint within the deadline"
        os.kill(driver.pid, signal.SIGKILL)  # the driver alone, as `kill -9` would
        driver.wait(timeout=60)
        kill_leftovers(ray_tmp)  # whatever of its local Ray outlived it must not share the machine with the tests after

        killed_at = checkpoints.load_model_state(checkpoints.latest_checkpoint(run_dir, StorageConfig()), StorageConfig())[1]["global_step"]
        assert killed_at < EPOCHS * 3, "the run finished before the kill"
        again = subprocess.run([command[0], "--verbose", *command[1:]], env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "(RayTrainWorker" in again.stdout + again.stderr  # --verbose: Ray's own lines too (test_console_output: none by default)
        # The driver's own line: rank 0's "resumed from checkpoint" is forwarded by Ray's log monitor,
        # which may not deliver it before a short run's driver exits.
        assert f"step {killed_at})" in again.stdout, again.stdout + again.stderr
        latest = checkpoints.latest_checkpoint(run_dir, StorageConfig())
        assert checkpoints.load_model_state(latest, StorageConfig())[1]["global_step"] == EPOCHS * 3  # resumed, not restarted
        assert_every_sample_once_per_epoch(latest, epochs=EPOCHS)
    finally:
        kill_leftovers(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
