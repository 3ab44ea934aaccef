"""`rayssl pretrain` killed with SIGKILL mid-run, then run again: it resumes from the latest
checkpoint, and the committed ledger shows every sample trained exactly once per epoch.

The same two real commands (each with its own local Ray) show what the console prints: the killed
run had --verbose (Ray's own lines too), the resumed run prints RaySSL's lines, a progress display
and the eval table, and none of Ray's machinery."""

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

EPOCHS = 6  # 3 steps each
RAY_MACHINERY = ("(RayTrainWorker", "(SplitCoordinator", "(raylet)", "Reporting training result", "Trial status")


def test_killed_driver_resumes_and_trains_no_sample_twice(local_shards, tmp_path):
    config = tmp_path / "pretrain.yaml"
    config.write_text(
        yaml.safe_dump(to_dict(tiny_config(local_shards, str(tmp_path / "runs"), "killed", f"train.epochs={EPOCHS}", "ray.num_cpus=4")))
    )
    command = [str(Path(sys.executable).parent / "rayssl"), "pretrain", "--config", str(config)]
    ray_tmp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # the driver's own local Ray, found by path below
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_TMPDIR": ray_tmp}
    run_dir = str(tmp_path / "runs" / "killed")
    verbose_log = tmp_path / "verbose.log"

    try:
        with verbose_log.open("w") as out:
            driver = subprocess.Popen([command[0], "--verbose", *command[1:]], env=env, stdout=out, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 240
            # Killed once it has a checkpoint and --verbose has shown a Train worker's own line.
            while time.monotonic() < deadline and driver.poll() is None:
                if checkpoints.latest_checkpoint(run_dir, StorageConfig()) is not None and "(RayTrainWorker" in verbose_log.read_text():
                    break
                time.sleep(0.2)
            assert driver.poll() is None, "the run ended before it could be killed"
            assert "(RayTrainWorker" in verbose_log.read_text(), "--verbose showed no Train worker line within the deadline"
            os.kill(driver.pid, signal.SIGKILL)  # the driver alone, as `kill -9` would
            driver.wait(timeout=60)
        kill_leftovers(ray_tmp)  # whatever of its local Ray outlived it must not share the machine with the tests after

        killed_at = checkpoints.load_model_state(checkpoints.latest_checkpoint(run_dir, StorageConfig()), StorageConfig())[1]["global_step"]
        assert killed_at < EPOCHS * 3, "the run finished before the kill"
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        quiet = again.stdout + again.stderr
        assert again.returncode == 0, quiet
        assert f"step {killed_at})" in again.stdout, quiet  # the driver's own "resuming ... (round r, step s)" line
        assert not [m for m in RAY_MACHINERY if m in quiet], quiet  # by default, none of Ray's own lines
        # The progress display's last line (plain lines: the subprocess has no terminal), and the eval table.
        assert f"pretrain nat: {EPOCHS * 3}/{EPOCHS * 3} steps (100%)" in quiet and "Frozen-feature evaluation" in quiet
        assert len(quiet.splitlines()) < 40, quiet
        latest = checkpoints.latest_checkpoint(run_dir, StorageConfig())
        assert checkpoints.load_model_state(latest, StorageConfig())[1]["global_step"] == EPOCHS * 3  # resumed, not restarted
        assert_every_sample_once_per_epoch(latest, epochs=EPOCHS)
    finally:
        kill_leftovers(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
