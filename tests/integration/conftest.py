"""Local Ray (and a moto S3 server on 127.0.0.1) shared by the integration tests."""

from __future__ import annotations

import os

import pytest
from helpers import SECRET_SENTINEL, make_image_folder

from rayssl.data.shards import write_shards
from rayssl.data.sources import load_source


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


@pytest.fixture
def local_shards(tmp_path) -> str:
    """Shards of a tiny generated 2-class image folder: 48 train / 16 test images of 8x8."""
    out = tmp_path / "shards"
    write_shards(load_source("folder", str(make_image_folder(tmp_path / "raw"))), str(out), rows_per_shard=16)
    return str(out)
