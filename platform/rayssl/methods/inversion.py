"""Deep network inversion reconstructions (Balestriero et al., arXiv 1711.04313 and 1802.10172).

A ReLU / max-pool network is piecewise affine: f(x) = A[x] x + b[x]. Its inverse estimate is
x_hat = A[x]^T f(x), a vector-Jacobian product that autograd gives without forming A:
grad_x 1/2 ||f(x)||^2 = A[x]^T f(x). With create_graph=True the reconstruction is itself
differentiable, through A[x] and through f(x) (a double backward, about 2x a supervised step).

- global (1711.04313): one term, the input from the network's output, ||x - A[x]^T f(x)||^2.
- multiscale (1802.10172): one term per layer, each layer's input h_{l-1} from its output h_l
  through that layer's own transposed local linear map, ||h_{l-1} - A_l^T h_l||^2, divided by the
  size of h_{l-1} so that wide early layers do not drown the deep ones.

For networks that are not piecewise affine (the MAE ViT: softmax attention, GELU, LayerNorm),
the same product is the transpose of the local Jacobian applied to f(x): a first-order
linearisation around x rather than an exact inverse, still a useful reconstruction signal.
Its attention runs on PyTorch's math SDPA backend here: the fused kernels (flash, memory-efficient)
have no second derivative, and the double backward needs one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel


def _transposed_map(out: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
    """A^T out for out = A inp + b (locally), differentiable: grad_inp of 1/2 ||out||^2."""
    (rec,) = torch.autograd.grad(0.5 * out.pow(2).sum(), inp, create_graph=True)
    return rec


def inversion_reconstruction(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x) [B, K], x_hat = J_f(x)^T f(x) [B, C, H, W]); x_hat is differentiable w.r.t. f's weights."""
    x = x.detach().requires_grad_(True)
    with sdpa_kernel(SDPBackend.MATH):  # no-op for networks without attention
        out = f(x)
    return out, _transposed_map(out, x)


def layerwise_reconstruction(layers: Sequence[nn.Module], x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Run the chain `layers` on x; returns (output [B, K], [(h_{l-1}, A_l^T h_l)] per layer).

    Each reconstruction only differentiates through its own layer: autograd.grad stops at the
    layer's input, which is still connected to the earlier layers for the outer backward.
    """
    h = x.detach().requires_grad_(True)
    pairs = []
    for layer in layers:
        out = layer(h)
        pairs.append((h, _transposed_map(out, h)))
        h = out
    return h, pairs


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Global term: mean over the batch of ||x - x_hat||^2 (summed over pixels). x, x_hat [B, ...]."""
    return (x - x_hat).pow(2).flatten(1).sum(dim=1).mean()


def multiscale_loss(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Multiscale term: sum over layers of mean over the batch of ||h - h_hat||^2 / dim(h)."""
    return sum(reconstruction_loss(h, h_hat) / h[0].numel() for h, h_hat in pairs)
