"""`ray job submit` against a head of our own on 127.0.0.1 with token authentication."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from heads import job_status, ray_head, submit
from helpers import make_image_folder

from rayssl.data.shards import write_shards
from rayssl.data.sources import load_source

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def head():
    with ray_head("--num-cpus=4") as started:
        yield started


def test_job_submit_reaches_succeeded(head, tmp_path):
    shards = tmp_path / "shards"
    write_shards(load_source("folder", str(make_image_folder(tmp_path / "raw"))), str(shards), rows_per_shard=16)
    config = tmp_path / "job.yaml"
    config.write_text(
        f"run: {{name: job, storage_path: {tmp_path / 'runs'}}}\n"
        f"data: {{shards: {shards}, image_size: 8, batch_size: 8}}\n"
        "model: {width: 8, embed_dim: 16}\nnat: {target_dim: 8}\ntrain: {epochs: 1}\neval: {knn_k: 3}\n"
    )
    proc = submit(head, "python", "jobs/pretrain.py", "--config", str(config))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout.lower()
    assert "| NAT (epoch 1) |" in proc.stdout  # the eval table reached the job logs
    assert (tmp_path / "runs" / "job" / "eval.json").exists()


def test_failing_job_ends_failed_and_submit_exits_nonzero(head, tmp_path):
    proc = submit(head, "python", "jobs/pretrain.py", "--config", str(tmp_path / "missing.yaml"), submission_id="rayssl-bad-config")
    assert proc.returncode != 0
    assert "config file not found" in proc.stdout + proc.stderr  # the job's own error reaches the user
    assert "Job 'rayssl-bad-config' failed" in job_status(head, "rayssl-bad-config")  # status FAILED


def test_job_api_refuses_unauthenticated_requests(head):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{head.dashboard}/api/jobs/", timeout=30)
    assert refused.value.code == 401
    token = open(head.env["RAY_AUTH_TOKEN_PATH"]).read().strip()
    request = urllib.request.Request(f"{head.dashboard}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
