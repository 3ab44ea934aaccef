"""cluster/fake-multinode.yaml for real: a head whose autoscaler (Ray's fake multi-node provider)
launches CPU-only stand-ins for the GPU workers when a submitted job asks for them.

`ray up` cannot drive this provider from the pip wheel (see README "Scaling out"), so the head is
started the way `ray up` starts one, `ray start --head --autoscaling-config=...`, and torn down
by signal; the autoscaler, the node types and the job path are Ray's own.
"""

from __future__ import annotations

import subprocess
import time

import pytest
import yaml
from heads import BIN, REPO, free_port, ray_head, submit
from helpers import make_image_folder

from rayssl.data.shards import write_shards
from rayssl.data.sources import load_source

pytestmark = pytest.mark.integration


def test_job_on_autoscaled_fake_cluster(tmp_path):
    gcs_port = free_port()
    config = yaml.safe_load((REPO / "cluster" / "fake-multinode.yaml").read_text())
    config["provider"]["gcs_address"] = f"127.0.0.1:{gcs_port}"
    autoscaling = tmp_path / "autoscaling.yaml"
    autoscaling.write_text(yaml.safe_dump(config))

    shards = tmp_path / "shards"
    write_shards(load_source("folder", str(make_image_folder(tmp_path / "raw"))), str(shards), rows_per_shard=16)
    job = tmp_path / "job.yaml"
    job.write_text(
        f"run: {{name: fake, storage_path: {tmp_path / 'runs'}}}\n"
        f"data: {{shards: {shards}, image_size: 8, batch_size: 8}}\n"
        "model: {width: 8, embed_dim: 16}\nnat: {target_dim: 8}\n"
        "train: {epochs: 1, placement_strategy: SPREAD}\neval: {knn_k: 3}\n"
    )

    started = time.monotonic()
    env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    # The head has no CPUs, like the cloud heads: the train workers and data tasks can only run
    # on worker nodes, so the job succeeds only if the autoscaler launched them.
    with ray_head("--num-cpus=0", f"--autoscaling-config={autoscaling}", env=env, gcs_port=gcs_port) as head:
        up = time.monotonic() - started
        proc = submit(head, "python", "jobs/pretrain.py", "--config", str(job), timeout_s=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "succeeded" in proc.stdout.lower()
        status = subprocess.run(
            [str(BIN / "ray"), "status", f"--address={head.gcs}"], env=head.env, capture_output=True, text=True, timeout=120,
        ).stdout
        print(f"head up in {up:.0f}s; head up to SUCCEEDED job in {time.monotonic() - started:.0f}s\n{status}")
        assert "ray.worker.gpu" in status  # launched by the autoscaler from the YAML's node type
    assert (tmp_path / "runs" / "fake" / "eval.json").exists()
