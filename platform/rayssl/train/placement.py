"""The placement group of a run's Ray Train workers, released by the driver (rayssl.train.launch)
when Ray Train leaves it: after fit() returned or raised, and by a watchdog thread while fit() has
not returned long after the worker loop ended. Rank 0 names the group, and says when the loop is
done, in its heartbeat (rayssl.train.runs)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, remove_placement_group

from rayssl.config import StorageConfig
from rayssl.logs import get_logger
from rayssl.train import runs

# How long fit() may take to return after the worker loop ended before its placement group is
# removed. Ray Train's controller normally returns within seconds; the grace is generous so that a
# loaded machine's slow shutdown is never cut short.
FIT_EXIT_GRACE_S = 120.0


@contextmanager
def released_around_fit(run_dir: str, storage_cfg: StorageConfig, run_name: str) -> Iterator[None]:
    """Around a run's fit(): the watchdog (release_if_fit_hangs) while it runs, and
    release_placement_group once it has returned or raised."""
    fit_returned = threading.Event()
    threading.Thread(
        target=release_if_fit_hangs, args=(run_dir, storage_cfg, fit_returned, time.time()), daemon=True, name=f"fit-watchdog-{run_name}"
    ).start()
    try:
        yield
    finally:
        fit_returned.set()
        release_placement_group(run_dir, storage_cfg)


def release_placement_group(run_dir: str, storage_cfg: StorageConfig) -> None:
    """After a run's fit() returned or raised: remove its workers' placement group if Ray Train left it.

    Seen in a 75-trial sweep on 2 overloaded cores: the Train controllers of finished trials exited
    without removing their workers' 1-CPU placement groups (the detached PlacementGroupCleaner,
    stopped by a graceful shutdown, did not either). 5 such groups held 5 of the 8 logical CPUs, so
    the next trials' Ray Data read tasks never got one and the trials sat at step 0. Rank 0 names
    the group in its heartbeat (rayssl.train.runs); the run is over here, so the group is unused.
    """
    try:
        group_id = (runs.read_heartbeat(run_dir, storage_cfg) or {}).get("placement_group")
        if not group_id:
            return
        group = PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id)))
        if ray.util.placement_group_table(group).get("state") in ("PENDING", "CREATED", "RESCHEDULING"):
            get_logger().warning("Ray Train left the placement group %s of run %s: removing it", group_id, run_dir)
            remove_placement_group(group)
    except Exception as exc:  # best effort, in a `finally`: it must never replace the run's own outcome or error
        get_logger().debug("placement group of %s not checked: %s", run_dir, exc)


def release_if_fit_hangs(
    run_dir: str,
    storage_cfg: StorageConfig,
    fit_returned: threading.Event,
    started: float,
    grace_s: float = FIT_EXIT_GRACE_S,
    poll_s: float = 15.0,
    read: Callable[[str, StorageConfig], dict[str, Any] | None] = runs.read_heartbeat,
    release: Callable[[str, StorageConfig], None] | None = None,
) -> None:
    """Watchdog thread of a run's fit(): if rank 0's heartbeat (written after `started`, a time.time())
    says the worker loop is done and fit() has still not returned `grace_s` later, remove the
    workers' placement group (release_placement_group), once.

    Seen in the MNIST sweep on 2 overloaded cores: in 3 trials fit() waited on its own leaked
    placement group and only returned once the group was removed by hand; release_placement_group
    after fit() cannot reach that case. Returns when fit() returns.
    """
    release = release or release_placement_group
    done_seen_at: float | None = None
    while not fit_returned.wait(poll_s):
        try:
            beat = read(run_dir, storage_cfg) or {}
        except Exception:  # a store hiccup: look again at the next poll
            continue
        if not beat.get("loop_done") or beat.get("updated", 0.0) < started:
            continue
        done_seen_at = done_seen_at if done_seen_at is not None else time.monotonic()
        if time.monotonic() - done_seen_at >= grace_s:
            get_logger().warning(
                "fit() of %s has not returned %.0f s after its worker loop ended: releasing its placement group", run_dir, grace_s
            )
            release(run_dir, storage_cfg)
            return
