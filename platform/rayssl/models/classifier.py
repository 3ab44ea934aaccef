"""A backbone with a linear head: the fine-tuning classifier, and the base of other heads on a backbone."""

from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    """[B, C, H, W] -> backbone features [B, feature_dim] -> one linear layer -> [B, out_dim].

    Its parameters are `backbone.*` and `head.*`: the names in every checkpoint of a model built on it."""

    def __init__(self, backbone: nn.Module, feature_dim: int, out_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class Classifier(LinearHead):
    """[B, C, H, W] -> logits [B, num_classes]."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__(backbone, feature_dim, num_classes)

    def layers(self) -> list[nn.Module] | None:
        """The network as a chain of layers whose composition is forward (backbone blocks, then the
        head), for the per-layer inversion loss; None when the backbone is not a chain of blocks."""
        blocks = getattr(self.backbone, "blocks", None)
        return None if blocks is None else [*blocks, self.head]
