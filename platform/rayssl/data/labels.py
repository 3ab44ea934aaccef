"""Seeded, stratified labelled subsets of the labels that exist, and a leakage check (pure numpy).

Label budgets are drawn from the train split's labels only, however partial or imbalanced;
validation is a disjoint stratified draw from the same labels; the test split is never touched for
selection (when the shards have no labelled test split, a fixed stratified part of the labels is
held out as the test set before anything else is drawn).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class LeakageError(RuntimeError):
    pass


ALL = "all"
# The test hold-out (shards without a labelled test split) is drawn with its own seed, not the label
# draw's: every draw is then scored on the same images, and its mean +- std compares like with like.
TEST_HOLDOUT_SEED = 20_211


class LabelBudgetError(ValueError):
    """The labels that exist cannot give validation (and a held-out test) plus training for a class."""


@dataclass(frozen=True)
class LabelSplit:
    labelled: np.ndarray  # sample indices with labels used for training, [L]
    validation: np.ndarray  # disjoint indices for model selection, [V]
    test: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # held out from the labels, [T] (empty: the shards' test split)
    shortfall: dict[int, int] = field(default_factory=dict)  # class -> labelled images taken, where the budget asked for more


def held_out_count(labels_in_class: int, fraction: float, cap: int | None = None) -> int:
    """A stratified hold-out's size for one class: round(fraction x n), at least 1, at most `cap`."""
    return min(cap if cap is not None else labels_in_class, max(1, round(fraction * labels_in_class)))


def draw_labels(
    labels: np.ndarray,
    per_class: int | str,
    val_per_class: int,
    val_fraction: float,
    seed: int,
    classes: list[int] | None = None,
    test_fraction: float = 0.0,
    names: list[str] | None = None,
) -> LabelSplit:
    """Seeded labelled, validation (and test) indices per class, disjoint, from the labels that exist.

    labels: [N] int64 class of each train-split sample (index = position), -1 where unlabelled.
    per_class: a budget (a class with fewer labels gives what it has: `shortfall`) or "all".
    Validation takes held_out_count(n, val_fraction, val_per_class) of a class's n labels, before any
    budget, so budgets nest: with the same seed a larger budget (and "all") extends a smaller one.
    test_fraction > 0 first holds out that fraction of each class (seeded by TEST_HOLDOUT_SEED).
    classes: draw from these classes only (None or empty: every class present). names: class names for messages.
    """
    budget = None if per_class == ALL else int(per_class)  # None: every label
    rng, test_rng = np.random.default_rng(seed), np.random.default_rng(TEST_HOLDOUT_SEED)
    labelled, validation, test, shortfall = [], [], [], {}
    present = np.unique(labels[labels >= 0])
    for c in present[np.isin(present, classes)] if classes else present:
        members = np.flatnonzero(labels == c)
        if test_fraction > 0:
            shuffled = test_rng.permutation(members)
            cut = held_out_count(len(members), test_fraction) if len(members) >= 3 else 0
            test.append(shuffled[:cut])
            members = np.sort(shuffled[cut:])
        if len(members) < 2:
            held = " after the test hold-out" if test_fraction > 0 else ""
            name = repr(names[c]) if names and c < len(names) else c
            raise LabelBudgetError(f"class {name} has {len(members)} label(s){held}: validation needs one and training another")
        members = rng.permutation(members)
        n_val = held_out_count(len(members), val_fraction, val_per_class)
        validation.append(members[:n_val])
        take = members[n_val:] if budget is None else members[n_val : n_val + budget]
        if budget is not None and len(take) < budget:
            shortfall[int(c)] = len(take)
        labelled.append(take)
    empty = np.zeros(0, np.int64)
    return LabelSplit(
        np.sort(np.concatenate(labelled or [empty])),
        np.sort(np.concatenate(validation or [empty])),
        np.sort(np.concatenate(test or [empty])),
        shortfall,
    )


def check_no_leakage(split_ids: dict[str, set[str]]) -> None:
    """Fail loudly if any sample id is in two of the given sets (e.g. labelled, validation, test)."""
    names = sorted(split_ids)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = split_ids[a] & split_ids[b]
            if shared:
                example = sorted(shared)[:3]
                raise LeakageError(f"{len(shared)} sample ids are in both {a!r} and {b!r}, e.g. {example}")
