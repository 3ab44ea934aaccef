"""Masked-autoencoder loss (He et al., 2021): MSE on the masked patches only."""

from __future__ import annotations

import torch

from rayssl.models.vit import patchify


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
