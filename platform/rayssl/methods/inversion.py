"""Deep network inversion reconstruction (Balestriero et al., 2018).

A ReLU / max-pool network is piecewise affine: f(x) = A[x] x + b[x]. Its inverse estimate is
x_hat = A[x]^T f(x), a vector-Jacobian product that autograd gives without forming A:
grad_x <f(x), stop_grad(f(x))> = A[x]^T f(x). With create_graph=True the reconstruction error is
itself differentiable (a double backward, about 2x the cost of a supervised step).

For networks that are not piecewise affine (the MAE ViT: softmax attention, GELU, LayerNorm),
the same product is the transpose of the local Jacobian applied to f(x): a first-order
linearisation around x rather than an exact inverse, still a useful reconstruction signal.
Its attention runs on PyTorch's math SDPA backend here: the fused kernels (flash, memory-efficient)
have no second derivative, and the double backward needs one.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def inversion_reconstruction(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x) [B, K], x_hat = J_f(x)^T f(x) [B, C, H, W]); x_hat is differentiable w.r.t. f's weights."""
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    with sdpa_kernel(SDPBackend.MATH):  # no-op for networks without attention
        out = f(x)
    (x_hat,) = torch.autograd.grad((out * out.detach()).sum(), x, create_graph=True)
    return out, x_hat


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||x - x_hat||^2."""
    return (x - x_hat).pow(2).flatten(1).sum(dim=1).mean()


def semisupervised_loss(
    logits: torch.Tensor, labels: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor, alpha: float, beta: float = 0.0
) -> torch.Tensor:
    """CE on labelled rows (label >= 0) + alpha * ||x - x_hat||^2 on all rows + beta * entropy on unlabelled rows.

    logits [B, K]; labels [B] (-1 = unlabelled); x, x_hat [B, C, H, W].
    """
    labelled = labels >= 0
    loss = torch.nn.functional.cross_entropy(logits[labelled], labels[labelled]) if labelled.any() else logits.sum() * 0
    if alpha:
        loss = loss + alpha * reconstruction_loss(x, x_hat)
    if beta and (~labelled).any():
        p = logits[~labelled].softmax(dim=1)
        loss = loss + beta * -(p * p.clamp_min(1e-12).log()).sum(dim=1).mean()
    return loss
