"""Bounds of the inverted semi-supervised VAE (Gemp et al., arXiv 1608.05983; M2 of Kingma et al.,
arXiv 1406.5298), as per-sample losses (negative bounds, in nats). Pure torch.

- labelled (x, y):  -log p(x, y) <= E_q(z|x,y)[-log p(x|y,z)] + KL(q(z|x,y) || N(0, I)) + log K
- unlabelled x (y inferred, relaxed with Gumbel-Softmax at temperature t):
      -log p(x) <= E_q(y|x) q(z|x,y)[-log p(x|y,z)] + KL(q(z|x,y) || N(0, I)) + KL(q(y|x) || uniform)
- label-only y (the reverse bound: z from the prior, x~ from the decoder acting as q(x|y), the
  classifier as the likelihood p(y|x), a flat prior on x):
      -log p(y) <= E_p(z) q(x~|y,z)[-log q(y|x~) + log q(x~|y,z)]
  (github.com/imgemp/untapped, M12.py: M2_y = rec_z1 - gen_y). x~ is a relaxed-Bernoulli sample
  (temperature t), so -log q(y|x~) sends gradients through x~ into the decoder: it learns to
  generate images the classifier reads as y, and the classifier learns from them. The second term
  is minus the entropy of the generated image. Its value is part of the bound, but it is given no
  gradient: for exact Bernoulli samples its expected gradient is zero (score-function identity),
  while its reparameterised gradient through the relaxed sample pushes every pixel to p = 1/2.
  Measured on MNIST (5 labels per class, 300 steps): with that gradient the generated digits
  became flat grey and the classifier agreed with y on 10% of them (chance).

The fine-tuning method (`InvertedVAEObjective`, config section `ivae`, `method: inverted_vae`) adds
the labelled bound + classification loss, the forward bound on unlabelled images and the reverse
bound on label-only records, each weighted by its ivae.* weight.

Images come in normalised to [-1, 1]; the Bernoulli likelihood reads them as intensities in [0, 1].
"""

from __future__ import annotations

import dataclasses
import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import RelaxedBernoulli

from rayssl.config import FinetuneConfig, SweepConfig
from rayssl.methods.base import ClassifierForward, FinetuneBatch, FinetuneObjective
from rayssl.methods.sweep_rows import SweepRow, TrialSample, trial_with
from rayssl.models.inverted_vae import InvertedVAE


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row: [B, Z] -> [B]."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def bernoulli_nll(logits: torch.Tensor, target01: torch.Tensor) -> torch.Tensor:
    """-log Bernoulli(target | sigmoid(logits)) summed over pixels: [B, P], [B, P] -> [B]."""
    return F.binary_cross_entropy_with_logits(logits, target01, reduction="none").sum(dim=1)


def categorical_kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits) || uniform over K) per row: [B, K] -> [B]."""
    log_q = F.log_softmax(logits, dim=1)
    return (log_q.exp() * log_q).sum(dim=1) + math.log(logits.shape[1])


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] in [-1, 1] -> [B, C*H*W] in [0, 1]."""
    return ((x.flatten(1) + 1.0) / 2.0).clamp(0.0, 1.0)


