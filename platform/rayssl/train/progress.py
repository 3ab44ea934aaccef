"""Live progress of a pretraining or fine-tuning run, shown on the driver.

Worker output stays off the driver's console (rayssl.console), so rank 0 posts its progress to a
small actor and the driver polls it:

    rank 0 --post.remote({step, epoch, loss, images_per_s, ...})--> ProgressBoard <--read-- driver thread --> ProgressDisplay

`post` is fire-and-forget (no round trip in the training loop); the board keeps only the latest
update, so a slow reader never queues anything.
"""

from __future__ import annotations

import threading
from typing import Any

import ray

from rayssl.console import ProgressDisplay

POLL_S = 1.0


class ProgressBoard:
    """The latest update rank 0 posted, merged; run as a Ray actor (_BOARD_ACTOR)."""

    def __init__(self) -> None:
        self.latest: dict[str, Any] = {}

    @ray.method
    def post(self, update: dict[str, Any]) -> None:
        self.latest = {**self.latest, **update}

    @ray.method
    def read(self) -> dict[str, Any]:
        return self.latest


# ray.remote called rather than used as a class decorator, and @ray.method (no options: nothing changes at run time)
# on the methods: mypy then knows the actor class and its methods' .remote.
_BOARD_ACTOR = ray.remote(num_cpus=0)(ProgressBoard)


class RunProgress:
    """Driver side, around `trainer.fit()`: `with RunProgress("pretrain nat", total_steps) as board:`
    passes `board` (an actor handle) to the workers and shows what rank 0 posts."""

    def __init__(self, desc: str, total_steps: int) -> None:
        self.desc, self.total_steps = desc, total_steps
        self._stop = threading.Event()

    def __enter__(self) -> Any:
        self.board = _BOARD_ACTOR.remote()
        self.display = ProgressDisplay(self.desc, self.total_steps, "step")
        self.thread = threading.Thread(target=self._poll, name="rayssl-progress", daemon=True)
        self.thread.start()
        return self.board

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            self._show()

    def _show(self) -> None:
        try:
            latest = ray.get(self.board.read.remote(), timeout=POLL_S * 5)
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError):
            return  # progress is best effort: never the reason a run fails
        if "step" in latest:
            self.display.update(latest["step"], **{k: v for k, v in latest.items() if k != "step"})

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self.thread.join()
        self._show()
        self.display.close()
        # The ignore: Ray types ActorClass.remote() as ActorHandle[T] | type[T] (ray.actor.ActorProxy, so that the
        # methods' .remote type-check), which ray.kill does not take; at run time it is the ActorHandle.
        ray.kill(self.board)  # type: ignore[arg-type]
