"""The ReLU / max-pool CNNs of the network-inversion papers, built as a stack of blocks.

Balestriero, Roger, Glotin & Baraniuk, "Semi-Supervised Learning via New Deep Network Inversion"
(arXiv 1711.04313), report MNIST with few labels for a "SmallCNN" and a "LargeCNN" (and ResNets);
the multiscale follow-up (Balestriero, Glotin & Baraniuk, arXiv 1802.10172) reuses the same
families on CIFAR-10 and SVHN. Both nets here follow those papers' pattern: 3x3/5x5 convolutions,
ReLU, 2x2 max-pooling, then a dense layer (SmallCNN) or global average pooling (LargeCNN) before the class layer. The layer widths
are ours, chosen for 2-core CPUs (SmallCNN: conv 32-64 then a dense 128; LargeCNN: the 3x3 "ConvLarge" stack of the
semi-supervised literature of the time, 96/192 wide by default); we could not check the papers'
appendix tables from this machine, so the exact widths may differ from theirs.

Batch norm is off by default (`model.batch_norm`): in training mode it mixes the samples of a
batch, so the network is no longer piecewise affine per sample and A[x]^T f(x) stops being each
image's own inverse. Without it every block is conv -> ReLU (-> max-pool), exactly piecewise affine.

Each net exposes `blocks`: the multiscale inversion loss reconstructs every block's input from
its output (rayssl.methods.inversion.layerwise_reconstruction).
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(c_in: int, c_out: int, kernel: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    return [*layers, nn.ReLU()]


class BlockCNN(nn.Module):
    """[B, C, H, W] -> features [B, out_dim] through `blocks` (an nn.Sequential of blocks)."""

    def __init__(self, blocks: list[nn.Sequential], out_dim: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def small_cnn(channels: int, image_size: int, width: int = 32, batch_norm: bool = False) -> BlockCNN:
    """SmallCNN: conv5x5(w) pool | conv3x3(2w) pool | flatten, dense(4w) -> [B, 4w].

    A dense layer over the flattened 2w x (image_size/4)^2 map, not global average pooling: on
    MNIST with 5 labels per class the pooled variant lost 3-5 points (plain loop, 3 label draws:
    77.5% vs 80.9% supervised at 1,000 steps; 87.0% vs 91.7% with the inversion loss, draw 0).
    """
    side = image_size // 4
    return BlockCNN(
        [
            nn.Sequential(*_conv(channels, width, 5, batch_norm), nn.MaxPool2d(2)),
            nn.Sequential(*_conv(width, 2 * width, 3, batch_norm), nn.MaxPool2d(2), nn.Flatten()),
            nn.Sequential(nn.Linear(2 * width * side * side, 4 * width), nn.ReLU()),
        ],
        4 * width,
    )


def large_cnn(channels: int, width: int = 96, batch_norm: bool = False) -> BlockCNN:
    """LargeCNN: 3x conv3x3(w) pool | 3x conv3x3(2w) pool | conv3x3(2w), 2x conv1x1(2w), global-avg-pool -> [B, 2w]."""
    w2 = 2 * width
    return BlockCNN(
        [
            nn.Sequential(*_conv(channels, width, 3, batch_norm)),
            nn.Sequential(*_conv(width, width, 3, batch_norm)),
            nn.Sequential(*_conv(width, width, 3, batch_norm), nn.MaxPool2d(2)),
            nn.Sequential(*_conv(width, w2, 3, batch_norm)),
            nn.Sequential(*_conv(w2, w2, 3, batch_norm)),
            nn.Sequential(*_conv(w2, w2, 3, batch_norm), nn.MaxPool2d(2)),
            nn.Sequential(*_conv(w2, w2, 3, batch_norm)),
            nn.Sequential(*_conv(w2, w2, 1, batch_norm)),
            nn.Sequential(*_conv(w2, w2, 1, batch_norm), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        ],
        w2,
    )
