"""`ray job submit` of jobs/pretrain.py against a local `ray start --head` on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import make_image_folder

from rayssl.data.shards import write_shards
from rayssl.data.sources import load_source

pytestmark = pytest.mark.integration
REPO = Path(__file__).parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head():
    """A `ray start --head --block` of our own, stopped by signalling it: `ray stop` would kill
    every Ray instance on the machine, including the test session's and anyone else's."""
    # Ray's unix sockets live under --temp-dir and must stay under ~107 characters.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    # The job entrypoint runs `python` from the head's PATH: the project's virtualenv, as when activated.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PATH": f"{BIN}:{os.environ['PATH']}"}
    gcs, dashboard = free_port(), free_port()
    start = [
        str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--num-cpus=4",
        "--disable-usage-stats", f"--temp-dir={temp_dir}",
    ]
    proc = subprocess.Popen(start, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        wait_for_job_api(address, env, proc)
        yield address, env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # --block: the head shuts its own processes down
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def wait_for_job_api(address: str, env: dict, proc: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start --head exited with {proc.returncode}")
        probe = subprocess.run([str(BIN / "ray"), "job", "list", f"--address={address}"], env=env, capture_output=True, timeout=60)
        if probe.returncode == 0:
            return
        time.sleep(2)
    raise TimeoutError(f"the job API at {address} did not come up in {timeout_s}s")


def test_job_submit_reaches_succeeded(head, tmp_path):
    address, env = head
    shards = tmp_path / "shards"
    write_shards(load_source("folder", str(make_image_folder(tmp_path / "raw"))), str(shards), rows_per_shard=16)
    config = tmp_path / "job.yaml"
    config.write_text(
        f"run: {{name: job, storage_path: {tmp_path / 'runs'}}}\n"
        f"data: {{shards: {shards}, image_size: 8, batch_size: 8}}\n"
        "model: {width: 8, embed_dim: 16}\nnat: {target_dim: 8}\ntrain: {epochs: 1}\neval: {knn_k: 3}\n"
    )
    submit = [
        str(BIN / "ray"), "job", "submit", f"--address={address}", "--working-dir=.",
        "--runtime-env=jobs/runtime_env.yaml", "--", "python", "jobs/pretrain.py", "--config", str(config),
    ]
    proc = subprocess.run(submit, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout.lower()
    assert "| NAT (epoch 1) |" in proc.stdout  # the eval table reached the job logs
    assert (tmp_path / "runs" / "job" / "eval.json").exists()
