"""Backbones: image [B, C, H, W] -> feature vector [B, embed_dim]."""

from rayssl.models.backbones import build_backbone, feature_dim

__all__ = ["build_backbone", "feature_dim"]
