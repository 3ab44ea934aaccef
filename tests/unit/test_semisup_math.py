import numpy as np
import pytest
import torch
from torch import nn

from rayssl.data.labels import LeakageError, balanced_subsets, check_no_leakage
from rayssl.methods.inversion import inversion_reconstruction, semisupervised_loss


def test_inversion_equals_jacobian_transpose_times_output():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 4)).double()
    x = torch.randn(3, 1, 3, 4, dtype=torch.double)
    out, x_hat = inversion_reconstruction(net, x)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(net, x[i : i + 1]).reshape(4, 12)  # A[x_i]
        assert torch.allclose(x_hat[i].flatten(), jac.T @ out[i].detach(), atol=1e-10)


def test_alpha_zero_is_plain_cross_entropy():
    logits, labels = torch.randn(5, 3), torch.tensor([0, 2, -1, 1, -1])
    x, x_hat = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    expected = nn.functional.cross_entropy(logits[[0, 1, 3]], labels[[0, 1, 3]])
    assert torch.allclose(semisupervised_loss(logits, labels, x, x_hat, alpha=0.0), expected)
    assert semisupervised_loss(logits, labels, x, x_hat, alpha=1.0) > expected


def test_subsets_are_balanced_seeded_disjoint_and_nested():
    labels = np.repeat(np.arange(4), 30)
    a = balanced_subsets(labels, per_class=5, val_per_class=3, seed=7)
    assert np.array_equal(a.labelled, balanced_subsets(labels, 5, 3, seed=7).labelled)
    assert np.bincount(labels[a.labelled]).tolist() == [5] * 4
    assert np.bincount(labels[a.validation]).tolist() == [3] * 4
    assert not set(a.labelled) & set(a.validation)
    bigger = balanced_subsets(labels, per_class=10, val_per_class=3, seed=7)
    assert set(a.labelled) <= set(bigger.labelled) and np.array_equal(a.validation, bigger.validation)
    assert not np.array_equal(a.labelled, balanced_subsets(labels, 5, 3, seed=8).labelled)
    with pytest.raises(ValueError, match="class 0 has 30 samples"):
        balanced_subsets(labels, per_class=28, val_per_class=3, seed=0)


def test_leakage_check_fires():
    check_no_leakage({"labelled": {"a", "b"}, "validation": {"c"}, "test": {"d"}})
    with pytest.raises(LeakageError, match="1 sample ids are in both 'labelled' and 'test'"):
        check_no_leakage({"labelled": {"a", "b"}, "validation": {"c"}, "test": {"b"}})


def test_inversion_loss_trains_a_vit_encoder():
    # Double backward through attention: the fused CPU/GPU attention kernels have no second
    # derivative, so the reconstruction must run attention on the differentiable math path.
    from rayssl.config import ViTConfig
    from rayssl.models.classifier import Classifier
    from rayssl.models.vit import ViTEncoder, ViTFeatures

    torch.manual_seed(0)
    model = Classifier(ViTFeatures(ViTEncoder(ViTConfig(patch_size=4, width=32, depth=2, heads=4), 1, 16)), 32, 3).train()
    x = torch.randn(4, 1, 16, 16)
    logits, x_hat = inversion_reconstruction(model, x)
    assert x_hat.shape == x.shape
    semisupervised_loss(logits, torch.tensor([0, 1, -1, -1]), x, x_hat, alpha=0.1).backward()
    grad = model.backbone.encoder.blocks[0].self_attention.in_proj_weight.grad
    assert grad is not None and grad.abs().sum() > 0
