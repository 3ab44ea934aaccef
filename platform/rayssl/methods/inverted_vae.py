"""Bounds of the inverted semi-supervised VAE (Gemp et al., arXiv 1608.05983; M2 of Kingma et al.,
arXiv 1406.5298), as per-sample losses (negative bounds, in nats). Pure torch.

With F(x, y) = E_q(z|x,y)[-log p(x|y,z)] + KL(q(z|x,y) || p(z)) (one z sample; the KL in closed form
under the gaussian prior, from the sample under uniform_box):
- labelled (x, y):  -log p(x, y) <= F(x, y) - log p(y)
- unlabelled x, two estimators (ivae.unlabelled_bound):
    relaxed: F(x, y~) + KL(q(y|x) || p(y)), y~ ~ GumbelSoftmax(q(y|x), temperature): one decoder
             pass, y~ differentiable (the gradient into q(y|x) is a relaxed, biased estimate);
    summed:  sum_y q(y|x) F(x, y) + KL(q(y|x) || p(y)): M2's exact sum over the K classes
             (Kingma et al. 2014, eq. 7), K passes, no sampling of y.
  p(y) is uniform (1 / K) unless ivae.class_prior is label_only (InvertedVAE.log_prior).
- label-only y (the reverse bound: z from the prior, x~ from the decoder acting as q(x|y), the
  classifier as the likelihood p(y|x), a flat prior on x):
      -log p(y) <= E_p(z) q(x~|y,z)[-log q(y|x~) + log q(x~|y,z)]
  (github.com/imgemp/untapped, untapped/M12.py: M2_y = M2_y_rec_z1 - M2_y_gen_y).

The reverse sample (ivae.reverse_sample). In the authors' code x~ is an exact Bernoulli sample
(untapped/parmesan/layers/sample.py, BernoulliSampleLayer: Theano's binomial, `uniform < p`), which
carries no gradient: -log q(y|x~) trains the classifier only, and the decoder learns from the images
alone. That is `bernoulli`, the default. `relaxed_bernoulli` is this platform's own variant, not the
authors': a reparameterised relaxed sample at ivae.temperature, through which -log q(y|x~) also trains
the decoder to draw what the classifier reads as y (decoder and classifier can then agree on patterns
no digit has). In both, the second term (minus the generated image's entropy) is reported but given
no gradient: for exact samples its expected gradient is zero (score-function identity; the authors'
per-sample gradient of it has mean zero), while through a relaxed sample its reparameterised gradient
pushes every pixel to p = 1/2 (measured on MNIST, 5 labels per class, 300 steps: the generated digits
became flat grey and the classifier agreed with y on 10% of them, chance).

The fine-tuning method (`InvertedVAEObjective`, config section `ivae`, `method: inverted_vae`) adds
the labelled bound + classification loss, the unlabelled bound on unlabelled images and the reverse
bound on label-only records, each weighted by its ivae.* weight. With
ivae.unlabelled_trains_classifier false, q(y|x) enters the unlabelled bound detached: it weighs the
classes (summed) or draws y~ (relaxed), and the bound trains the encoder and decoder only.

Images come in normalised to [-1, 1]; the Bernoulli likelihood reads them as intensities in [0, 1]
(rounded to 0 or 1 with ivae.binarize: InvertedVAE.pixels).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import RelaxedBernoulli

from rayssl.config import FinetuneConfig, SweepConfig
from rayssl.methods.base import ClassifierForward, FinetuneBatch, FinetuneObjective
from rayssl.methods.sweep_rows import SweepRow, TrialSample, trial_with
from rayssl.models.inverted_vae import InvertedVAE

PixelDraw = Literal["mean", "bernoulli", "relaxed_bernoulli"]
# uniform_box: z in (-BOX, BOX)^Z, the range of the authors' LogisticFlowLayer (untapped/parmesan/layers/flow.py)
BOX = math.pi / 2


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row: [B, Z] -> [B]."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def bernoulli_nll(logits: torch.Tensor, target01: torch.Tensor) -> torch.Tensor:
    """-log Bernoulli(target | sigmoid(logits)) summed over pixels: [B, P], [B, P] -> [B]."""
    return F.binary_cross_entropy_with_logits(logits, target01, reduction="none").sum(dim=1)


def categorical_kl(logits: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits) || p) per row: logits [B, K], log_prior [K] (log p) -> [B]."""
    log_q = F.log_softmax(logits, dim=1)
    return (log_q.exp() * (log_q - log_prior)).sum(dim=1)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] in [-1, 1] -> [B, C*H*W] in [0, 1]."""
    return ((x.flatten(1) + 1.0) / 2.0).clamp(0.0, 1.0)


def posterior_sample(mu: torch.Tensor, logvar: torch.Tensor, prior: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One reparameterised z ~ q(z|x,y) and KL(q(z|x,y) || p(z)): mu, logvar [B, Z] -> (z [B, Z], KL [B]).

    gaussian: z = u ~ N(mu, exp(logvar)), the KL in closed form. uniform_box: z = BOX * (2 sigmoid(u) - 1),
    and the KL has no closed form: its one-sample estimate log q(z) - log p(z), where
    log q(z) = log N(u) - log|dz/du| and log p(z) = -Z log(2 BOX), so the box's width cancels and
    KL ~ log N(u) - sum(log sigmoid(u) + log sigmoid(-u)). Unbiased, but may be negative for one sample."""
    eps = torch.randn_like(mu)
    u = mu + (0.5 * logvar).exp() * eps
    if prior == "gaussian":
        return u, gaussian_kl(mu, logvar)
    log_q_u = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(dim=1)
    return BOX * (2.0 * torch.sigmoid(u) - 1.0), log_q_u - (F.logsigmoid(u) + F.logsigmoid(-u)).sum(dim=1)


