"""Backbones for small images. Each maps [B, C, H, W] -> features [B, embed_dim]."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from rayssl.config import ModelConfig
from rayssl.models.inversion_nets import large_cnn, small_cnn
from rayssl.models.vit import ViTEncoder, ViTFeatures


def _conv_block(c_in: int, c_out: int, *after: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), *after)


class SmallCNN(nn.Module):
    """A VGG-style ReLU/max-pool CNN with batch norm: 3 stages (width, 2*width, 4*width), global
    average pool, linear projection to embed_dim. The pretraining default.

    ReLU + max-pool keep it piecewise affine (per batch: batch norm in training mode couples the
    samples), which the network-inversion loss relies on. `blocks` lists it as a chain of layers.
    """

    def __init__(self, channels: int, width: int, embed_dim: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            _conv_block(channels, width),
            _conv_block(width, width, nn.MaxPool2d(2)),
            _conv_block(width, 2 * width, nn.MaxPool2d(2)),
            _conv_block(2 * width, 4 * width, nn.AdaptiveAvgPool2d(1), nn.Flatten()),
            nn.Linear(4 * width, embed_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W] -> [B, embed_dim]."""
        return self.blocks(x)


def _small_image_resnet18(channels: int, embed_dim: int) -> nn.Module:
    """torchvision ResNet-18 with the CIFAR stem (3x3 stride-1 conv, no max-pool)."""
    net = torchvision.models.resnet18(num_classes=embed_dim)
    net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus}


def mlp(sizes: list[int], activation: str, last_activation: bool = False) -> nn.Sequential:
    """Linear layers of widths sizes[0] -> sizes[1] -> ... -> sizes[-1], `activation` between them
    (and after the last one when last_activation): [B, sizes[0]] -> [B, sizes[-1]]."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def _flat_mlp(pixels: int, hidden: list[int], activation: str) -> nn.Module:
    """[B, C, H, W] -> [B, hidden[-1]]: the flattened image through each hidden layer and its activation
    (a classifier's head on top makes e.g. Gemp et al.'s 784-50-50-10)."""
    return nn.Sequential(nn.Flatten(), mlp([pixels, *hidden], activation, last_activation=True))


def build_backbone(cfg: ModelConfig, channels: int, image_size: int) -> nn.Module:
    """[B, channels, image_size, image_size] -> [B, feature_dim(cfg)]."""
    if cfg.name == "cnn":
        return SmallCNN(channels, cfg.width, cfg.embed_dim)
    if cfg.name == "small_cnn":
        return small_cnn(channels, image_size, cfg.width, cfg.batch_norm)
    if cfg.name == "large_cnn":
        return large_cnn(channels, cfg.width, cfg.batch_norm)
    if cfg.name == "resnet18":
        return _small_image_resnet18(channels, cfg.embed_dim)
    if cfg.name == "resnet50":  # torchvision's ImageNet ResNet-50, its classifier replaced by a projection to embed_dim
        net = torchvision.models.resnet50(num_classes=cfg.embed_dim)
        if channels != 3:
            net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return net
    if cfg.name == "vit":
        return ViTFeatures(ViTEncoder(cfg.vit, channels, image_size))
    if cfg.name == "mlp":
        return _flat_mlp(channels * image_size * image_size, cfg.mlp_hidden, cfg.mlp_activation)
    raise ValueError(f"unknown model.name {cfg.name!r}")


def feature_dim(cfg: ModelConfig) -> int:
    """Length of the feature vector build_backbone(cfg, ...) returns."""
    dims = {"vit": cfg.vit.width, "small_cnn": 4 * cfg.width, "large_cnn": 2 * cfg.width, "mlp": cfg.mlp_hidden[-1]}
    return dims.get(cfg.name, cfg.embed_dim)
