"""Deep network inversion reconstructions (Balestriero et al., arXiv 1711.04313 and 1802.10172).

A ReLU / max-pool network is piecewise affine: f(x) = A[x] x + b[x]. Its inverse estimate is
x_hat = A[x]^T f(x), a vector-Jacobian product that autograd gives without forming A:
grad_x 1/2 ||f(x)||^2 = A[x]^T f(x). With create_graph=True the reconstruction is itself
differentiable, through A[x] and through f(x) (a double backward, about 2x a supervised step).

The fine-tuning objective (`Inversion`, config section `inversion`): CE + alpha * reconstruction
of every image in the step + beta * prediction entropy of the unlabelled ones.

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

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from rayssl.config import BLOCK_BACKBONES, ConfigError, FinetuneConfig, SweepConfig
from rayssl.methods.base import ClassifierForward, FinetuneBatch, FinetuneObjective
from rayssl.methods.sweep_rows import SweepRow, TrialSample, trial_with
from rayssl.models.classifier import Classifier


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
    total = sum(reconstruction_loss(h, h_hat) / h[0].numel() for h, h_hat in pairs)
    assert isinstance(total, torch.Tensor), "a chain of layers has at least one layer (the head)"
    return total


def sigmoid_rampup(step: int, length: int) -> float:
    """Weight multiplier at `step` of a ramp over `length` steps: exp(-5 (1 - t)^2), t = step / length
    clipped to [0, 1] (Laine & Aila, "Temporal Ensembling", arXiv 1610.02242): 0.0067 at the start,
    1 from `length` on; length 0 means no ramp (1 throughout)."""
    if length <= 0:
        return 1.0
    t = min(max(step, 0), length) / length
    return math.exp(-5.0 * (1.0 - t) ** 2)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the prediction entropy -sum_k p_k log p_k (nats). logits [B, K]."""
    if not len(logits):
        return logits.sum() * 0
    log_p = logits.log_softmax(dim=1)
    return -(log_p.exp() * log_p).sum(dim=1).mean()


class Inversion(FinetuneObjective):
    """alpha * reconstruction of [labelled; unlabelled] (global or multiscale) + beta * entropy of the
    unlabelled predictions, the entropy weight ramped up over inversion.beta_rampup_steps."""

    title = "inversion"
    section = "inversion"

    def __init__(self, cfg: FinetuneConfig, net: nn.Module) -> None:
        super().__init__(cfg, net)
        self.cfg = cfg.inversion
        self.layers: list[nn.Module] | None = None
        if self.cfg.alpha > 0 and self.cfg.kind == "multiscale":
            assert isinstance(net, Classifier), "fine-tuning trains a Classifier (rayssl.train.pretrained.build_classifier)"
            self.layers = net.layers()
        if self.cfg.alpha > 0 and self.cfg.kind == "multiscale" and self.layers is None:
            raise ConfigError(
                f"inversion.kind: multiscale needs a backbone made of blocks {BLOCK_BACKBONES}, got model.name {cfg.model.name!r}"
            )

    @staticmethod
    def active(cfg: FinetuneConfig) -> bool:
        return cfg.method == "classifier" and (cfg.inversion.alpha > 0 or cfg.inversion.beta > 0)

    @staticmethod
    def reads_unlabelled(cfg: FinetuneConfig) -> bool:
        return True

    def forward(self, model: nn.Module, x: torch.Tensor, n_labelled: int) -> ClassifierForward | None:
        if self.cfg.alpha <= 0:
            return None  # entropy only: a plain forward
        if self.layers is not None:
            logits, pairs = layerwise_reconstruction(self.layers, x)
            return ClassifierForward(logits, n_labelled, multiscale_loss(pairs))
        logits, x_hat = inversion_reconstruction(model, x)
        return ClassifierForward(logits, n_labelled, reconstruction_loss(x, x_hat))

    def loss_terms(
        self, model: nn.Module, batch: FinetuneBatch, out: ClassifierForward | None
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        assert out is not None
        parts, stats = [], {}
        if out.reconstruction is not None:
            parts.append(self.cfg.alpha * out.reconstruction)
            stats["reconstruction"] = out.reconstruction.detach() * batch.rows
        if self.cfg.beta > 0:
            beta = self.cfg.beta * sigmoid_rampup(batch.step, self.cfg.beta_rampup_steps)
            parts.append(beta * entropy(out.logits[out.n_labelled :]))
        return parts, stats

    @staticmethod
    def sweep_rows(sweep: SweepConfig) -> list[SweepRow]:
        """ "+ inversion loss" from scratch (sweep.inversion), and one "<name>-pretrained + inversion" row per pretrained run."""
        rows = [SweepRow("inversion", "+ inversion loss", _with_inversion)] if sweep.inversion else []
        return rows + [
            SweepRow(f"pretrained:{name}", f"{name}-pretrained + inversion", _pretrained(uri), pretrained=True)
            for name, uri in sweep.pretrained.items()
        ]


def _with_inversion(base: FinetuneConfig, sample: TrialSample) -> FinetuneConfig:
    return trial_with(base, alpha=sample.alpha, beta=sample.beta)


def _pretrained(uri: str) -> Callable[[FinetuneConfig, TrialSample], FinetuneConfig]:
    """The inversion row started from the pretraining run at `uri`."""
    return lambda base, sample: trial_with(base, alpha=sample.alpha, beta=sample.beta, init=uri)