def prior_sample(n: int, latent_dim: int, prior: str, device: torch.device) -> torch.Tensor:
    """n draws of z ~ p(z): [n, Z]."""
    if prior == "gaussian":
        return torch.randn(n, latent_dim, device=device)
    return BOX * (2.0 * torch.rand(n, latent_dim, device=device) - 1.0)


def pixel_and_latent_terms(model: InvertedVAE, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """F(x, y) = -log p(x|y,z) + KL(q(z|x,y) || p(z)), one z sample: x [B, C, H, W], y [B, K] -> [B]."""
    z, kl = posterior_sample(*model.encode(x, y), model.prior)
    return bernoulli_nll(model.decode(y, z), model.pixels(x)) + kl


def labelled_bound(model: InvertedVAE, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x [B, C, H, W] in [-1, 1], y [B, K] one-hot -> [B] negative ELBO of (x, y), one z sample."""
    return pixel_and_latent_terms(model, x, y) - (y * model.log_prior).sum(dim=1)


def unlabelled_bound(model: InvertedVAE, x: torch.Tensor, temperature: float, logits: torch.Tensor | None = None) -> torch.Tensor:
    """x [B, C, H, W] -> [B] negative ELBO with y ~ GumbelSoftmax(q(y|x), temperature) (differentiable).

    logits: q(y|x)'s logits if already computed for x."""
    logits = model(x) if logits is None else logits
    y = F.gumbel_softmax(logits, tau=temperature, hard=False)
    return pixel_and_latent_terms(model, x, y) + categorical_kl(logits, model.log_prior)


def summed_unlabelled_bound(model: InvertedVAE, x: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
    """x [B, C, H, W] -> [B] M2's negative ELBO summed exactly over y: sum_y q(y|x) F(x, y) + KL(q(y|x) || p(y)).

    Every image is scored under every class (one batch of K * B rows), so q(y|x) gets the exact
    gradient of the expectation over y instead of a relaxed sample's."""
    logits = model(x) if logits is None else logits
    b, k = logits.shape
    # rows c * B .. (c + 1) * B - 1 pair every image with class c
    classes = torch.eye(k, device=x.device, dtype=logits.dtype).repeat_interleave(b, dim=0)  # [K * B, K]
    per_class = pixel_and_latent_terms(model, x.repeat(k, *([1] * (x.dim() - 1))), classes).view(k, b).T  # [B, K]
    return (F.softmax(logits, dim=1) * per_class).sum(dim=1) + categorical_kl(logits, model.log_prior)


def generate(
    model: InvertedVAE, y: torch.Tensor, pixels: PixelDraw = "mean", temperature: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """y [B, K] -> (decoder logits [B, P], image [B, C, H, W] in [-1, 1]) with z ~ p(z) (model.prior).

    pixels: mean: the pixel means sigmoid(logits); bernoulli: exact Bernoulli pixels (no gradient
    through the draw); relaxed_bernoulli: a reparameterised relaxed-Bernoulli sample at `temperature`."""
    logits = model.decode(y, prior_sample(y.shape[0], model.latent_dim, model.prior, y.device))
    if pixels == "mean":
        x01 = torch.sigmoid(logits)
    elif pixels == "bernoulli":
        x01 = torch.bernoulli(torch.sigmoid(logits.detach()))
    else:
        x01 = RelaxedBernoulli(torch.tensor(temperature, device=y.device), logits=logits).rsample()
    return logits, (x01 * 2.0 - 1.0).view(-1, *model.image_shape)


def reverse_terms(
    model: InvertedVAE, y: torch.Tensor, sample: str = "bernoulli", temperature: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """y [B, K] (one-hot or soft labels) -> the two terms of the negative reverse bound, [B] each:
    -log q(y | x~) (differentiable: what training minimises) and log q(x~ | y, z) (no gradient:
    see the module docstring). sample: bernoulli (x~ exact, no gradient into the decoder: the
    classifier alone learns from it) or relaxed_bernoulli (x~ reparameterised at `temperature`)."""
    exact = sample == "bernoulli"
    with torch.set_grad_enabled(torch.is_grad_enabled() and not exact):  # an exact draw needs no decoder graph
        logits, x_tilde = generate(model, y, cast(PixelDraw, sample), temperature)
    class_nll = -(y * F.log_softmax(model(x_tilde), dim=1)).sum(dim=1)
    with torch.no_grad():
        log_q_x = -bernoulli_nll(logits, to_unit(x_tilde))
    return class_nll, log_q_x


def reverse_bound(model: InvertedVAE, y: torch.Tensor, sample: str = "bernoulli", temperature: float = 0.5) -> torch.Tensor:
    """y [B, K] -> [B] negative reverse bound of the label-only records (its gradient: -log q(y | x~)'s)."""
    class_nll, log_q_x = reverse_terms(model, y, sample, temperature)
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
        v = cfg.ivae
        shape = (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
        return InvertedVAE(
            backbone,
            dim,
            cfg.semisup.num_classes,
            shape,
            v.latent_dim,
            v.encoder_hidden or v.hidden,
            v.decoder_hidden or [v.hidden, v.hidden],
            activation=v.activation,
            binarize=v.binarize,
            prior=v.prior,
            class_prior=v.class_prior_values or None,
            labelled_frequencies=v.labelled_frequencies or None,
        )

    @staticmethod
    def label_only_source(cfg: FinetuneConfig) -> str:
        return cfg.ivae.label_only_data

    @staticmethod
    def resolved(cfg: FinetuneConfig, labelled_labels: np.ndarray, label_only: np.ndarray) -> FinetuneConfig:
        """With ivae.class_prior label_only: p(y) from the label-only records' class frequencies and the labelled
        set's own, both add-one smoothed (a class with no record keeps a little mass, so no logit is -inf)."""
        if cfg.ivae.class_prior != "label_only":
            return cfg
        k = cfg.semisup.num_classes
        prior = (label_only.sum(axis=0) + 1.0) / (len(label_only) + k)
        labelled = (np.bincount(labelled_labels, minlength=k) + 1.0) / (len(labelled_labels) + k)
        values = {"class_prior_values": prior.tolist(), "labelled_frequencies": labelled.tolist()}
        return dataclasses.replace(cfg, ivae=dataclasses.replace(cfg.ivae, **values))

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
        ce = F.cross_entropy(vae.labelled_logits(batch.labelled), batch.labels)  # the labelled set's own class frequencies
        parts = [v.labelled * labelled + v.classification * ce]
        stats = {"ce": ce.detach() * n, "labelled_bound": labelled.detach() * n}  # sums over the batch's rows
        if len(batch.unlabelled) and v.unlabelled > 0:
            logits = vae(batch.unlabelled)
            logits = logits if v.unlabelled_trains_classifier else logits.detach()
            forward = (
                summed_unlabelled_bound(vae, batch.unlabelled, logits)
                if v.unlabelled_bound == "summed"
                else unlabelled_bound(vae, batch.unlabelled, v.temperature, logits)
            ).mean()
            parts.append(v.unlabelled * forward)
            stats["unlabelled_bound"] = forward.detach() * n
        if batch.label_only is not None:
            class_nll, log_q_x = reverse_terms(vae, batch.label_only, v.reverse_sample, v.temperature)
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
