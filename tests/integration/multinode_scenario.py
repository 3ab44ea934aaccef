"""Multi-node pretraining on one machine, run as its own process by test_multinode.py (the test
session already holds a local Ray, and one process can join only one cluster).

A `ray.cluster_utils.Cluster` (a CPU-less head for the driver + 2 worker nodes on this machine)
pretrains NAT from shards on a moto S3 server into s3:// checkpoints, with the two Train workers
spread over the two worker nodes. Once Ray Train has committed the first checkpoint, the node
of one Train worker is removed; Ray Train restarts the worker group on the surviving node (FailureConfig)
from that checkpoint and the run finishes. Prints one JSON line of findings.

usage: python multinode_scenario.py S3_ENDPOINT WORK_DIR
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

sys.path.insert(0, str(Path(__file__).parents[1]))
from helpers import make_image_folder, tiny_config  # noqa: E402
from rayssl.config import StorageConfig  # noqa: E402
from rayssl.data import storage  # noqa: E402
from rayssl.data.shards import write_shards  # noqa: E402
from rayssl.data.sources import load_source  # noqa: E402
from rayssl.train.launch import run_pretrain  # noqa: E402

EPOCHS = 4
IMAGES = 240  # 2 classes x 120 -> 2 workers x batch 8 -> 15 steps per epoch


def committed_epochs(run_dir: str, storage_cfg: StorageConfig) -> list[int]:
    """Epochs of the checkpoints Ray Train's controller has committed, in order.

    A checkpoint directory appears in S3 before the controller has processed its report; only
    the controller's snapshot says that a restart would resume from it.
    """
    snapshot = storage.join(run_dir, "checkpoint_manager_snapshot.json")
    if not storage.exists(snapshot, storage_cfg):
        return []
    results = json.loads(storage.read_bytes(snapshot, storage_cfg))["checkpoint_results"]
    return [r["metrics"]["epoch"] for r in results]


def train_worker_nodes() -> list[str]:
    """Node ids of the bundles of the (one) Train worker group's placement group."""
    groups = [g for g in ray.util.placement_group_table().values() if g["state"] == "CREATED"]
    return [node for g in groups for node in g["bundles_to_node_id"].values()]


def main(s3_endpoint: str, work_dir: Path) -> None:
    storage_cfg = StorageConfig(s3_endpoint=s3_endpoint)
    data = load_source("folder", str(make_image_folder(work_dir / "raw", per_class=IMAGES // 2)))
    write_shards(data, "s3://rayssl-multinode/shards", rows_per_shard=60, storage_cfg=storage_cfg)

    # Nodes bind the machine's address like any local Ray (ray.init() maps 127.0.0.1 to it, so a
    # loopback-only head could not be joined); the head's dashboard, which serves the state API
    # that Ray Train's cleaner polls, stays on loopback.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "dashboard_host": "127.0.0.1"})
    workers = {cluster.add_node(num_cpus=4, include_dashboard=False) for _ in range(2)}
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    by_id = {node.node_id: node for node in workers}

    cfg = tiny_config(
        "s3://rayssl-multinode/shards",
        "s3://rayssl-multinode/runs",
        "multinode",
        f"storage.s3_endpoint={s3_endpoint}",
        f"train.epochs={EPOCHS}",
        "train.placement_strategy=SPREAD",
        "train.max_failures=1",
        "train.log_every=5",
        "train.num_to_keep=10",
    )
    run_dir = f"s3://rayssl-multinode/runs/{cfg.run.name}"
    findings: dict = {}

    def remove_a_train_node() -> None:
        while not committed_epochs(run_dir, storage_cfg):
            time.sleep(0.2)
        nodes = train_worker_nodes()
        findings["train_worker_nodes"] = len(set(nodes))
        findings["committed_at_removal"] = committed_epochs(run_dir, storage_cfg)
        victim = next(n for n in nodes if n in by_id)
        findings["removed_at"] = time.monotonic()
        cluster.remove_node(by_id[victim])

    remover = threading.Thread(target=remove_a_train_node, daemon=True)
    remover.start()
    started = time.monotonic()
    outcome = run_pretrain(cfg)
    finished = time.monotonic()
    remover.join(timeout=5)
    findings.update(
        metrics=outcome.metrics,
        committed_at_end=committed_epochs(run_dir, storage_cfg),
        seconds_total=round(finished - started, 1),
        seconds_from_removal_to_end=round(finished - findings.pop("removed_at", finished), 1),
        alive_nodes=sum(1 for n in ray.nodes() if n["Alive"]),
    )
    print("FINDINGS " + json.dumps(findings), flush=True)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
