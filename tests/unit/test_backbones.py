"""Every backbone returns feature_dim(cfg) features at the image sizes the configs use."""

import pytest
import torch

from rayssl.config import ModelConfig
from rayssl.models.backbones import build_backbone, feature_dim


@pytest.mark.parametrize("name", ["cnn", "small_cnn", "large_cnn", "resnet18", "mlp"])
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


def test_mlp_is_gemp_et_al_s_classifier_body() -> None:
    # 784-50-50 with tanh: with the classifier's linear head, their 784-50-50-10
    cfg = ModelConfig(name="mlp", mlp_hidden=[50, 50], mlp_activation="tanh")
    net = build_backbone(cfg, 1, 28)
    linear = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(784, 50), (50, 50)] and feature_dim(cfg) == 50
    assert sum(isinstance(m, torch.nn.Tanh) for m in net.modules()) == 2
    features = net(torch.randn(3, 1, 28, 28) * 10)
    assert features.shape == (3, 50) and features.abs().max() <= 1  # the last layer's tanh bounds the features
