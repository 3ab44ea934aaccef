"""Masked autoencoder (He et al., 2021): MSE on the masked patches only, and the pretraining method."""

from __future__ import annotations

import torch
from torch import nn

from rayssl.config import PretrainConfig
from rayssl.methods.base import StatelessMethod, StepContext
from rayssl.methods.reconstructions import write_reconstructions
from rayssl.models.mae import MaskedAutoencoder
from rayssl.models.vit import ViTFeatures, patchify


def mae_loss(images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, patch: int, norm_pix: bool) -> torch.Tensor:
    """Mean squared error over masked patches.

    images [B, C, H, W]; pred [B, L, patch*patch*C]; mask [B, L], 1 = masked (the only patches
    that count). With `norm_pix` each target patch is normalised by its own mean and variance.
    """
    target = patchify(images, patch)
    if norm_pix:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = (pred.float() - target).pow(2).mean(dim=-1)  # [B, L]
    return (per_patch * mask).sum() / mask.sum().clamp(min=1)


class MAEMethod(StatelessMethod):
    """Masked autoencoder (the loop runs every step under bf16 autocast on GPU workers)."""

    two_views = False

    def __init__(self, cfg: PretrainConfig, num_samples: int) -> None:
        self.model = MaskedAutoencoder(cfg.model.vit, cfg.mae, cfg.data.channels, cfg.data.image_size)
        self.patch, self.norm_pix = cfg.model.vit.patch_size, cfg.mae.norm_pix_loss
        self.cfg = cfg

    def step(self, model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = batch["image"]
        pred, mask = model(images)
        return mae_loss(images, pred, mask, self.patch, self.norm_pix), {}

    def backbone(self) -> nn.Module:
        return ViTFeatures(self.model.encoder)

    def on_checkpoint(self, run_dir: str, epoch: int) -> dict[str, torch.Tensor]:
        """Reconstruction grid of fixed held-out images, next to each checkpoint (rank 0)."""
        return {"reconstructions": write_reconstructions(self.model, self.cfg, run_dir, epoch)}
