"""Supervised fine-tuning: cross-entropy on the labelled images. Every classifier run has this
term; the sweep's baseline row ("supervised only") is this term alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rayssl.config import FinetuneConfig, SweepConfig
from rayssl.methods.base import ClassifierForward, FinetuneBatch, FinetuneObjective
from rayssl.methods.sweep_rows import SweepRow, TrialSample, trial_with

SUPERVISED = "supervised only"


class Supervised(FinetuneObjective):
    """CE(logits of the labelled images, their labels)."""

    title = "supervised"

    @staticmethod
    def active(cfg: FinetuneConfig) -> bool:
        return cfg.method == "classifier"

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
    return trial_with(base)
