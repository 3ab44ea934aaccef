"""Masked autoencoder model: a ViT encoder on visible patches and a light transformer decoder."""

from __future__ import annotations

import torch
from torch import nn

from rayssl.config import MAEConfig, ViTConfig
from rayssl.models.vit import ViTEncoder, _blocks, random_masking, sincos_pos_embed


class MaskedAutoencoder(nn.Module):
    """forward(images) -> (pred [B, L, patch*patch*C], mask [B, L] with 1 = masked).

    The model only predicts; the loss (masked patches only, optionally on per-patch normalised
    pixels) lives in rayssl.methods.mae.
    """

    decoder_pos: torch.Tensor  # buffer [1, L, Dd], registered in __init__

    def __init__(self, vit: ViTConfig, mae: MAEConfig, channels: int, image_size: int) -> None:
        super().__init__()
        self.encoder = ViTEncoder(vit, channels, image_size)
        self.mask_ratio = mae.mask_ratio
        self.has_cls = vit.class_token
        length = self.encoder.num_patches
        self.keep = max(1, int(round(length * (1 - mae.mask_ratio))))
        self.decoder_embed = nn.Linear(vit.width, mae.decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, mae.decoder_width))
        self.register_buffer("decoder_pos", sincos_pos_embed(mae.decoder_width, self.encoder.grid)[None], persistent=False)
        self.decoder = _blocks(mae.decoder_width, mae.decoder_depth, mae.decoder_heads, vit.mlp_ratio)
        self.decoder_norm = nn.LayerNorm(mae.decoder_width, eps=1e-6)
        self.decoder_pred = nn.Linear(mae.decoder_width, vit.patch_size**2 * channels)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        latent, ids_keep, mask = self.encode_masked(images, generator)
        return self.decode(latent, ids_keep), mask

    def encode_masked(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images [B, C, H, W] -> (latent [B, (1 +) K, D] of the K visible patches (class token
        first when the ViT has one), ids_keep [B, K], mask [B, L] with 1 = masked)."""
        b, length = images.shape[0], self.encoder.num_patches
        ids_keep, mask = random_masking(length, self.keep, b, generator, images.device)
        return self.encoder(images, ids_keep), ids_keep, mask

    def decode(self, latent: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Visible-patch latents [B, (1 +) K, D] -> pixel predictions [B, L, patch*patch*C] for every patch."""
        if self.has_cls:
            latent = latent[:, 1:]
        b, length = latent.shape[0], self.encoder.num_patches
        visible = self.decoder_embed(latent)  # [B, K, Dd]
        # Scatter visible tokens back to their positions; masked positions get the mask token.
        full = self.mask_token.expand(b, length, -1).clone()
        full.scatter_(1, ids_keep[..., None].expand(-1, -1, visible.shape[-1]), visible)
        decoded = self.decoder_norm(self.decoder(full + self.decoder_pos))
        return self.decoder_pred(decoded)
