"""The driver's fit() watchdog (rayssl.train.placement.release_if_fit_hangs), without Ray: it removes
the workers' placement group only once the worker loop said it was done and fit() has not
returned within the grace period."""

from __future__ import annotations

import threading
import time

from rayssl.config import StorageConfig
from rayssl.train import runs
from rayssl.train.placement import release_if_fit_hangs

DEADLINE_S = 10.0


def _watch(run_dir: str, started: float, grace_s: float) -> tuple[threading.Event, threading.Thread, list[str], threading.Event, list[int]]:
    """Start the watchdog with a recording release and a counting reader; returns (fit_returned,
    thread, released run dirs, released event, [heartbeat reads])."""
    fit_returned, released_event, released, reads = threading.Event(), threading.Event(), [], [0]

    def release(d: str, _: StorageConfig) -> None:
        released.append(d)
        released_event.set()

    def read(d: str, cfg: StorageConfig) -> dict | None:
        reads[0] += 1
        return runs.read_heartbeat(d, cfg)

    thread = threading.Thread(
        target=release_if_fit_hangs,
        args=(run_dir, StorageConfig(), fit_returned, started),
        kwargs={"grace_s": grace_s, "poll_s": 0.01, "read": read, "release": release},
        daemon=True,
    )
    thread.start()
    return fit_returned, thread, released, released_event, reads


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.01)


def test_a_fit_that_outlives_its_finished_loop_loses_its_placement_group_once(tmp_path):
    run_dir = str(tmp_path / "run")
    runs.write_heartbeat(run_dir, StorageConfig(), 100, 3, "ab" * 18, loop_done=True)
    fit_returned, thread, released, released_event, _ = _watch(run_dir, started=time.time() - 1, grace_s=0.05)
    assert released_event.wait(DEADLINE_S)
    thread.join(DEADLINE_S)
    assert released == [run_dir] and not thread.is_alive()  # once, then the watchdog is gone


def test_no_release_while_the_loop_runs_or_for_an_earlier_attempts_heartbeat(tmp_path):
    run_dir = str(tmp_path / "run")
    runs.write_heartbeat(run_dir, StorageConfig(), 100, 3, "ab" * 18, loop_done=True)  # an earlier attempt's
    fit_returned, thread, released, _, reads = _watch(run_dir, started=time.time() + 60, grace_s=0.0)
    _wait_for(lambda: reads[0] >= 5, "the watchdog to read the stale heartbeat")
    runs.write_heartbeat(run_dir, StorageConfig(), 10, 0, "ab" * 18)  # this attempt, still training
    reads[0] = 0
    _wait_for(lambda: reads[0] >= 5, "the watchdog to read the live heartbeat")
    fit_returned.set()  # fit() returns normally: the watchdog ends without touching anything
    thread.join(DEADLINE_S)
    assert released == [] and not thread.is_alive()
