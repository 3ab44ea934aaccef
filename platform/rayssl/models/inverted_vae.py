"""The semi-supervised VAE (M2, Kingma et al. 2014) that Gemp et al. invert ("Inverting Variational
Autoencoders for Improved Generative Accuracy", arXiv 1608.05983).

Three networks and nothing else:
- classifier q(y|x): a backbone + linear head, exactly the fine-tuning Classifier, so `forward(x)`
  gives logits and every evaluation path (test accuracy, robustness, quality) reads it unchanged;
- encoder q(z|x, y): an MLP on the flattened image and y, to a diagonal Gaussian;
- decoder p(x|y, z): an MLP to Bernoulli logits of every pixel (images in [0, 1]).

For label-only records the decoder doubles as the reverse encoder q(x|y) and the classifier as the
reverse likelihood p(y|x) (rayssl.methods.inverted_vae.reverse_bound).
"""

from __future__ import annotations

import torch
from torch import nn

from rayssl.models.classifier import Classifier


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Softplus())  # smooth, as in M2's MLPs
    return nn.Sequential(*layers)


class InvertedVAE(Classifier):
    """forward(x [B, C, H, W] in [-1, 1]) -> classifier logits [B, K]; encode / decode for the bounds."""

    def __init__(
        self, backbone: nn.Module, feature_dim: int, num_classes: int, image_shape: tuple[int, int, int], latent_dim: int, hidden: int
    ) -> None:
        super().__init__(backbone, feature_dim, num_classes)
        self.image_shape = image_shape
        self.num_classes, self.latent_dim = num_classes, latent_dim
        pixels = image_shape[0] * image_shape[1] * image_shape[2]
        self.encoder = _mlp([pixels + num_classes, hidden, hidden, 2 * latent_dim])
        self.decoder = _mlp([num_classes + latent_dim, hidden, hidden, pixels])

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, H, W] in [-1, 1], y [B, K] (one-hot or relaxed) -> (mu [B, Z], logvar [B, Z])."""
        mu, logvar = self.encoder(torch.cat([x.flatten(1), y], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)

    def decode(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """y [B, K], z [B, Z] -> Bernoulli logits [B, C*H*W] of the pixels in [0, 1]."""
        return self.decoder(torch.cat([y, z], dim=1))

    def layers(self) -> None:
        return None  # not a chain of layers: the per-layer inversion loss does not apply
