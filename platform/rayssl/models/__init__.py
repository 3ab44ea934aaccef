"""Backbones: image [B, C, H, W] -> feature vector [B, embed_dim]."""

from rayssl.models.backbones import build_backbone

__all__ = ["build_backbone"]
