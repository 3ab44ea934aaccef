"""Fault drills: a worker that dies at a step, a loss that turns NaN, a validation accuracy a scheduler
must stop on. Not a config section: tests and drills set them in the driver's environment,

    RAYSSL_FAULTS='{"crash_rank": 1, "crash_at_step": 4, "crash_marker": "/tmp/crashed"}' rayssl pretrain ...

and the driver hands them to its workers in the WorkerSpec (a sweep hands its own to every trial).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from rayssl.config import ConfigError
from rayssl.logs import get_logger

ENVIRONMENT_VARIABLE = "RAYSSL_FAULTS"


@dataclass(frozen=True)
class FaultPlan:
    """Every fault is off by default."""

    crash_rank: int = -1  # this rank calls os._exit(1) once at crash_at_step ...
    crash_at_step: int = -1
    crash_marker: str = ""  # ... unless this local file exists (it is created before the crash)
    nan_at_step: int = -1  # the loss becomes NaN at this global step
    # Fine-tuning with optim.lr below this reports val_acc -1 (the true accuracy stays in the logs): a drill
    # that hands an early-stopping scheduler a certain loser, since real accuracies on a tiny validation set tie.
    sink_val_acc_below_lr: float = 0.0

    def crash_if_due(self, rank: int, global_step: int) -> None:
        """This rank dies once at crash_at_step, like a lost node would."""
        due = rank == self.crash_rank and global_step == self.crash_at_step
        if due and self.crash_marker and not os.path.exists(self.crash_marker):
            Path(self.crash_marker).touch()
            get_logger(0).warning("fault injection: rank %d exits at step %d", rank, global_step)
            os._exit(1)


def from_environment() -> FaultPlan:
    """The plan in RAYSSL_FAULTS (a JSON object of FaultPlan's fields), or no fault at all."""
    text = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if not text:
        return FaultPlan()
    try:
        fields = json.loads(text)
        return FaultPlan(**fields)
    except (json.JSONDecodeError, TypeError) as exc:
        names = ", ".join(f.name for f in dataclasses.fields(FaultPlan))
        raise ConfigError(f"{ENVIRONMENT_VARIABLE}: expected a JSON object with keys among {names}, got {text!r} ({exc})") from None
