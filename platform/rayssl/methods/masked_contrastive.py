"""Masked contrastive pretraining (CAN-style, arXiv 2210.16870): MAE reconstruction of two masked
views + NT-Xent between their pooled encodings, mixed by contrastive.weight."""

from __future__ import annotations

import torch
from torch import nn

from rayssl.config import PretrainConfig
from rayssl.methods.base import StatelessMethod, StepContext
from rayssl.methods.contrastive import nt_xent
from rayssl.methods.mae import mae_loss
from rayssl.models.contrastive import MaskedContrastiveAutoencoder
from rayssl.models.mae import MaskedAutoencoder
from rayssl.models.vit import ViTFeatures


class MaskedContrastiveMethod(StatelessMethod):
    """MAE reconstruction of two masked views + NT-Xent between their pooled encodings, mixed by contrastive.weight."""

    two_views = True

    def __init__(self, cfg: PretrainConfig, num_samples: int) -> None:
        c = cfg.contrastive
        mae = MaskedAutoencoder(cfg.model.vit, cfg.mae, cfg.data.channels, cfg.data.image_size)
        self.model = MaskedContrastiveAutoencoder(mae, c.projection_hidden, c.projection_dim)
        self.temperature, self.weight = c.temperature, c.weight
        self.patch, self.norm_pix = cfg.model.vit.patch_size, cfg.mae.norm_pix_loss

    def step(self, model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = torch.cat([batch["image"], batch["image_view2"]])  # [2B, C, H, W], each view masked independently
        b = len(batch["image"])
        pred, mask, z = model(images)
        reconstruction = mae_loss(images, pred, mask, self.patch, self.norm_pix)
        contrastive = nt_xent(z[:b], z[b:], self.temperature)
        loss = self.weight * contrastive + (1 - self.weight) * reconstruction
        # stats are sums over the batch's rows (the loop divides by its image count)
        return loss, {"reconstruction": reconstruction.detach() * b, "contrastive": contrastive.detach() * b}

    def backbone(self) -> nn.Module:
        return ViTFeatures(self.model.mae.encoder)
