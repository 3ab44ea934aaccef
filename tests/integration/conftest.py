"""Local Ray (and a moto S3 server on 127.0.0.1) shared by the integration tests."""

from __future__ import annotations

import os

import pytest

from helpers import SECRET_SENTINEL, make_image_folder, tiny_config
from rayssl.config import PretrainConfig
from rayssl.data.shards import write_shards
from rayssl.data.sources import load_source
from rayssl.train.launch import RunOutcome, run_pretrain


@pytest.fixture(scope="session")
def ray_local():
    # Dummy credentials must be in the environment before Ray starts, so that Ray Data tasks
    # and Train workers (children of this process's raylet) reach the moto server too.
    # The secret is a sentinel that test_pretrain_from_s3 looks for in every file the run leaves.
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY=SECRET_SENTINEL, AWS_DEFAULT_REGION="us-east-1")
    import ray

    ray.init(address="local", num_cpus=8)  # our own, never a cluster found in /tmp/ray
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def write_tiny_shards(root) -> str:
    """Shards of a tiny generated 2-class image folder under root: 48 train / 16 test images of 8x8."""
    out = root / "shards"
    write_shards(load_source("folder", str(make_image_folder(root / "raw"))), str(out), rows_per_shard=16)
    return str(out)


@pytest.fixture
def local_shards(tmp_path) -> str:
    """The tiny shards (write_tiny_shards), the test's own: it may break or extend them."""
    return write_tiny_shards(tmp_path)


@pytest.fixture(scope="session")
def nat_run(ray_local, tmp_path_factory) -> tuple[PretrainConfig, RunOutcome]:
    """One finished tiny NAT pretraining (2 epochs x 3 steps, 2 Train workers), run once per session
    for every test that only reads a pretrained run: each Train run costs ~40 s of actor start-up
    on 2 cores. Tests may evaluate it (eval.json) but must not train it further or change its files."""
    root = tmp_path_factory.mktemp("nat_run")
    cfg = tiny_config(write_tiny_shards(root), str(root / "runs"), "nat")
    return cfg, run_pretrain(cfg)
