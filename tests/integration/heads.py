"""Ray heads of the tests' own: `ray start --head --block` on 127.0.0.1 with token auth, every
port picked free (another Ray on the machine, such as the session's, holds the defaults), and
stopped by signalling its process group: `ray stop` would kill every Ray instance on the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Head:
    dashboard: str  # http://127.0.0.1:PORT, the job API
    gcs: str  # 127.0.0.1:PORT
    env: dict  # what a client needs: RAY_AUTH_MODE=token and the project's PATH
    temp_dir: str


@contextmanager
def ray_head(*extra_args: str, env: dict | None = None, gcs_port: int | None = None) -> Iterator[Head]:
    # Ray's unix sockets live under --temp-dir and must stay under ~107 characters.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    # Our own token, from a file as in the cluster YAMLs: never the user's ~/.ray/auth_token.
    token_file = Path(temp_dir) / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    # The job entrypoint runs `python` from the head's PATH: the project's virtualenv, as when activated.
    head_env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_file),
        "PATH": f"{BIN}:{os.environ['PATH']}",
        **(env or {}),
    }
    gcs, dashboard = gcs_port or free_port(), free_port()
    start = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        *extra_args,
    ]
    log = open(Path(temp_dir) / "head.log", "wb")
    proc = subprocess.Popen(start, env=head_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head = Head(f"http://127.0.0.1:{dashboard}", f"127.0.0.1:{gcs}", head_env, temp_dir)
    try:
        wait_for_job_api(head, proc)
        yield head
    finally:
        stop_process_group(proc)
        kill_leftovers(temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def stop_process_group(proc: subprocess.Popen, timeout_s: float = 15) -> None:
    # --block: on SIGTERM the head shuts its own processes down; what is still up after
    # timeout_s is killed (and kill_leftovers gets the autoscaler's nodes).
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def kill_leftovers(temp_dir: str, timeout_s: float = 30) -> None:
    """SIGKILL every process still belonging to the Ray whose temp dir is `temp_dir`, and wait until they are gone.

    Ray's actors rename themselves ("ray::RayTrainWorker..."), which overwrites their command line, so
    they are found by their environment too (they inherit RAY_TMPDIR or the head's command line). An
    actor that outlives its raylet by a second can still finish a training round and write a checkpoint.
    """
    needle = temp_dir.encode()
    deadline = time.monotonic() + timeout_s
    while True:
        alive = []
        for pid_dir in Path("/proc").glob("[0-9]*"):
            pid = int(pid_dir.name)
            if pid == os.getpid():
                continue
            try:
                if needle in (pid_dir / "cmdline").read_bytes() or needle in (pid_dir / "environ").read_bytes():
                    if (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                        continue  # a zombie is dead already; its parent reaps it
                    os.kill(pid, signal.SIGKILL)
                    alive.append(pid)
            except (OSError, ValueError):
                continue
        if not alive:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes of the Ray under {temp_dir} survived SIGKILL for {timeout_s}s: {alive}")
        time.sleep(0.1)


def wait_for_job_api(head: Head, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    """Until `ray job list` answers (the job agent may still be starting: see submit)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start --head exited with {proc.returncode}: {(Path(head.temp_dir) / 'head.log').read_text()[-2000:]}")
        probe = subprocess.run(
            [str(BIN / "ray"), "job", "list", f"--address={head.dashboard}"], env=head.env, capture_output=True, timeout=60
        )
        if probe.returncode == 0:
            return
        time.sleep(2)
    raise TimeoutError(f"the job API at {head.dashboard} did not come up in {timeout_s}s")


def submit(head: Head, *entrypoint: str, submission_id: str | None = None, timeout_s: float = 600) -> subprocess.CompletedProcess:
    """`ray job submit` from the repository root with the project's runtime env; waits for the end.

    On a loaded machine the head's job agent can come up well after the job API answers; the API
    then refuses with "No available agent", which Ray says to retry.
    """
    cmd = [
        str(BIN / "ray"),
        "job",
        "submit",
        f"--address={head.dashboard}",
        "--working-dir=.",
        "--runtime-env=jobs/runtime_env.yaml",
        *([f"--submission-id={submission_id}"] if submission_id else []),
        "--",
        *entrypoint,
    ]
    deadline = time.monotonic() + 180
    while True:
        proc = subprocess.run(cmd, cwd=REPO, env=head.env, capture_output=True, text=True, timeout=timeout_s)
        if "No available agent" not in proc.stderr or time.monotonic() > deadline:
            return proc
        time.sleep(5)


def job_status(head: Head, submission_id: str) -> str:
    """`ray job status` output for one job."""
    proc = subprocess.run(
        [str(BIN / "ray"), "job", "status", f"--address={head.dashboard}", submission_id],
        env=head.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.stdout + proc.stderr
