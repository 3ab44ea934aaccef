"""MAE's encoder sparsity pays: training-step time at mask ratio 0.75 vs 0, next to the FLOP ratio.

Same model, same batch, measured side by side in one run. Target: the measured ratio within
1.2x of the analytical FLOP ratio (the encoder only sees visible patches; the decoder always
sees all of them).

    .venv/bin/python bench/mae_sparsity.py [--config configs/mae_cifar10.yaml] [--batch 64]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from rayssl.config import PretrainConfig, load_config
from rayssl.methods.mae import mae_loss
from rayssl.models.mae import MaskedAutoencoder


def block_flops(tokens: int, width: int, mlp_ratio: float) -> float:
    """Forward multiply-adds x 2 of one pre-norm transformer block on `tokens` tokens."""
    projections = 2 * tokens * 4 * width * width  # q, k, v, out
    attention = 2 * 2 * tokens * tokens * width  # scores + weighted sum
    mlp = 2 * 2 * tokens * width * int(width * mlp_ratio)
    return projections + attention + mlp


def mae_flops(cfg: PretrainConfig, mask_ratio: float) -> float:
    vit, mae = cfg.model.vit, cfg.mae
    length = (cfg.data.image_size // vit.patch_size) ** 2
    keep = max(1, int(round(length * (1 - mask_ratio))))
    patch_dim = vit.patch_size**2 * cfg.data.channels
    encoder_tokens = keep + (1 if vit.class_token else 0)
    return (
        2 * length * patch_dim * vit.width  # patch embedding runs on every patch
        + vit.depth * block_flops(encoder_tokens, vit.width, vit.mlp_ratio)
        + 2 * keep * vit.width * mae.decoder_width
        + mae.decoder_depth * block_flops(length, mae.decoder_width, vit.mlp_ratio)
        + 2 * length * mae.decoder_width * patch_dim
    )


def step_time(cfg: PretrainConfig, mask_ratio: float, images: torch.Tensor, repeats: int) -> float:
    torch.manual_seed(0)
    mae_cfg = dataclasses.replace(cfg.mae, mask_ratio=mask_ratio)
    model = MaskedAutoencoder(cfg.model.vit, mae_cfg, cfg.data.channels, cfg.data.image_size)
    optimizer = torch.optim.AdamW(model.parameters())

    def step() -> None:
        optimizer.zero_grad()
        pred, mask = model(images)
        mae_loss(images, pred, mask if mask_ratio > 0 else torch.ones_like(mask), cfg.model.vit.patch_size, True).backward()
        optimizer.step()

    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/mae_cifar10.yaml")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cfg = load_config(PretrainConfig, args.config)
    images = torch.randn(args.batch, cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    sparse, dense = step_time(cfg, 0.75, images, args.repeats), step_time(cfg, 0.0, images, args.repeats)
    measured, analytical = sparse / dense, mae_flops(cfg, 0.75) / mae_flops(cfg, 0.0)
    print(f"config {args.config}, batch {args.batch}, threads {torch.get_num_threads()}")
    print("| mask 0.75 step ms | mask 0 step ms | measured ratio | FLOP ratio | measured / FLOP |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {1e3 * sparse:.1f} | {1e3 * dense:.1f} | {measured:.3f} | {analytical:.3f} | {measured / analytical:.2f} |")


if __name__ == "__main__":
    main()
