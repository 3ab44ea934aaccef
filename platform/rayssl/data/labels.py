"""Seeded, class-balanced labelled subsets and a leakage check (pure numpy).

Label budgets are drawn from the train split only; validation is a disjoint class-balanced
draw from the same split; the test split is never touched for selection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class LeakageError(RuntimeError):
    pass


@dataclass(frozen=True)
class LabelSplit:
    labelled: np.ndarray  # sample indices with labels used for training, [k * classes]
    validation: np.ndarray  # disjoint indices for model selection, [val_per_class * classes]


def balanced_subsets(labels: np.ndarray, per_class: int, val_per_class: int, seed: int, classes: list[int] | None = None) -> LabelSplit:
    """Draw `per_class` labelled and `val_per_class` validation indices per class, disjoint.

    labels: [N] int64 class of each train-split sample (index = position). The draw depends only
    on (labels, seed): a larger budget with the same seed extends a smaller one, so budgets nest.
    classes: draw from these classes only (None or empty: every class present).
    """
    rng = np.random.default_rng(seed)
    labelled, validation = [], []
    present = np.unique(labels[labels >= 0])
    for c in present[np.isin(present, classes)] if classes else present:
        members = rng.permutation(np.flatnonzero(labels == c))
        if len(members) < per_class + val_per_class:
            raise ValueError(f"class {c} has {len(members)} samples, fewer than {per_class} labelled + {val_per_class} validation")
        validation.append(members[:val_per_class])
        labelled.append(members[val_per_class : val_per_class + per_class])
    return LabelSplit(np.sort(np.concatenate(labelled)), np.sort(np.concatenate(validation)))


def check_no_leakage(split_ids: dict[str, set[str]]) -> None:
    """Fail loudly if any sample id is in two of the given sets (e.g. labelled, validation, test)."""
    names = sorted(split_ids)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = split_ids[a] & split_ids[b]
            if shared:
                example = sorted(shared)[:3]
                raise LeakageError(f"{len(shared)} sample ids are in both {a!r} and {b!r}, e.g. {example}")
