"""The semi-supervised VAE (M2, Kingma et al. 2014) that Gemp et al. invert ("Inverting Variational
Autoencoders for Improved Generative Accuracy", arXiv 1608.05983).

Three networks and nothing else:
- classifier q(y|x): a backbone + linear head, exactly the fine-tuning Classifier, so `forward(x)`
  gives logits and every evaluation path (test accuracy, robustness, quality) reads it unchanged;
- encoder q(z|x, y): an MLP on the flattened image and y, to a diagonal Gaussian (squashed into a
  box under the uniform_box prior: rayssl.methods.inverted_vae.posterior_sample);
- decoder p(x|y, z): an MLP to Bernoulli logits of every pixel (images in [0, 1]), with z from
  `prior` (gaussian: N(0, I); uniform_box: uniform on (-pi/2, pi/2)^Z) when it generates.

For label-only records the decoder doubles as the reverse encoder q(x|y) and the classifier as the
reverse likelihood p(y|x) (rayssl.methods.inverted_vae.reverse_terms).

With `binarize`, every image the model reads is first rounded to black or white, in forward (so
validation, test and prediction see what training saw) and in encode.

With a class prior p(y) (`class_prior`) other than the labelled set's class frequencies
(`labelled_frequencies`), `forward` is q(y|x) under p(y): the head's logits shifted by
log p(y) - log (labelled frequency), a prior shift; `labelled_logits` is the head as trained by the
labelled cross-entropy. Without one both are the head's logits and p(y) is uniform.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rayssl.models.backbones import mlp
from rayssl.models.classifier import Classifier


def binarized(x: torch.Tensor) -> torch.Tensor:
    """x [B, ...] in [-1, 1] -> the same shape in {-1, 1}: intensity (x + 1) / 2 rounded at 1/2."""
    return torch.where(x > 0, 1.0, -1.0).to(x.dtype)


class InvertedVAE(Classifier):
    """forward(x [B, C, H, W] in [-1, 1]) -> classifier logits [B, K]; encode / decode for the bounds."""

    log_prior: torch.Tensor  # [K] log p(y) (buffer)
    prior_shift: torch.Tensor  # [K] added to the head's logits in forward (buffer)

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        num_classes: int,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        hidden: int | list[int],
        decoder_hidden: list[int] | None = None,
        activation: str = "softplus",  # smooth, as in M2's MLPs
        binarize: bool = False,
        prior: str = "gaussian",
        class_prior: list[float] | None = None,
        labelled_frequencies: list[float] | None = None,
    ) -> None:
        """hidden: the encoder's hidden widths (an int w: [w, w]); decoder_hidden: the decoder's (None: the encoder's).
        class_prior, labelled_frequencies: [K] each (both or neither); None: a uniform p(y), no shift."""
        super().__init__(backbone, feature_dim, num_classes)
        self.image_shape = image_shape
        self.num_classes, self.latent_dim, self.binarize, self.prior = num_classes, latent_dim, binarize, prior
        pixels = image_shape[0] * image_shape[1] * image_shape[2]
        encoder_hidden = [hidden, hidden] if isinstance(hidden, int) else hidden
        decoder_hidden = encoder_hidden if decoder_hidden is None else decoder_hidden
        self.encoder = mlp([pixels + num_classes, *encoder_hidden, 2 * latent_dim], activation)
        self.decoder = mlp([num_classes + latent_dim, *decoder_hidden, pixels], activation)
        uniform = torch.full((num_classes,), -math.log(num_classes))
        log_prior = torch.tensor(class_prior).log() if class_prior else uniform
        log_labelled = torch.tensor(labelled_frequencies).log() if labelled_frequencies else log_prior
        # Not saved in checkpoints: the run's config rebuilds them, so an older checkpoint still loads.
        self.register_buffer("log_prior", log_prior, persistent=False)  # [K] log p(y)
        self.register_buffer("prior_shift", log_prior - log_labelled, persistent=False)  # [K], zeros without a prior

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return binarized(x) if self.binarize else x

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] in [-1, 1] -> the Bernoulli likelihood's targets [B, C*H*W] in [0, 1] (binary with binarize)."""
        return ((self._input(x).flatten(1) + 1.0) / 2.0).clamp(0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] in [-1, 1] -> q(y|x)'s logits [B, K] under the class prior p(y)."""
        return self.labelled_logits(x) + self.prior_shift

    def labelled_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] in [-1, 1] -> the head's logits [B, K], q(y|x) at the labelled set's class frequencies."""
        return super().forward(self._input(x))

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, H, W] in [-1, 1], y [B, K] (one-hot or relaxed) -> (mu [B, Z], logvar [B, Z])."""
        mu, logvar = self.encoder(torch.cat([self._input(x).flatten(1), y], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)

    def decode(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """y [B, K], z [B, Z] -> Bernoulli logits [B, C*H*W] of the pixels in [0, 1]."""
        return self.decoder(torch.cat([y, z], dim=1))

    def layers(self) -> None:
        return None  # not a chain of layers: the per-layer inversion loss does not apply
