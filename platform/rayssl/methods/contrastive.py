"""SimCLR (Chen et al. 2020, arXiv 2002.05709): NT-Xent between two views, negatives from every worker.

Pure torch: torch.distributed is used only when a process group with more than one rank exists.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import nn

from rayssl.config import PretrainConfig
from rayssl.methods.base import StatelessMethod, StepContext
from rayssl.models import build_backbone, feature_dim
from rayssl.models.contrastive import ContrastiveNet


def _world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(local: torch.Tensor) -> tuple[torch.Tensor, int]:
    """[B, D] on every rank -> ([W*B, D] in rank order, offset of this rank's rows).

    torch.distributed.nn's all_gather is differentiable: its backward sums, over ranks, the
    gradient every rank's loss sends to this rank's rows. With DDP averaging the parameter
    gradients, each rank's update then equals that of one process holding the whole global batch.
    """
    rank, world = _world()
    if world == 1:
        return local, 0
    return torch.cat(dist_fn.all_gather(local.contiguous())), rank * local.shape[0]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalised-temperature cross entropy over two views, negatives from all ranks.

    z1, z2: [B, D] projections of this rank's two views of the same B images (row i of z1 and of
    z2 are positives). Every one of the 2B local rows is an anchor; its candidates are the other
    2WB - 1 rows of both views on every rank. Returns the mean over this rank's anchors of

        -log exp(cos(a, p) / t) / sum_{k != a} exp(cos(a, k) / t),

    so the mean over ranks is the loss of one process with the whole global batch.
    """
    b = z1.shape[0]
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    all1, offset = gather_with_grad(z1)
    all2, _ = gather_with_grad(z2)
    n = all1.shape[0]  # W * B
    candidates = torch.cat([all1, all2])  # [2WB, D]: view 1 of every image, then view 2
    anchors = torch.cat([z1, z2])  # [2B, D]
    logits = anchors @ candidates.T / temperature  # [2B, 2WB]
    local = torch.arange(b, device=z1.device) + offset
    own = torch.cat([local, local + n])  # each anchor's own column
    partner = torch.cat([local + n, local])  # its other view
    is_self = F.one_hot(own, 2 * n).bool()
    return F.cross_entropy(logits.masked_fill(is_self, float("-inf")), partner)


class SimCLRMethod(StatelessMethod):
    """SimCLR on any backbone: NT-Xent between the projections of two views, negatives from every worker."""

    two_views = True

    def __init__(self, cfg: PretrainConfig, num_samples: int) -> None:
        c = cfg.contrastive
        backbone = build_backbone(cfg.model, cfg.data.channels, cfg.data.image_size)
        self.model = ContrastiveNet(backbone, feature_dim(cfg.model), c.projection_hidden, c.projection_dim)
        self.temperature = c.temperature

    def step(self, model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b = len(batch["image"])
        # One forward over both views: batch norm sees 2B images, as in SimCLR.
        z = model(torch.cat([batch["image"], batch["image_view2"]]))
        return nt_xent(z[:b], z[b:], self.temperature), {}

    def backbone(self) -> nn.Module:
        return self.model.backbone
