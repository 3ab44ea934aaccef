"""Every backbone returns feature_dim(cfg) features at the image sizes the configs use."""

import pytest
import torch

from rayssl.config import ModelConfig
from rayssl.models.backbones import build_backbone, feature_dim


@pytest.mark.parametrize("name", ["cnn", "small_cnn", "large_cnn", "resnet18"])
@pytest.mark.parametrize(("channels", "image_size"), [(1, 8), (1, 28), (3, 32)])
def test_feature_shape(name: str, channels: int, image_size: int) -> None:
    cfg = ModelConfig(name=name, width=8, embed_dim=16)
    net = build_backbone(cfg, channels, image_size)
    assert net(torch.zeros(2, channels, image_size, image_size)).shape == (2, feature_dim(cfg))


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet50_at_imagenet_size(channels: int) -> None:
    cfg = ModelConfig(name="resnet50", embed_dim=128)
    net = build_backbone(cfg, channels, 224).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, channels, 224, 224)).shape == (1, 128) == (1, feature_dim(cfg))
