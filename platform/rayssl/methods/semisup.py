"""The unlabelled-image terms of few-label fine-tuning (pure torch): entropy and FixMatch.

The reconstruction terms live in rayssl.methods.inversion; the fine-tuning step adds them up.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sigmoid_rampup(step: int, length: int) -> float:
    """Weight multiplier at `step` of a ramp over `length` steps: exp(-5 (1 - t)^2), t = step / length
    clipped to [0, 1] (Laine & Aila, "Temporal Ensembling", arXiv 1610.02242): 0.0067 at the start,
    1 from `length` on; length 0 means no ramp (1 throughout)."""
    if length <= 0:
        return 1.0
    t = min(max(step, 0), length) / length
    return math.exp(-5.0 * (1.0 - t) ** 2)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the prediction entropy -sum_k p_k log p_k (nats). logits [B, K]."""
    if not len(logits):
        return logits.sum() * 0
    log_p = logits.log_softmax(dim=1)
    return -(log_p.exp() * log_p).sum(dim=1).mean()


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
