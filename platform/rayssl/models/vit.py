"""Vision Transformer pieces for masked autoencoders (He et al., 2021).

Transformer blocks are torchvision's `EncoderBlock` (pre-norm attention + MLP, batch-first);
only what MAE adds lives here: patchify, fixed 2-D sin-cos position embeddings, per-sample
random masking, and an encoder that runs on the visible patches only.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vision_transformer import EncoderBlock

from rayssl.config import ViTConfig


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, L, patch*patch*C] with L = (H/patch)*(W/patch), row-major patches."""
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not divisible by patch size {patch}")
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, channels: int) -> torch.Tensor:
    """[B, L, patch*patch*C] -> [B, C, H, W]; the inverse of `patchify` for square images."""
    b, length, _ = patches.shape
    side = int(round(length**0.5))
    x = patches.reshape(b, side, side, patch, patch, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, side * patch, side * patch)


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings [grid*grid, dim] (half the channels per axis)."""
    if dim % 4:
        raise ValueError(f"embedding width {dim} must be divisible by 4 for 2-D sin-cos embeddings")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij")

    def axis(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega[None]  # [L, dim/4]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([axis(ys), axis(xs)], dim=1).float()


def random_masking(
    length: int, keep: int, batch: int, generator: torch.Generator | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample uniform random subsets of `keep` out of `length` patches.

    Returns (ids_keep [B, keep] sorted ascending, mask [B, length] with 1.0 = masked).
    """
    noise = torch.rand(batch, length, generator=generator, device="cpu").to(device)
    ids_keep = noise.argsort(dim=1)[:, :keep].sort(dim=1).values
    mask = torch.ones(batch, length, device=device)
    mask.scatter_(1, ids_keep, 0.0)
    return ids_keep, mask


def _blocks(width: int, depth: int, heads: int, mlp_ratio: float) -> nn.Sequential:
    return nn.Sequential(*[EncoderBlock(heads, width, int(width * mlp_ratio), 0.0, 0.0) for _ in range(depth)])


class ViTEncoder(nn.Module):
    """Patch embedding + fixed position embeddings + transformer blocks + LayerNorm.

    `forward(images, ids_keep)` encodes only the kept patches, so compute scales with the
    visible fraction; `features(images)` mean-pools (or takes the class token of) all patches.
    """

    def __init__(self, cfg: ViTConfig, channels: int, image_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.grid = image_size // cfg.patch_size
        if self.grid * cfg.patch_size != image_size:
            raise ValueError(f"data.image_size {image_size} is not divisible by model.vit.patch_size {cfg.patch_size}")
        self.num_patches = self.grid * self.grid
        self.patch_embed = nn.Conv2d(channels, cfg.width, cfg.patch_size, stride=cfg.patch_size)
        self.register_buffer("pos_embed", sincos_pos_embed(cfg.width, self.grid)[None], persistent=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width)) if cfg.class_token else None
        self.blocks = _blocks(cfg.width, cfg.depth, cfg.heads, cfg.mlp_ratio)
        self.norm = nn.LayerNorm(cfg.width, eps=1e-6)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)

    def forward(self, images: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """images [B, C, H, W], ids_keep [B, K] or None -> tokens [B, (1 +) K, width]."""
        x = self.patch_embed(images).flatten(2).transpose(1, 2) + self.pos_embed  # [B, L, D]
        if ids_keep is not None:
            x = x.gather(1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.norm(self.blocks(x))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, width]: class token if configured and pooled that way, else mean of patch tokens."""
        return self.pool(self(images))

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Encoder output [B, (1 +) K, width] (all patches, or only the visible ones) -> [B, width]."""
        if self.cls_token is not None and self.cfg.pool == "cls":
            return tokens[:, 0]
        return tokens[:, 1:].mean(dim=1) if self.cls_token is not None else tokens.mean(dim=1)


class ViTFeatures(nn.Module):
    """Adapter so a ViT encoder is a backbone like the others: [B, C, H, W] -> [B, width]."""

    def __init__(self, encoder: ViTEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.features(images)
