"""What `rayssl` prints by default: RaySSL's own lines and a progress display, none of Ray's machinery.
Runs the real command in a subprocess with its own local Ray. (--verbose, which shows Ray's lines,
is checked on the resumed run of test_driver_kill: one subprocess run fewer.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import tiny_config
from rayssl.config import to_dict

pytestmark = pytest.mark.integration

RAY_MACHINERY = ("(RayTrainWorker", "(SplitCoordinator", "(raylet)", "Reporting training result", "Trial status")


def run_pretrain_command(config: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray of its own
    done = subprocess.run(
        [str(Path(sys.executable).parent / "rayssl"), "pretrain", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_console_is_quiet_by_default(local_shards, tmp_path):
    config = tmp_path / "pretrain.yaml"
    config.write_text(yaml.safe_dump(to_dict(tiny_config(local_shards, str(tmp_path / "runs"), "console", "ray.num_cpus=4"))))
    quiet = run_pretrain_command(config)
    assert not [m for m in RAY_MACHINERY if m in quiet], quiet
    # The progress display's last line (plain lines: the subprocess has no terminal), and the eval table.
    assert "pretrain nat: 6/6 steps (100%)" in quiet and "Frozen-feature evaluation" in quiet
    assert len(quiet.splitlines()) < 40, quiet
