"""GroupedASHAScheduler: trials are stopped only against trials of their own group."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from rayssl.tune.grouped_asha import GroupedASHAScheduler


def trial(trial_id: str, budget: int, variant: str = "v") -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={"budget": budget, "variant": variant})


def scheduler(group_by: tuple[str, ...] = ("budget", "variant")) -> GroupedASHAScheduler:
    return GroupedASHAScheduler(group_by=group_by, metric="val_acc", mode="max", max_t=4, grace_period=1)


def report(s: GroupedASHAScheduler, t: SimpleNamespace, it: int, acc: float) -> str:
    return s.on_trial_result(None, t, {"training_iteration": it, "val_acc": acc})


def run_rung(s: GroupedASHAScheduler) -> str:
    """Three 100-label trials then one 1-label trial reach rung 1; the 1-label trial's decision."""
    many = [trial(f"hi{i}", 100) for i in range(3)]
    few = trial("lo", 1)
    for t in [*many, few]:
        s.on_trial_add(None, t)
    for i, t in enumerate(many):
        assert report(s, t, 1, 0.95 + i / 100) == TrialScheduler.CONTINUE
    return report(s, few, 1, 0.30)


def test_low_budget_trial_is_not_stopped_by_high_budget_trials():
    # Alone in its group, the 1-label trial continues though it is far below the 100-label ones;
    # one ASHA over all trials (no grouping) would have stopped it.
    assert run_rung(scheduler()) == TrialScheduler.CONTINUE
    assert run_rung(scheduler(group_by=())) == TrialScheduler.STOP


def test_weak_trial_is_stopped_within_its_group():
    s = scheduler()
    good, weak = trial("good", 5), trial("weak", 5)
    s.on_trial_add(None, good)
    s.on_trial_add(None, weak)
    assert report(s, good, 1, 0.80) == TrialScheduler.CONTINUE
    assert report(s, weak, 1, 0.50) == TrialScheduler.STOP
    assert "2 groups" not in s.debug_string() and "num_stopped=1" in s.debug_string()


def test_scheduler_pickles_for_tune_experiment_state():
    s = scheduler()
    s.on_trial_add(None, trial("a", 1))
    restored = pickle.loads(pickle.dumps(s))
    assert restored.group_of(trial("b", 1)) == (1, "v")
    assert report(restored, trial("a", 1), 1, 0.5) == TrialScheduler.CONTINUE
