"""FixMatch (Sohn et al. 2020, arXiv 2001.07685): cross-entropy of each unlabelled image's strong
view against its weak view's prediction where that is confident (config section `fixmatch`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from rayssl.config import AugmentConfig, FinetuneConfig, SweepConfig
from rayssl.methods.base import ClassifierForward, FinetuneBatch, FinetuneObjective
from rayssl.methods.sweep_rows import SweepRow, TrialSample, trial_with


def fixmatch_loss(
    weak_logits: torch.Tensor, strong_logits: torch.Tensor, threshold: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """FixMatch (Sohn et al. 2020): CE of the strong view against the weak view's argmax, on rows
    whose weak confidence is >= the threshold (one for all, or [K]: of the row's pseudo-label's class),
    averaged over all rows (masked rows count as zero).

    weak_logits, strong_logits [B, K] (no gradient flows through the weak view).
    Returns (loss, number of rows above the threshold).
    """
    probs = weak_logits.detach().softmax(dim=1)
    confidence, pseudo = probs.max(dim=1)
    mask = (confidence >= (threshold[pseudo] if isinstance(threshold, torch.Tensor) else threshold)).float()
    if not len(mask):
        return strong_logits.sum() * 0, mask.sum()
    return (F.cross_entropy(strong_logits, pseudo, reduction="none") * mask).mean(), mask.sum()


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """x summed over the workers of the training process group (x itself outside one)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


class SelfAdaptiveThreshold:
    """FreeMatch's self-adaptive thresholds (Wang et al. 2023, arXiv 2205.07246, eqs. 6-8): moving
    averages, with `momentum` per update, of the mean top confidence (tau, from 1 / K) and of the mean
    probability of each class (p, from 1 / K each) of the weak views' predictions; class c's threshold
    is tau * p[c] / max(p). The means are over every worker's batch (as FreeMatch's all-gather), so
    every worker holds the same thresholds and rank 0's checkpoint restores them all."""

    def __init__(self, num_classes: int, momentum: float, reduce: Callable[[torch.Tensor], torch.Tensor] = all_reduce_sum) -> None:
        self.momentum, self.reduce = momentum, reduce
        self.confidence = torch.tensor(1.0 / num_classes)
        self.class_probability = torch.full((num_classes,), 1.0 / num_classes)

    def update(self, weak_logits: torch.Tensor) -> None:
        """weak_logits [B, K] of this worker's unlabelled images this step (B may be 0). Every worker
        must call it every step: the sums are reduced across them."""
        probs = weak_logits.detach().float().softmax(dim=1)
        # [top confidence sum, class probability sums (K), rows] over every worker
        sums = self.reduce(torch.cat([probs.max(dim=1).values.sum()[None], probs.sum(dim=0), probs.new_tensor([len(probs)])]))
        rows, m = sums[-1], self.momentum
        if rows == 0:
            return
        self.confidence = m * self.confidence.to(probs.device) + (1 - m) * sums[0] / rows
        self.class_probability = m * self.class_probability.to(probs.device) + (1 - m) * sums[1:-1] / rows

    def thresholds(self) -> torch.Tensor:
        """[K]: each class's threshold."""
        return self.confidence * self.class_probability / self.class_probability.max()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"confidence": self.confidence.cpu(), "class_probability": self.class_probability.cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.confidence, self.class_probability = state["confidence"], state["class_probability"]


class FixMatch(FinetuneObjective):
    """weight * FixMatch(weak logits of the unlabelled images -> their strong views); the strong views
    come from the Ray Data CPU stage (`strong_view`)."""

    title = "FixMatch"
    section = "fixmatch"

    def __init__(self, cfg: FinetuneConfig, net: nn.Module) -> None:
        super().__init__(cfg, net)
        self.cfg = cfg.fixmatch
        adaptive = self.cfg.threshold == "self_adaptive"
        self.adaptive = SelfAdaptiveThreshold(cfg.semisup.num_classes, self.cfg.threshold_momentum) if adaptive else None

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
        weak_logits = out.logits[out.n_labelled :]
        threshold: float | torch.Tensor = self.cfg.confidence
        if self.adaptive is not None:
            self.adaptive.update(weak_logits)  # FreeMatch updates before it masks; every worker, even with no rows
            threshold = self.adaptive.thresholds()
        consistency, confident = fixmatch_loss(weak_logits, strong_logits, threshold)
        return [self.cfg.weight * consistency], {"pseudo_labelled_fraction": confident * batch.rows / max(len(batch.unlabelled), 1)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.adaptive.state_dict() if self.adaptive is not None else {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.adaptive is not None and state:
            self.adaptive.load_state_dict(state)

    @staticmethod
    def sweep_rows(sweep: SweepConfig) -> list[SweepRow]:
        return [SweepRow("fixmatch", "+ FixMatch", _with_fixmatch)] if sweep.fixmatch else []


def _with_fixmatch(base: FinetuneConfig, sample: TrialSample) -> FinetuneConfig:
    """FixMatch at the base config's weight (or 1), no inversion terms."""
    return trial_with(base, fixmatch=base.fixmatch.weight or 1.0)
