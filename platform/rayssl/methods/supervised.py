"""Supervised fine-tuning: cross-entropy on the labelled images. Every classifier run has this
term; the sweep's baseline row ("supervised only") is this term alone."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from rayssl.config import FinetuneConfig, SweepConfig
from rayssl.methods.base import ClassifierForward, FinetuneBatch
from rayssl.methods.sweep_rows import SweepRow, TrialSample

SUPERVISED = "supervised only"


class Supervised:
    """CE(logits of the labelled images, their labels)."""

    standalone = False
    title = "supervised"  # in `rayssl runs`

    def __init__(self, cfg: FinetuneConfig, net: nn.Module) -> None:
        pass

    @staticmethod
    def active(cfg: FinetuneConfig) -> bool:
        return cfg.method == "classifier"

    @staticmethod
    def describe(cfg: FinetuneConfig) -> str:
        return "supervised (cross-entropy)"

    @staticmethod
    def reads_unlabelled(cfg: FinetuneConfig) -> bool:
        return False

    def forward(self, model: nn.Module, x: torch.Tensor, n_labelled: int) -> ClassifierForward | None:
        return None

    def loss_terms(
        self, model: nn.Module, batch: FinetuneBatch, out: ClassifierForward | None
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        assert out is not None
        ce = F.cross_entropy(out.logits[: out.n_labelled], batch.labels)
        return [ce], {"ce": ce.detach() * batch.rows}

    @staticmethod
    def sweep_rows(sweep: SweepConfig) -> list[SweepRow]:
        return [SweepRow("supervised", SUPERVISED, _supervised_only)]


def _supervised_only(base: FinetuneConfig, sample: TrialSample) -> FinetuneConfig:
    """The base config with every other term off: the classifier on its labels alone."""
    return dataclasses.replace(
        base,
        method="classifier",
        init=None,
        inversion=dataclasses.replace(base.inversion, alpha=0.0, beta=0.0),
        fixmatch=dataclasses.replace(base.fixmatch, weight=0.0),
    )