def _sample_z(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + (0.5 * logvar).exp() * torch.randn_like(mu)


def labelled_bound(model: InvertedVAE, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x [B, C, H, W] in [-1, 1], y [B, K] one-hot -> [B] negative ELBO of (x, y), one z sample."""
    mu, logvar = model.encode(x, y)
    recon = bernoulli_nll(model.decode(y, _sample_z(mu, logvar)), to_unit(x))
    return recon + gaussian_kl(mu, logvar) + math.log(y.shape[1])


def unlabelled_bound(model: InvertedVAE, x: torch.Tensor, temperature: float, logits: torch.Tensor | None = None) -> torch.Tensor:
    """x [B, C, H, W] -> [B] negative ELBO with y ~ GumbelSoftmax(q(y|x), temperature) (differentiable).

    logits: q(y|x)'s logits if already computed for x."""
    logits = model(x) if logits is None else logits
    y = F.gumbel_softmax(logits, tau=temperature, hard=False)
    mu, logvar = model.encode(x, y)
    recon = bernoulli_nll(model.decode(y, _sample_z(mu, logvar)), to_unit(x))
    return recon + gaussian_kl(mu, logvar) + categorical_kl_to_uniform(logits)


def generate(model: InvertedVAE, y: torch.Tensor, temperature: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """y [B, K] -> (decoder logits [B, P], image [B, C, H, W] in [-1, 1]) with z ~ N(0, I).

    temperature: a relaxed-Bernoulli sample of the pixels (differentiable); None: the pixel means."""
    z = torch.randn(y.shape[0], model.latent_dim, device=y.device)
    logits = model.decode(y, z)
    pixels = (
        torch.sigmoid(logits)
        if temperature is None
        else RelaxedBernoulli(torch.tensor(temperature, device=y.device), logits=logits).rsample()
    )
    return logits, (pixels * 2.0 - 1.0).view(-1, *model.image_shape)


def reverse_terms(model: InvertedVAE, y: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """y [B, K] (one-hot or soft labels) -> the two terms of the negative reverse bound, [B] each:
    -log q(y | x~) (differentiable: what training minimises) and log q(x~ | y, z) (no gradient:
    see the module docstring)."""
    logits, x_tilde = generate(model, y, temperature)
    class_nll = -(y * F.log_softmax(model(x_tilde), dim=1)).sum(dim=1)
    with torch.no_grad():
        log_q_x = -bernoulli_nll(logits, to_unit(x_tilde))
    return class_nll, log_q_x


def reverse_bound(model: InvertedVAE, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """y [B, K] -> [B] negative reverse bound of the label-only records (its gradient: -log q(y | x~)'s)."""
    class_nll, log_q_x = reverse_terms(model, y, temperature)
    return class_nll + log_q_x


def _as_inverted_vae(model: nn.Module) -> InvertedVAE:
    """The trained model, typed as the InvertedVAE it is in a `method: inverted_vae` run
    (rayssl.train.pretrained.build_classifier). With train.compile it arrives wrapped by
    torch.compile, which forwards encode / decode to the module: the check reads through the
    wrapper, and the wrapper itself is returned so that forward passes stay compiled."""
    assert isinstance(getattr(model, "_orig_mod", model), InvertedVAE), (
        f"method inverted_vae trains an InvertedVAE, got {type(model).__name__}"
    )
    return cast(InvertedVAE, model)


class InvertedVAEObjective(FinetuneObjective):
    """The whole loss of an inverted-VAE run: per step, the labelled bound and classification loss on
    the labelled batch, the forward bound on the unlabelled images, and the reverse bound on a batch
    of label-only records (float [M, K] label distributions, kept in memory like the labelled set)."""

    standalone = True
    title = "inverted VAE"
    section = "ivae"

    def __init__(self, cfg: FinetuneConfig, net: nn.Module) -> None:
        super().__init__(cfg, net)
        self.cfg, self.num_classes = cfg.ivae, cfg.semisup.num_classes

    @staticmethod
    def active(cfg: FinetuneConfig) -> bool:
        return cfg.method == "inverted_vae"

    @staticmethod
    def reads_unlabelled(cfg: FinetuneConfig) -> bool:
        return cfg.ivae.unlabelled > 0

    @staticmethod
    def network(cfg: FinetuneConfig, backbone: nn.Module, dim: int) -> InvertedVAE:
        """M2's encoder and decoder around the classifier (backbone + head)."""
        shape = (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
        return InvertedVAE(backbone, dim, cfg.semisup.num_classes, shape, cfg.ivae.latent_dim, cfg.ivae.hidden)

    @staticmethod
    def label_only_source(cfg: FinetuneConfig) -> str:
        return cfg.ivae.label_only_data

    @staticmethod
    def label_only_batch_size(cfg: FinetuneConfig) -> int:
        """Label-only records drawn per step (0: this run reads none)."""
        return cfg.ivae.label_only_batch_size if cfg.ivae.label_only > 0 else 0

    def loss_terms(
        self, model: nn.Module, batch: FinetuneBatch, out: ClassifierForward | None
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        vae = _as_inverted_vae(model)
        v, n = self.cfg, batch.rows
        labelled = labelled_bound(vae, batch.labelled, F.one_hot(batch.labels, self.num_classes).float()).mean()
        ce = F.cross_entropy(vae(batch.labelled), batch.labels)
        parts = [v.labelled * labelled + v.classification * ce]
        stats = {"ce": ce.detach() * n, "labelled_bound": labelled.detach() * n}  # sums over the batch's rows
        if len(batch.unlabelled) and v.unlabelled > 0:
            forward = unlabelled_bound(vae, batch.unlabelled, v.temperature).mean()
            parts.append(v.unlabelled * forward)
            stats["unlabelled_bound"] = forward.detach() * n
        if batch.label_only is not None:
            class_nll, log_q_x = reverse_terms(vae, batch.label_only, v.temperature)
            # The loss holds what is optimised; the bound (with its gradient-free entropy term) is reported.
            parts.append(v.label_only * class_nll.mean())
            stats["reverse_bound"] = (class_nll + log_q_x).mean().detach() * n
            stats["reverse_class_nll"] = class_nll.mean().detach() * n
        return parts, stats

    @staticmethod
    def sweep_rows(sweep: SweepConfig) -> list[SweepRow]:
        weights = lambda trial: {"ivae_unlabelled": trial.ivae.unlabelled, "ivae_label_only": trial.ivae.label_only}  # noqa: E731
        return [SweepRow("inverted_vae", "inverted VAE", _inverted_vae, reports=weights)] if sweep.inverted_vae else []


def _inverted_vae(base: FinetuneConfig, sample: TrialSample) -> FinetuneConfig:
    """The inverted VAE with Tune's draws of its two unsupervised bounds' weights."""
    ivae = dataclasses.replace(base.ivae, unlabelled=sample.ivae_unlabelled, label_only=sample.ivae_label_only)
    return dataclasses.replace(trial_with(base), method="inverted_vae", ivae=ivae)
