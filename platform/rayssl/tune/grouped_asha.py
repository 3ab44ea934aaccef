"""ASHA run separately inside each group of comparable trials.

One ASHA over the whole label-efficiency grid would compare a 1-label trial with a 100-label
one at the same rung and stop every low-budget trial at its grace period: the curve would then
show under-trained low budgets instead of what few labels can do. Trials are only comparable
within one (budget, variant) cell, so each cell gets its own `AsyncHyperBandScheduler`; Ray's
ASHA does all the rung bookkeeping, this class only routes trials to it.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler


class GroupedASHAScheduler(FIFOScheduler):
    """One ASHA per value of `tuple(trial.config[k] for k in group_by)`; FIFO trial order.

    asha_kwargs go to every `AsyncHyperBandScheduler` (metric, mode, max_t, grace_period, ...).
    The scheduler is pickled into Tune's experiment state, so it holds only plain data.
    """

    def __init__(self, group_by: tuple[str, ...], **asha_kwargs: Any) -> None:
        super().__init__()
        self._group_by = tuple(group_by)
        self._asha_kwargs = asha_kwargs
        self._metric = asha_kwargs.get("metric")
        self._mode = asha_kwargs.get("mode")
        self._groups: dict[Hashable, AsyncHyperBandScheduler] = {}

    def group_of(self, trial: Trial) -> Hashable:
        return tuple(_hashable(trial.config[key]) for key in self._group_by)

    def _scheduler(self, trial: Trial) -> AsyncHyperBandScheduler:
        key = self.group_of(trial)
        if key not in self._groups:
            self._groups[key] = AsyncHyperBandScheduler(**self._asha_kwargs)
        return self._groups[key]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        # Same contract as ASHA: refuse a second metric/mode, otherwise adopt them for new groups.
        if (self._metric and metric) or (self._mode and mode):
            return False
        if metric:
            self._asha_kwargs["metric"] = self._metric = metric
        if mode:
            self._asha_kwargs["mode"] = self._mode = mode
        return True

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._scheduler(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        return self._scheduler(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self._scheduler(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._scheduler(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        stopped = sum(s._num_stopped for s in self._groups.values())
        return f"Using ASHA per group of {self._group_by}: {len(self._groups)} groups, num_stopped={stopped}"


def _hashable(value: Any) -> Hashable:
    return tuple(value) if isinstance(value, list) else value
