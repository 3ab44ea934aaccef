"""The inverted VAE's bounds on a tiny model, against hand-computed values and plain Monte Carlo;
Gumbel-Softmax gradients; validation of label-only tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import RelaxedBernoulli

from rayssl.data.label_only import LabelOnlyError, label_vectors
from rayssl.methods.inverted_vae import gaussian_kl, generate, labelled_bound, reverse_bound, unlabelled_bound
from rayssl.models.inverted_vae import InvertedVAE

LOG2, LOG3 = math.log(2), math.log(3)


def tiny_vae() -> InvertedVAE:
    """2-pixel images, 2 classes, 2 latents. Encoder: mu = (1, 0), logvar = (0, log 2) whatever the
    input; decoder: logits (0, log 3) whatever y and z; classifier: q(y|x) = (0.75, 0.25)."""
    vae = InvertedVAE(nn.Flatten(), feature_dim=2, num_classes=2, image_shape=(1, 1, 2), latent_dim=2, hidden=3)
    with torch.no_grad():
        for last, bias in ((vae.encoder[-1], [1.0, 0.0, 0.0, LOG2]), (vae.decoder[-1], [0.0, LOG3]), (vae.head, [LOG3, 0.0])):
            last.weight.zero_()
            last.bias.copy_(torch.tensor(bias))
    return vae


X = torch.tensor([[[[-1.0, 1.0]]]])  # pixel intensities (0, 1)
# -log Bernoulli: pixel 0 = 0 under p = sigmoid(0) = 1/2: log 2; pixel 1 = 1 under p = sigmoid(log 3) = 3/4: -log 0.75
RECONSTRUCTION = LOG2 - math.log(0.75)
KL_Z = 0.5 * ((1 + 1 - 1 - 0) + (0 + 2 - 1 - LOG2))  # 0.5 * sum(mu^2 + var - 1 - logvar)


def test_gaussian_kl_by_hand():
    assert gaussian_kl(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, LOG2]])).item() == pytest.approx(KL_Z)  # 0.65343


def test_labelled_bound_by_hand():
    # reconstruction 0.98083 + KL(z) 0.65343 + log K (-log p(y) under a uniform prior) 0.69315 = 2.32741
    value = labelled_bound(tiny_vae(), X, torch.tensor([[0.0, 1.0]]))
    assert value.item() == pytest.approx(RECONSTRUCTION + KL_Z + LOG2, abs=1e-5)
    assert value.item() == pytest.approx(2.32741, abs=1e-4)


def test_unlabelled_bound_by_hand():
    # KL(q(y|x) || uniform) = 0.75 log 1.5 + 0.25 log 0.5 = 0.13081 replaces log K; the decoder ignores y here
    kl_y = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    value = unlabelled_bound(tiny_vae(), X, temperature=0.5)
    assert value.item() == pytest.approx(RECONSTRUCTION + KL_Z + kl_y, abs=1e-5)


def test_reverse_bound_matches_plain_monte_carlo():
    vae = tiny_vae()
    with torch.no_grad():
        vae.head.weight.copy_(torch.tensor([[2.0, -1.0], [-1.0, 1.5]]))  # q(y|x~) now depends on x~
    y = torch.tensor([0.0, 1.0])
    torch.manual_seed(0)
    estimate = reverse_bound(vae, y.repeat(200_000, 1), temperature=0.5).mean().item()

    # Plain Monte Carlo of E_{x~ ~ RelaxedBernoulli(0.5, decoder logits)}[-log q(y | x~) + log q(x~ | y, z)], another seed
    torch.manual_seed(1)
    logits = torch.tensor([0.0, LOG3])
    x01 = RelaxedBernoulli(torch.tensor(0.5), logits=logits).sample((200_000,))
    class_logits = (2 * x01 - 1) @ vae.head.weight.detach().T + vae.head.bias.detach()
    minus_log_q_y = -F.log_softmax(class_logits, dim=1)[:, 1]
    log_q_x = (x01 * F.logsigmoid(logits) + (1 - x01) * F.logsigmoid(-logits)).sum(1)
    assert estimate == pytest.approx((minus_log_q_y + log_q_x).mean().item(), abs=0.01)


def test_reverse_bound_trains_decoder_and_classifier_through_the_class_likelihood_only():
    torch.manual_seed(0)
    vae = InvertedVAE(nn.Flatten(), feature_dim=4, num_classes=3, image_shape=(1, 2, 2), latent_dim=2, hidden=8)
    y = F.one_hot(torch.tensor([0, 2, 1]), 3).float()
    torch.manual_seed(1)
    reverse_bound(vae, y, 0.5).sum().backward()
    bound_grads = [p.grad.clone() for p in (vae.decoder[0].weight, vae.head.weight)]
    vae.zero_grad()
    torch.manual_seed(1)  # the same z and x~: only -log q(y | x~) carries gradient
    _, x_tilde = generate(vae, y, 0.5)
    (-(y * F.log_softmax(vae(x_tilde), dim=1)).sum()).backward()
    for bound, likelihood in zip(bound_grads, (vae.decoder[0].weight.grad, vae.head.weight.grad)):
        assert bound.abs().sum() > 0
        torch.testing.assert_close(bound, likelihood)


def test_gumbel_softmax_sample_passes_gradients_to_the_classifier():
    torch.manual_seed(0)
    vae = InvertedVAE(nn.Flatten(), feature_dim=4, num_classes=3, image_shape=(1, 2, 2), latent_dim=2, hidden=8)
    x = torch.rand(5, 1, 2, 2) * 2 - 1
    # the reconstruction term alone (KL(q(y|x)) also reaches the head without any sampling)
    logits = vae(x)
    y = F.gumbel_softmax(logits, tau=0.5)
    recon = F.binary_cross_entropy_with_logits(vae.decode(y, torch.zeros(5, 2)), (x.flatten(1) + 1) / 2)
    (head_grad,) = torch.autograd.grad(recon, vae.head.weight)
    assert torch.isfinite(head_grad).all() and head_grad.abs().sum() > 0
    unlabelled_bound(vae, x, 0.5).mean().backward()
    assert all(p.grad is not None for p in (vae.head.weight, vae.encoder[0].weight, vae.decoder[0].weight))


def test_label_vectors_from_ids_and_soft_labels():
    assert label_vectors({"label": np.array([2, 0])}, 3, "y.csv").tolist() == [[0, 0, 1], [1, 0, 0]]
    soft = label_vectors({"probs": np.array([[0.5, 0.5, 0.0]], dtype=object)}, 3, "y.parquet")
    assert soft.tolist() == [[0.5, 0.5, 0.0]]
    columns = label_vectors({"p0": np.array([0.2]), "p1": np.array([0.8])}, 2, "y.csv")
    assert columns[0].tolist() == pytest.approx([0.2, 0.8])


@pytest.mark.parametrize(
    "columns, message",
    [
        ({"label": np.array([1, 3, 12])}, "y.csv: row 12: class id 12 is not in [0, 10)"),
        ({"label": np.array([-1])}, "row 10: class id -1"),
        ({"label": np.array([0.5])}, "must hold integer class ids"),
        ({"p0": np.array([0.5]), "p1": np.array([0.6])}, "row 10: [0.5"),
        ({"image": np.array([1])}, "needs a column 'label'"),
    ],
)
def test_label_vectors_name_the_bad_row(columns, message):
    k = 10 if "label" in columns else 2
    with pytest.raises(LabelOnlyError) as err:
        label_vectors(columns, k, "y.csv", first_row=10)
    assert message in str(err.value)
