"""FixMatch (Sohn et al. 2020, arXiv 2001.07685): cross-entropy of each unlabelled image's strong
view against its weak view's prediction where that is confident (config section `fixmatch`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rayssl.config import AugmentConfig, FinetuneConfig, SweepConfig
from rayssl.methods.base import ClassifierForward, FinetuneBatch, FinetuneObjective
from rayssl.methods.sweep_rows import SweepRow, TrialSample, trial_with


def fixmatch_loss(weak_logits: torch.Tensor, strong_logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """FixMatch (Sohn et al. 2020): CE of the strong view against the weak view's argmax, on rows
    whose weak confidence is >= threshold, averaged over all rows (masked rows count as zero).

    weak_logits, strong_logits [B, K] (no gradient flows through the weak view).
    Returns (loss, number of rows above the threshold).
    """
    probs = weak_logits.detach().softmax(dim=1)
    confidence, pseudo = probs.max(dim=1)
    mask = (confidence >= threshold).float()
    if not len(mask):
        return strong_logits.sum() * 0, mask.sum()
    return (F.cross_entropy(strong_logits, pseudo, reduction="none") * mask).mean(), mask.sum()


class FixMatch(FinetuneObjective):
    """weight * FixMatch(weak logits of the unlabelled images -> their strong views); the strong views
    come from the Ray Data CPU stage (`strong_view`)."""

    title = "FixMatch"
    section = "fixmatch"

    def __init__(self, cfg: FinetuneConfig, net: nn.Module) -> None:
        super().__init__(cfg, net)
        self.cfg = cfg.fixmatch

    @staticmethod
    def active(cfg: FinetuneConfig) -> bool:
        return cfg.method == "classifier" and cfg.fixmatch.weight > 0

    @staticmethod
    def reads_unlabelled(cfg: FinetuneConfig) -> bool:
        return True

    @staticmethod
    def strong_view(cfg: FinetuneConfig) -> AugmentConfig:
        return cfg.fixmatch.strong_augment

    def loss_terms(
        self, model: nn.Module, batch: FinetuneBatch, out: ClassifierForward | None
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        assert out is not None and batch.strong is not None
        strong_logits = model(batch.strong)
        consistency, confident = fixmatch_loss(out.logits[out.n_labelled :], strong_logits, self.cfg.confidence)
        return [self.cfg.weight * consistency], {"pseudo_labelled_fraction": confident * batch.rows / max(len(batch.unlabelled), 1)}

    @staticmethod
    def sweep_rows(sweep: SweepConfig) -> list[SweepRow]:
        return [SweepRow("fixmatch", "+ FixMatch", _with_fixmatch)] if sweep.fixmatch else []


def _with_fixmatch(base: FinetuneConfig, sample: TrialSample) -> FinetuneConfig:
    """FixMatch at the base config's weight (or 1), no inversion terms."""
    return trial_with(base, fixmatch=base.fixmatch.weight or 1.0)
