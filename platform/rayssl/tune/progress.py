"""A sweep's live progress on the driver: trials done / running / pending and the best validation
accuracy so far, from Tune's own callback events (the trials themselves run off the console).

Counts come from the trials' statuses, not from counting events, so a restored sweep shows the
trials it finished before the interruption as done.
"""

from __future__ import annotations

from typing import Any

import ray.tune
from ray.tune.stopper import Stopper

from rayssl.console import ProgressDisplay


class SweepProgress(ray.tune.Callback):
    def __init__(self, total_trials: int) -> None:
        self.total = total_trials
        self.best_val: float | None = None
        self.display: ProgressDisplay | None = None

    def setup(self, stop: Stopper | None = None, num_samples: int | None = None, total_num_samples: int | None = None, **info: Any) -> None:
        self.display = ProgressDisplay("sweep", self.total, "trial")

    def _show(self, trials: list) -> None:
        if self.display is None:
            return
        status = [t.status for t in trials]
        done, failed, running = status.count("TERMINATED"), status.count("ERROR"), status.count("RUNNING")
        fields: dict[str, Any] = {"running": running, "pending": max(self.total - done - failed - running, 0)}
        if failed:
            fields["failed"] = failed
        if self.best_val is not None:
            fields["best val_acc"] = self.best_val
        self.display.update(done + failed, **fields)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._show(trials)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "val_acc" in result:
            self.best_val = max(self.best_val or 0.0, result["val_acc"])

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._show(trials)
        if self.display is not None:
            self.display.close()
            self.display = None
