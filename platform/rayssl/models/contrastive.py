"""Models of the contrastive methods: a backbone + SimCLR's projection head, and a masked
autoencoder whose pooled visible-patch encoding is also projected for a contrastive loss."""

from __future__ import annotations

import torch
from torch import nn

from rayssl.models.mae import MaskedAutoencoder


def projection_head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """SimCLR's 2-layer MLP g(h) = W2 ReLU(BN(W1 h)); the loss reads g(h), probes and fine-tuning read h."""
    return nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


class ContrastiveNet(nn.Module):
    """forward(images [N, C, H, W]) -> projections [N, out_dim]."""

    def __init__(self, backbone: nn.Module, feature_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projection_head(feature_dim, hidden, out_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(images))


class MaskedContrastiveAutoencoder(nn.Module):
    """A masked autoencoder whose encoder also feeds a contrastive projection (as in CAN, Mishra et
    al. 2022, arXiv 2210.16870): one forward pass of the masked views serves both losses.

    forward(images [N, C, H, W]) -> (pred [N, L, patch*patch*C], mask [N, L] with 1 = masked,
    projections [N, out_dim] of the pooled visible-patch encodings).
    """

    def __init__(self, mae: MaskedAutoencoder, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.mae = mae
        self.projector = projection_head(mae.encoder.cfg.width, hidden, out_dim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latent, ids_keep, mask = self.mae.encode_masked(images)
        return self.mae.decode(latent, ids_keep), mask, self.projector(self.mae.encoder.pool(latent))
