"""Pretraining under object-store faults, side by side with the fault-free run, one table.

Each scenario pretrains NAT on the tiny generated image folder of the tests (48 train images,
2 workers, batch 8: 3 steps per epoch) with shards and checkpoints in moto's S3 behind the
fault-injecting proxy of tests/fault_proxy.py, and audits the committed exactly-once ledger.

    .venv/bin/python bench/faults.py            # ~5 minutes on 2 cores

Columns: faults injected by the proxy, retries (faults that the client had to retry: 503, 500,
resets; a delay is not one), samples lost and samples trained twice in the committed state
(from the ledger: every epoch must be exactly once), wall time against the fault-free run, and
for the permanent outage the seconds from the store going down to the command's error.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the proxy and the tiny data live with the tests

os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")

import ray  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from fault_proxy import FaultProxy  # noqa: E402
from helpers import committed_ledger, make_image_folder, tiny_config  # noqa: E402
from rayssl.config import StorageConfig  # noqa: E402
from rayssl.data import storage  # noqa: E402
from rayssl.data.shards import write_shards  # noqa: E402
from rayssl.data.sources import load_source  # noqa: E402
from rayssl.train import checkpoints, ledger  # noqa: E402
from rayssl.train.launch import run_pretrain  # noqa: E402

EPOCHS, IMAGES = 6, 48


def run(name: str, endpoint: str, proxy: FaultProxy, *overrides: str) -> dict:
    cfg = tiny_config(
        "s3://bench-faults/shards",
        "s3://bench-faults/runs",
        name,
        f"storage.s3_endpoint={proxy.url}",
        "storage.s3_max_attempts=6",
        f"train.epochs={EPOCHS}",
        *overrides,
    )
    started = time.perf_counter()
    outcome = run_pretrain(cfg)
    wall = time.perf_counter() - started
    audit = ledger.audit(committed_ledger(outcome.checkpoint, StorageConfig(s3_endpoint=endpoint)), IMAGES)
    return {
        "faults": sum(proxy.faults.values()),
        "retries": sum(proxy.faults[k] for k in ("slowdown", "internal", "reset")),
        "lost": sum(max(0, -r["difference"]) for r in audit),
        "twice": sum(max(0, r["difference"]) for r in audit),
        "exactly_once": all(r["exactly_once"] for r in audit) and len(audit) == EPOCHS,
        "wall_s": wall,
    }


def outage(endpoint: str, proxy: FaultProxy) -> dict:
    """The store goes away after the first checkpoint: seconds until the run raises, and what it says."""
    cfg = tiny_config(
        "s3://bench-faults/shards",
        "s3://bench-faults/runs",
        "outage",
        f"storage.s3_endpoint={proxy.url}",
        "train.epochs=500",
        "train.max_failures=0",
    )
    down_at: list[float] = []

    def pull_the_plug() -> None:
        while not checkpoints.latest_checkpoint("s3://bench-faults/runs/outage", StorageConfig(s3_endpoint=endpoint)):
            time.sleep(0.2)
        proxy.down = True
        down_at.append(time.perf_counter())

    threading.Thread(target=pull_the_plug, daemon=True).start()
    try:
        run_pretrain(cfg)
    except storage.ObjectStoreError as exc:
        return {"seconds_to_error": time.perf_counter() - down_at[0], "error": str(exc)[:160], "faults": sum(proxy.faults.values())}
    raise RuntimeError("the run survived a permanent outage")


def main() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        write_shards(
            load_source("folder", str(make_image_folder(Path(tmp) / "raw"))),
            "s3://bench-faults/shards",
            rows_per_shard=16,
            storage_cfg=StorageConfig(s3_endpoint=endpoint),
        )
    ray.init(address="local", num_cpus=8, log_to_driver=False)
    rows = {}
    with FaultProxy(endpoint, fault_rate=0.0) as proxy:
        rows["fault-free (proxy, 0%)"] = run("clean", endpoint, proxy)
    with FaultProxy(endpoint, fault_rate=0.10, seed=0) as proxy:
        rows["10% faults (503, 500, reset, delay)"] = run("flaky", endpoint, proxy)
    with FaultProxy(endpoint, fault_rate=0.10, seed=1) as proxy, tempfile.TemporaryDirectory() as tmp:
        # rank 1 dies once at step 7 (rayssl.train.faults: the driver's environment reaches its workers through the WorkerSpec)
        os.environ["RAYSSL_FAULTS"] = json.dumps({"crash_rank": 1, "crash_at_step": 7, "crash_marker": f"{tmp}/crashed"})
        rows["10% faults + a worker crash in epoch 2"] = run("flaky_crash", endpoint, proxy)
        del os.environ["RAYSSL_FAULTS"]
    with FaultProxy(endpoint, fault_rate=0.0) as proxy:
        gone = outage(endpoint, proxy)
    ray.shutdown()
    server.stop()

    base = rows["fault-free (proxy, 0%)"]["wall_s"]
    print(f"\nNAT pretraining, {EPOCHS} epochs x {IMAGES} images, shards and checkpoints in moto S3 behind the fault proxy (2-core CPU):\n")
    print("| scenario | faults injected | retries | samples lost | trained twice | every epoch exactly once | wall time vs fault-free |")
    print("|---|---:|---:|---:|---:|:-:|---:|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['faults']} | {r['retries']} | {r['lost']} | {r['twice']} | {'yes' if r['exactly_once'] else 'NO'} | "
            f"{r['wall_s']:.0f} s ({r['wall_s'] / base:.2f}x) |"
        )
    print(
        f"| permanent outage after the first checkpoint | {gone['faults']} (all resets) | – | – | – | – | "
        f"error after {gone['seconds_to_error']:.0f} s: `{gone['error']}...` |"
    )


if __name__ == "__main__":
    main()
