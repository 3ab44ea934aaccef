"""An object store that is gone or silent: a one-line error naming the endpoint and the object,
within the configured retries and timeouts (StorageConfig), never a hang."""

from __future__ import annotations

import socket
import threading

import pytest

from rayssl import cli
from rayssl.config import StorageConfig
from rayssl.data import storage


@pytest.fixture(autouse=True)
def dummy_credentials(monkeypatch):
    # Without credentials the AWS SDK would first ask the instance-metadata endpoint.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture
def closed_endpoint() -> str:
    """http://127.0.0.1:PORT where nothing listens (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def silent_endpoint():
    """http://127.0.0.1:PORT that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    server.close()
    for conn in held:
        conn.close()


def test_silent_store_fails_after_its_retries_naming_endpoint_and_key(silent_endpoint):
    cfg = StorageConfig(s3_endpoint=silent_endpoint, s3_connect_timeout_s=1, s3_request_timeout_s=1, s3_max_attempts=2)
    with pytest.raises(storage.ObjectStoreError) as err:
        storage.read_bytes("s3://bucket/runs/x/config.yaml", cfg)
    assert silent_endpoint in str(err.value) and "s3://bucket/runs/x/config.yaml" in str(err.value) and "up to 2 attempts" in str(err.value)


def test_missing_object_is_still_file_not_found_locally(tmp_path):
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(str(tmp_path / "absent"))


@pytest.mark.parametrize("command", [
    ["shards", "validate", "s3://bucket/shards/mnist"],
    ["pretrain", "--set", "data.shards=s3://bucket/shards/mnist", "--set", "run.storage_path=s3://bucket/runs"],
])
def test_command_against_a_dead_endpoint_exits_with_one_line(closed_endpoint, capsys, command):
    flag = ["--s3-endpoint", closed_endpoint] if command[0] == "shards" else ["--set", f"storage.s3_endpoint={closed_endpoint}"]
    assert cli.main([*command, *flag]) != 0
    err = capsys.readouterr().err
    assert closed_endpoint in err and "s3://bucket/shards/mnist/manifest.json" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
