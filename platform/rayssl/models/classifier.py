"""A backbone with a linear classification head, for fine-tuning."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """[B, C, H, W] -> logits [B, num_classes]."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def layers(self) -> list[nn.Module] | None:
        """The network as a chain of layers whose composition is forward (backbone blocks, then the
        head), for the per-layer inversion loss; None when the backbone is not a chain of blocks."""
        blocks = getattr(self.backbone, "blocks", None)
        return None if blocks is None else [*blocks, self.head]
