"""What a fine-tuning method contributes to `rayssl sweep`: its rows of the label-efficiency table.

Each method module lists its rows (`sweep_rows(sweep_config)`); rayssl.tune.sweep grids over them and
turns each trial's sampled values into the trial's config with the row's `configure`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from rayssl.config import FinetuneConfig


@dataclass(frozen=True)
class TrialSample:
    """What Ray Tune drew for one trial. Every trial draws every weight (a row reads the ones it
    uses), so adding a row to a sweep never changes the other rows' draws."""

    alpha: float  # inversion.alpha
    beta: float  # inversion.beta
    ivae_unlabelled: float  # ivae.unlabelled
    ivae_label_only: float  # ivae.label_only


@dataclass(frozen=True)
class SweepRow:
    key: str  # what Tune's grid holds, e.g. "inversion" or "pretrained:simclr"
    label: str  # the row of the table, e.g. "+ inversion loss"
    configure: Callable[[FinetuneConfig, TrialSample], FinetuneConfig]  # base config -> this row's trial config
    pretrained: bool = False  # starts from a pretraining run: listed after the rows trained from scratch
    # What the sweep's table records of a selected trial beyond alpha, beta, consistency and lr.
    reports: Callable[[FinetuneConfig], dict[str, float]] = lambda trial: {}


def trial_with(
    base: FinetuneConfig, *, alpha: float = 0.0, beta: float = 0.0, fixmatch: float = 0.0, init: str | None = None
) -> FinetuneConfig:
    """The base config as a classifier run with exactly these loss weights (every other term off), from
    `init` when given (a pretrained row), else from the base's own finetune.init (none: from scratch)."""
    return dataclasses.replace(
        base,
        method="classifier",
        init=base.init if init is None else init,
        inversion=dataclasses.replace(base.inversion, alpha=alpha, beta=beta),
        fixmatch=dataclasses.replace(base.fixmatch, weight=fixmatch),
    )
