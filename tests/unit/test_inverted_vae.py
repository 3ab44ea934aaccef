"""The inverted VAE's bounds on a tiny model, against hand-computed values, exact enumeration and
plain Monte Carlo; where each bound's gradient goes (exact vs relaxed reverse samples, Gumbel-Softmax);
the uniform-box prior; binarised inputs; validation of label-only tables and of the ivae section."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import RelaxedBernoulli

from rayssl.config import ConfigError, FinetuneConfig, load_config
from rayssl.data.label_only import LabelOnlyError, label_vectors
from rayssl.methods.base import FinetuneBatch
from rayssl.methods.inverted_vae import (
    BOX,
    InvertedVAEObjective,
    gaussian_kl,
    generate,
    labelled_bound,
    posterior_sample,
    prior_sample,
    reverse_bound,
    summed_unlabelled_bound,
    unlabelled_bound,
)
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


def test_relaxed_reverse_bound_matches_plain_monte_carlo():
    vae = tiny_vae()
    with torch.no_grad():
        vae.head.weight.copy_(torch.tensor([[2.0, -1.0], [-1.0, 1.5]]))  # q(y|x~) now depends on x~
    y = torch.tensor([0.0, 1.0])
    torch.manual_seed(0)
    estimate = reverse_bound(vae, y.repeat(200_000, 1), "relaxed_bernoulli", temperature=0.5).mean().item()

    # Plain Monte Carlo of E_{x~ ~ RelaxedBernoulli(0.5, decoder logits)}[-log q(y | x~) + log q(x~ | y, z)], another seed
    torch.manual_seed(1)
    logits = torch.tensor([0.0, LOG3])
    x01 = RelaxedBernoulli(torch.tensor(0.5), logits=logits).sample((200_000,))
    class_logits = (2 * x01 - 1) @ vae.head.weight.detach().T + vae.head.bias.detach()
    minus_log_q_y = -F.log_softmax(class_logits, dim=1)[:, 1]
    log_q_x = (x01 * F.logsigmoid(logits) + (1 - x01) * F.logsigmoid(-logits)).sum(1)
    assert estimate == pytest.approx((minus_log_q_y + log_q_x).mean().item(), abs=0.01)


def test_exact_reverse_bound_matches_the_sum_over_all_four_images():
    vae = tiny_vae()
    with torch.no_grad():
        vae.head.weight.copy_(torch.tensor([[2.0, -1.0], [-1.0, 1.5]]))
    y = torch.tensor([0.0, 1.0])
    torch.manual_seed(0)
    estimate = reverse_bound(vae, y.repeat(200_000, 1)).mean().item()  # the default: exact Bernoulli pixels

    # E_{x~ ~ Bernoulli(1/2, 3/4)}[-log q(y | x~) + log q(x~)], summed over the four binary images
    exact = 0.0
    for a in (0.0, 1.0):
        for b in (0.0, 1.0):
            p = (0.5) * (0.75 if b else 0.25)
            class_logits = torch.tensor([2 * a - 1, 2 * b - 1]) @ vae.head.weight.detach().T + vae.head.bias.detach()
            exact += p * (-F.log_softmax(class_logits, dim=0)[1].item() + math.log(p))
    assert estimate == pytest.approx(exact, abs=0.01)


def test_exact_bernoulli_reverse_bound_trains_the_classifier_and_not_the_decoder():
    torch.manual_seed(0)
    vae = InvertedVAE(nn.Flatten(), feature_dim=4, num_classes=3, image_shape=(1, 2, 2), latent_dim=2, hidden=8)
    y = F.one_hot(torch.tensor([0, 2, 1, 1]), 3).float()
    reverse_bound(vae, y, "bernoulli").sum().backward()
    assert vae.head.weight.grad is not None and vae.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in [*vae.decoder.parameters(), *vae.encoder.parameters()])

    vae.zero_grad(set_to_none=True)  # the relaxed sample, by contrast, sends the class likelihood into the decoder
    reverse_bound(vae, y, "relaxed_bernoulli", 0.5).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.decoder.parameters())


def test_relaxed_reverse_bound_trains_decoder_and_classifier_through_the_class_likelihood_only():
    torch.manual_seed(0)
    vae = InvertedVAE(nn.Flatten(), feature_dim=4, num_classes=3, image_shape=(1, 2, 2), latent_dim=2, hidden=8)
    y = F.one_hot(torch.tensor([0, 2, 1]), 3).float()
    torch.manual_seed(1)
    reverse_bound(vae, y, "relaxed_bernoulli", 0.5).sum().backward()
    bound_grads = [p.grad.clone() for p in (vae.decoder[0].weight, vae.head.weight)]
    vae.zero_grad()
    torch.manual_seed(1)  # the same z and x~: only -log q(y | x~) carries gradient
    _, x_tilde = generate(vae, y, "relaxed_bernoulli", 0.5)
    (-(y * F.log_softmax(vae(x_tilde), dim=1)).sum()).backward()
    for bound, likelihood in zip(bound_grads, (vae.decoder[0].weight.grad, vae.head.weight.grad)):
        assert bound.abs().sum() > 0
        torch.testing.assert_close(bound, likelihood)


def two_class_vae(head_bias: torch.Tensor) -> InvertedVAE:
    """2 classes, 2 pixels, 1 latent. q(y|x) = softmax(head_bias) whatever x; q(z|x,y) = N(1, 1) whatever
    x and y; decoder logits (log 3, -log 3) for y = 0 and (0, 0) for y = 1, whatever z."""
    vae = InvertedVAE(nn.Flatten(), feature_dim=2, num_classes=2, image_shape=(1, 1, 2), latent_dim=1, hidden=3)
    vae.encoder, vae.decoder = nn.Linear(4, 2), nn.Linear(3, 2)  # [x, y] -> (mu, logvar); [y, z] -> logits
    with torch.no_grad():
        vae.encoder.weight.zero_()
        vae.encoder.bias.copy_(torch.tensor([1.0, 0.0]))
        vae.decoder.weight.copy_(torch.tensor([[LOG3, 0.0, 0.0], [-LOG3, 0.0, 0.0]]))
        vae.decoder.bias.zero_()
        vae.head.weight.zero_()
    vae.head.bias = nn.Parameter(head_bias)
    return vae


def test_summed_unlabelled_bound_by_hand():
    # x = pixels (1, 0). y = 0: -log p(x|y,z) = -log 3/4 - log 3/4 = 2 log 4/3; y = 1: 2 log 2; KL(z) = 0.5 (mu 1, var 1).
    # Summed over y under q(y|x) = (3/4, 1/4), plus KL(q(y|x) || uniform):
    # 3/4 (2 log 4/3 + 0.5) + 1/4 (2 log 2 + 0.5) + 3/4 log 3/4 + 1/4 log 1/4 + log 2 = 1.40891
    vae = two_class_vae(torch.tensor([LOG3, 0.0]))
    x = torch.tensor([[[[1.0, -1.0]]]])
    value = summed_unlabelled_bound(vae, x)
    by_hand = 0.75 * (2 * math.log(4 / 3) + 0.5) + 0.25 * (2 * LOG2 + 0.5) + 0.75 * math.log(0.75) + 0.25 * math.log(0.25) + LOG2
    assert value.item() == pytest.approx(by_hand, abs=1e-5) and by_hand == pytest.approx(1.40891, abs=1e-5)

    # q(y|x) gets the exact gradient of the sum: that of the same formula with q = softmax(bias)
    (grad,) = torch.autograd.grad(value.sum(), vae.head.bias)
    b = torch.tensor([LOG3, 0.0], requires_grad=True)
    q = torch.softmax(b, dim=0)
    formula = q[0] * (2 * math.log(4 / 3) + 0.5) + q[1] * (2 * LOG2 + 0.5) + (q * q.log()).sum() + LOG2
    (expected,) = torch.autograd.grad(formula, b)
    assert grad.abs().sum() > 0
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("bound", ["summed", "relaxed"])
def test_unlabelled_bound_reaches_the_classifier_only_when_told(bound: str) -> None:
    torch.manual_seed(0)
    vae = InvertedVAE(nn.Flatten(), feature_dim=4, num_classes=3, image_shape=(1, 2, 2), latent_dim=2, hidden=8)
    batch = FinetuneBatch(
        labelled=torch.rand(2, 1, 2, 2) * 2 - 1,
        labels=torch.tensor([0, 2]),
        unlabelled=torch.rand(5, 1, 2, 2) * 2 - 1,
        strong=None,
        label_only=None,
        rows=5,
        step=0,
    )
    head_grads = {}
    for trains in (True, False):
        sets = ["method=inverted_vae", f"ivae.unlabelled_bound={bound}", f"ivae.unlabelled_trains_classifier={str(trains).lower()}"]
        # Only the unlabelled bound: the labelled terms' weights are 0, so any gradient comes from it.
        sets += ["ivae.labelled=0", "ivae.classification=0", "ivae.label_only=0", "semisup.num_classes=3"]
        objective = InvertedVAEObjective(load_config(FinetuneConfig, None, sets), vae)
        vae.zero_grad(set_to_none=True)
        parts, stats = objective.loss_terms(vae, batch, None)
        sum(parts).backward()
        assert "unlabelled_bound" in stats
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.decoder.parameters())  # it trains the decoder either way
        head_grads[trains] = vae.head.weight.grad
    assert head_grads[True] is not None and head_grads[True].abs().sum() > 0
    assert head_grads[False] is None or not head_grads[False].any()


def test_summed_bound_is_the_labelled_bound_when_q_is_certain():
    vae = two_class_vae(torch.tensor([30.0, 0.0]))  # q(y=0|x) = 1 - 1e-13
    x = torch.tensor([[[[1.0, -1.0]]]])
    summed = summed_unlabelled_bound(vae, x).item()
    assert summed == pytest.approx(labelled_bound(vae, x, torch.tensor([[1.0, 0.0]])).item(), abs=1e-5)
    assert summed == pytest.approx(2 * math.log(4 / 3) + 0.5 + LOG2, abs=1e-5)


def test_uniform_box_kl_estimate_is_unbiased_and_z_stays_in_the_box():
    mu, logvar = torch.tensor([[0.7]]).repeat(400_000, 1), torch.tensor([[math.log(0.64)]]).repeat(400_000, 1)
    torch.manual_seed(0)
    z, kl = posterior_sample(mu, logvar, "uniform_box")
    assert z.abs().max() < BOX and z.std() > 0.3
    # KL(q(z) || U(-BOX, BOX)) = E_u~N(0.7, 0.8^2)[log N(u) - log sigmoid(u) - log sigmoid(-u)], by quadrature on u
    u = torch.linspace(0.7 - 8 * 0.8, 0.7 + 8 * 0.8, 200_001, dtype=torch.float64)
    log_n = -0.5 * ((u - 0.7) / 0.8) ** 2 - math.log(0.8) - 0.5 * math.log(2 * math.pi)
    integrand = log_n.exp() * (log_n - F.logsigmoid(u) - F.logsigmoid(-u))
    exact = torch.trapezoid(integrand, u).item()
    assert exact > 0 and kl.mean().item() == pytest.approx(exact, abs=0.01)
    # and p(z) is the box: uniform draws, mean 0, variance BOX^2 / 3
    draws = prior_sample(400_000, 1, "uniform_box", torch.device("cpu"))
    assert draws.abs().max() < BOX and draws.var().item() == pytest.approx(BOX**2 / 3, rel=0.01)


def test_binarize_rounds_every_image_the_model_reads():
    torch.manual_seed(0)
    vae = InvertedVAE(nn.Flatten(), feature_dim=4, num_classes=3, image_shape=(1, 2, 2), latent_dim=2, hidden=8, binarize=True)
    x = torch.tensor([[[[-0.9, -0.1], [0.2, 0.95]]]])
    rounded = torch.tensor([[[[-1.0, -1.0], [1.0, 1.0]]]])
    torch.testing.assert_close(vae(x), vae(rounded))
    assert vae.pixels(x).tolist() == [[0.0, 0.0, 1.0, 1.0]]
    y = torch.tensor([[1.0, 0.0, 0.0]])
    torch.testing.assert_close(vae.encode(x, y), vae.encode(rounded, y))
    vae.binarize = False
    assert not torch.allclose(vae(x), vae(rounded))


def test_ivae_section_refuses_relaxed_samples_of_binarised_images():
    with pytest.raises(ConfigError, match=r"^ivae.reverse_sample: relaxed_bernoulli needs binarize: false"):
        load_config(FinetuneConfig, None, ["method=inverted_vae", "ivae.binarize=true", "ivae.reverse_sample=relaxed_bernoulli"])
    with pytest.raises(ConfigError, match=r"ivae.decoder_hidden\[1\]: must be > 0"):
        load_config(FinetuneConfig, None, ["ivae.decoder_hidden=[250, 0]"])
    cfg = load_config(FinetuneConfig, None, ["method=inverted_vae"])
    assert (cfg.ivae.reverse_sample, cfg.ivae.unlabelled_bound, cfg.ivae.prior) == ("bernoulli", "relaxed", "gaussian")


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


# A class prior p(y) = (0.8, 0.2) against a labelled set drawn at (0.5, 0.5).
PRIOR, LABELLED_FREQUENCIES = [0.8, 0.2], [0.5, 0.5]


def tiny_vae_with_prior() -> InvertedVAE:
    """tiny_vae() under p(y) = PRIOR: the head still says (0.75, 0.25) at the labelled frequencies."""
    vae = InvertedVAE(nn.Flatten(), 2, 2, (1, 1, 2), 2, 3, class_prior=PRIOR, labelled_frequencies=LABELLED_FREQUENCIES)
    vae.load_state_dict(tiny_vae().state_dict())  # the prior's buffers are not in a state dict
    return vae


def test_class_prior_shifts_q_and_enters_the_bounds_by_hand():
    vae = tiny_vae_with_prior()
    # q(y|x) under p(y): (0.75 * 0.8 / 0.5, 0.25 * 0.2 / 0.5) = (1.2, 0.1), normalised (12/13, 1/13)
    torch.testing.assert_close(F.softmax(vae(X), dim=1), torch.tensor([[12 / 13, 1 / 13]]))
    torch.testing.assert_close(F.softmax(vae.labelled_logits(X), dim=1), torch.tensor([[0.75, 0.25]]))
    # labelled (x, y = 1): -log p(y) = -log 0.2 (1.60944) in place of log K
    value = labelled_bound(vae, X, torch.tensor([[0.0, 1.0]]))
    assert value.item() == pytest.approx(RECONSTRUCTION + KL_Z - math.log(0.2), abs=1e-5)
    # unlabelled: KL(q(y|x) || p(y)) = 12/13 log((12/13) / 0.8) + 1/13 log((1/13) / 0.2) = 0.05859
    kl_y = 12 / 13 * math.log(12 / 13 / 0.8) + 1 / 13 * math.log(1 / 13 / 0.2)
    assert kl_y == pytest.approx(0.05859, abs=1e-5)
    assert unlabelled_bound(vae, X, temperature=0.5).item() == pytest.approx(RECONSTRUCTION + KL_Z + kl_y, abs=1e-5)


def test_class_prior_leaves_the_labelled_cross_entropy_on_the_head():
    vae = tiny_vae_with_prior()
    sets = ["method=inverted_vae", "semisup.num_classes=2", "ivae.unlabelled=0", "ivae.label_only=0"]
    sets += [f"ivae.class_prior_values={PRIOR}", f"ivae.labelled_frequencies={LABELLED_FREQUENCIES}"]
    batch = FinetuneBatch(labelled=X, labels=torch.tensor([1]), unlabelled=X[:0], strong=None, label_only=None, rows=1, step=0)
    _, stats = InvertedVAEObjective(load_config(FinetuneConfig, None, sets), vae).loss_terms(vae, batch, None)
    assert stats["ce"].item() == pytest.approx(-math.log(0.25), abs=1e-5)  # not -log(1/13) under p(y)


def test_class_prior_is_resolved_from_label_only_records_and_rebuilds_the_network():
    sets = ["method=inverted_vae", "semisup.num_classes=2", "ivae.class_prior=label_only", "ivae.label_only_data=labels.parquet"]
    cfg = load_config(FinetuneConfig, None, sets)
    records = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]], np.float32)  # 3 of class 0, 1 of class 1
    resolved = InvertedVAEObjective.resolved(cfg, np.array([0, 1, 1]), records)
    # add-one smoothed: records (3 + 1, 1 + 1) / (4 + 2); labelled (1 + 1, 2 + 1) / (3 + 2)
    assert resolved.ivae.class_prior_values == pytest.approx([2 / 3, 1 / 3])
    assert resolved.ivae.labelled_frequencies == pytest.approx([0.4, 0.6])
    vae = InvertedVAEObjective.network(resolved, nn.Flatten(), 4)
    torch.testing.assert_close(vae.prior_shift, torch.tensor([math.log(2 / 3 / 0.4), math.log(1 / 3 / 0.6)]))
    uniform = load_config(FinetuneConfig, None, ["method=inverted_vae", "semisup.num_classes=2"])
    assert InvertedVAEObjective.resolved(uniform, np.array([0, 1, 1]), records) is uniform
    assert not InvertedVAEObjective.network(uniform, nn.Flatten(), 4).prior_shift.any()


@pytest.mark.parametrize(
    "sets, message",
    [
        (["ivae.class_prior=label_only"], "ivae.class_prior: label_only takes the class frequencies of label-only records"),
        (
            ["ivae.class_prior_values=[0.5, 0.5]", "ivae.labelled_frequencies=[0.5, 0.5]"],
            "ivae.class_prior_values: 2 values for semisup.num_classes 10",
        ),
        (
            ["ivae.class_prior_values=[0.9, 0.9]", "ivae.labelled_frequencies=[0.5, 0.5]", "semisup.num_classes=2"],
            "must sum to 1, got 1.8000",
        ),
        (
            ["ivae.class_prior_values=[1.0, 0.0]", "ivae.labelled_frequencies=[0.5, 0.5]", "semisup.num_classes=2"],
            "class_prior_values[1]: must be",
        ),
    ],
)
def test_class_prior_settings_are_refused_with_the_key(sets: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(FinetuneConfig, None, ["method=inverted_vae", *sets])
