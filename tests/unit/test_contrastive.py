"""NT-Xent against a hand-computed value, and 2 workers against 1 with the same global batch."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rayssl.config import MAEConfig, ViTConfig
from rayssl.methods.contrastive import nt_xent
from rayssl.models.contrastive import MaskedContrastiveAutoencoder
from rayssl.models.mae import MaskedAutoencoder


def test_nt_xent_two_images_two_views_by_hand():
    # z1 = (1, 0), (0, 1); z2 = (1, 1)/sqrt2, (-1, 1)/sqrt2 after normalising; t = 0.5, so each
    # cosine c = 1/sqrt2 becomes a logit 2c = 1.41421 (e^2c = 4.11325, e^-2c = 0.24312).
    # Anchor z1[0]: positive z2[0] (+c), negatives z1[1] (0), z2[1] (-c): -log(4.11325 / (4.11325 + 1 + 0.24312)) = 0.26407
    # Anchor z1[1]: positive z2[1] (+c), negatives z1[0] (0), z2[0] (+c): -log(4.11325 / (2 * 4.11325 + 1)) = 0.80786
    # Anchor z2[0]: positive z1[0] (+c), negatives z1[1] (+c), z2[1] (0): 0.80786; anchor z2[1]: 0.26407.
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[3.0, 3.0], [-2.0, 2.0]])  # lengths do not matter: cosine similarity
    expected = (0.26407 + 0.80786 + 0.80786 + 0.26407) / 4
    assert nt_xent(z1, z2, temperature=0.5).item() == pytest.approx(expected, abs=1e-4)


def test_nt_xent_is_low_for_matching_views_and_gradients_flow():
    torch.manual_seed(0)
    z = torch.randn(16, 8, requires_grad=True)
    matched = nt_xent(z, z + 0.01 * torch.randn(16, 8), 0.1)
    shuffled = nt_xent(z, z[torch.randperm(16)], 0.1)
    assert matched.item() < 0.1 < shuffled.item()
    shuffled.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))


def _views() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 6, generator=g)
    return x, x + 0.3 * torch.randn(8, 6, generator=g)


def _worker(rank: int, world: int, store: str, out: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # ranks talk over loopback only
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    model = DistributedDataParallel(_model())
    v1, v2 = _views()
    local = slice(rank * 4, rank * 4 + 4)  # this rank's half of the global batch of 8
    loss = nt_xent(model(v1[local]), model(v2[local]), 0.5)
    loss.backward()
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    torch.save({"loss": mean_loss / world, "grads": [p.grad for p in model.parameters()]}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_two_workers_match_one_worker_with_the_same_global_batch(tmp_path):
    model = _model()
    v1, v2 = _views()
    loss = nt_xent(model(v1), model(v2), 0.5)
    loss.backward()
    out = str(tmp_path / "rank")
    mp.start_processes(_worker, args=(2, str(tmp_path / "store"), out), nprocs=2, start_method="spawn")
    for rank in range(2):
        got = torch.load(f"{out}.{rank}")
        assert got["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
        # DDP's averaged gradient equals the one-process gradient: remote anchors' gradients reach this rank's rows.
        for mine, single in zip(got["grads"], (p.grad for p in model.parameters())):
            torch.testing.assert_close(mine, single, rtol=1e-4, atol=1e-6)
    assert math.isfinite(loss.item())


def test_masked_contrastive_model_returns_reconstruction_and_projection():
    mae = MaskedAutoencoder(
        ViTConfig(patch_size=4, width=32, depth=1, heads=2),
        MAEConfig(mask_ratio=0.5, decoder_width=16, decoder_depth=1, decoder_heads=2),
        1,
        16,
    )
    pred, mask, z = MaskedContrastiveAutoencoder(mae, hidden=32, out_dim=8)(torch.randn(6, 1, 16, 16))
    assert pred.shape == (6, 16, 16) and mask.shape == (6, 16) and z.shape == (6, 8)
    assert mask.sum(1).eq(8).all()  # half of the 16 patches masked in each image
