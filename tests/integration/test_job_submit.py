"""`ray job submit` against cluster/fake-multinode.yaml, for real, on 127.0.0.1 with token auth.

The head's autoscaler (Ray's fake multi-node provider) launches CPU-only stand-ins for the GPU
workers when a submitted job asks for them. `ray up` cannot drive this provider from the pip
wheel (see README "Scaling out"), so the head is started the way `ray up` starts one,
`ray start --head --autoscaling-config=...`, and torn down by signal; the autoscaler, the node
types, token authentication and the job path are Ray's own.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import yaml
from heads import BIN, REPO, Head, free_port, job_status, ray_head, submit

from helpers import make_image_folder
from rayssl.data.shards import write_shards
from rayssl.data.sources import load_source

pytestmark = pytest.mark.integration

STARTED: dict[str, float] = {}  # when the cluster was asked for, for the "up to SUCCEEDED" figure


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> Iterator[Head]:
    gcs_port = free_port()
    config = yaml.safe_load((REPO / "cluster" / "fake-multinode.yaml").read_text())
    config["provider"]["gcs_address"] = f"127.0.0.1:{gcs_port}"
    autoscaling = tmp_path_factory.mktemp("cluster") / "autoscaling.yaml"
    autoscaling.write_text(yaml.safe_dump(config))
    STARTED["head"] = time.monotonic()
    env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    # The head has no CPUs, like the cloud heads: train workers and data tasks can only run on
    # worker nodes, so a job succeeds only if the autoscaler launched them.
    with ray_head("--num-cpus=0", f"--autoscaling-config={autoscaling}", env=env, gcs_port=gcs_port) as started:
        STARTED["up"] = time.monotonic()
        yield started


def test_job_on_autoscaled_workers_reaches_succeeded(head, tmp_path):
    shards = tmp_path / "shards"
    write_shards(load_source("folder", str(make_image_folder(tmp_path / "raw"))), str(shards), rows_per_shard=16)
    config = tmp_path / "job.yaml"
    config.write_text(
        f"run: {{name: job, storage_path: {tmp_path / 'runs'}}}\n"
        f"data: {{shards: {shards}, image_size: 8, batch_size: 8}}\n"
        "model: {width: 8, embed_dim: 16}\nnat: {target_dim: 8}\n"
        "train: {epochs: 1, placement_strategy: SPREAD}\neval: {knn_k: 3}\n"
    )
    proc = submit(head, "python", "jobs/pretrain.py", "--config", str(config), timeout_s=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout.lower()
    assert "| NAT (epoch 1) |" in proc.stdout  # the eval table reached the job logs
    assert (tmp_path / "runs" / "job" / "eval.json").exists()
    status = subprocess.run(
        [str(BIN / "ray"), "status", f"--address={head.gcs}"], env=head.env, capture_output=True, text=True, timeout=120
    ).stdout
    print(
        f"head up in {STARTED['up'] - STARTED['head']:.0f}s; "
        f"head start to SUCCEEDED job in {time.monotonic() - STARTED['head']:.0f}s\n{status}"
    )
    assert "ray.worker.gpu" in status  # launched by the autoscaler from the YAML's node type


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
