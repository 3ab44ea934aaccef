"""Noise As Targets (Bojanowski & Joulin, 2017).

Each of the N training images owns one fixed target drawn uniformly on the unit sphere of
R^d. The network's L2-normalised features are pulled towards their image's target with a
squared loss; every few epochs, within each batch, the targets held by the batch's images are
re-permuted among them by optimal assignment (Hungarian algorithm).

Targets are never stored: target row r is regenerated from (seed, r) by a counter-based
generator (`targets_for`), so a worker holds only the int32 assignment table (5 MB at N = 1.28 M
instead of 655 MB of float32 targets at d = 128), and a step's cost depends on B and d, not N.

The assignment table maps a sample's stable integer `index` to a target row. It must be the
same on every worker (Ray Data hands any sample to any worker in any epoch), so each step's
per-batch updates are all-gathered and applied everywhere; they are disjoint because the
batches on different workers hold different samples. The table is a permutation of 0..N-1.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from rayssl.config import PretrainConfig
from rayssl.methods.base import GatherFn, StepContext
from rayssl.models import build_backbone, feature_dim
from rayssl.models.classifier import LinearHead

TARGETS_VERSION = 2  # 1: a stored [N, d] matrix from torch.randn; 2: targets_for (counter-based)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014) on uint64 counters: a bijective hash whose
    outputs pass BigCrush, the usual way to turn counters into independent random words."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def targets_for(rows: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """Target rows [B] -> [B, dim] float32 unit vectors, uniform on the sphere; row r's vector
    depends only on (seed, r, dim), never on which other rows are asked for or on N.

    Counter (seed, r, j) -> SplitMix64 -> two 53-bit uniforms per pair of coordinates ->
    Box-Muller Gaussians -> L2 normalisation.
    """
    half = (dim + 1) // 2
    r = rows.detach().cpu().numpy().astype(np.uint64)[:, None]
    j = np.arange(2 * half, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        counters = ((np.uint64(seed) << np.uint64(40)) + r) * np.uint64(2 * half) + j
        words = _splitmix64(counters)
    uniform = ((words >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53  # (0, 1]
    radius = np.sqrt(-2.0 * np.log(uniform[:, :half]))
    angle = 2.0 * np.pi * uniform[:, half:]
    gauss = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], axis=1)[:, :dim]
    return F.normalize(torch.from_numpy(gauss.astype(np.float32)), dim=1)


def initial_table(num_samples: int, seed: int) -> torch.Tensor:
    """[num_samples] int32: a seeded random permutation (sample index -> target row)."""
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randperm(num_samples, generator=g).to(torch.int32)


def nat_loss(z: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||z_i - t_i||^2. z, targets: [B, d], both unit-norm rows."""
    return (z - targets).pow(2).sum(dim=1).mean()


def reassign(z: torch.Tensor, assigned: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Optimal re-permutation of a batch's targets among its images.

    z: [B, d] features; assigned: [B] target rows currently held by the batch's images;
    targets: [B, d] those rows' target vectors. Minimises sum_i ||z_i - t_{new_i}||^2, i.e. the
    cost -z . t^T, over permutations of `assigned`. Returns the new [B] target rows (a
    permutation of `assigned`).
    """
    cost = -(z.detach().float().cpu() @ targets.T).numpy()  # [B, B]
    if not np.isfinite(cost).all():
        # Diverged features: keep the assignment; the training loop reports the divergence.
        return assigned.clone()
    rows, cols = linear_sum_assignment(cost)
    new = torch.empty_like(assigned)
    new[torch.as_tensor(rows)] = assigned[torch.as_tensor(cols)].to(assigned.device)
    return new


def merge_updates(table: torch.Tensor, indices: torch.Tensor, new_targets: torch.Tensor) -> None:
    """Apply all workers' gathered updates in place. indices, new_targets: [W, B], -1 = padding.

    The updates must touch disjoint samples; overlapping ones would break the bijection, so
    they raise instead of being applied.
    """
    keep = indices >= 0
    idx, tgt = indices[keep], new_targets[keep]
    if idx.numel() != torch.unique(idx).numel():
        raise RuntimeError("NAT updates from different workers overlap: a sample was in two batches of one step")
    table[idx] = tgt.to(table.dtype)


class NATHead(LinearHead):
    """Backbone features [B, D] -> unit-norm codes [B, target_dim]."""

    def __init__(self, backbone: nn.Module, embed_dim: int, target_dim: int) -> None:
        super().__init__(backbone, embed_dim, target_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(super().forward(x), dim=1)


class NoiseAsTargets:
    """NAT state (fixed targets + assignment table) and the training step."""

    def __init__(self, num_samples: int, target_dim: int, seed: int) -> None:
        self.dim, self.seed = target_dim, seed
        self.table = initial_table(num_samples, seed)  # [N] int32; the targets themselves are regenerated

    def targets(self, rows: torch.Tensor) -> torch.Tensor:
        """[B] target rows -> [B, d] unit vectors."""
        return targets_for(rows, self.dim, self.seed)

    def step_loss(
        self, z: torch.Tensor, indices: torch.Tensor, do_reassign: bool, gather: GatherFn, batch_capacity: int
    ) -> tuple[torch.Tensor, int]:
        """Loss for one batch, reassigning first when `do_reassign`.

        z: [B, d] unit-norm features; indices: [B] sample indices. All workers must call this
        with the same `do_reassign` (the gather is a collective). `batch_capacity` >= B is the
        padded length of the gathered update. Returns (loss, number of samples whose target changed).
        """
        indices = indices.cpu()
        changed = 0
        if do_reassign:
            assigned = self.table[indices].long()
            new = reassign(z, assigned, self.targets(assigned))
            changed = int((new != assigned).sum())
            padded_idx = torch.full((batch_capacity,), -1, dtype=torch.int64)
            padded_new = torch.full((batch_capacity,), -1, dtype=torch.int64)
            padded_idx[: len(indices)], padded_new[: len(indices)] = indices, new
            merge_updates(self.table, gather(padded_idx), gather(padded_new))
        t = self.targets(self.table[indices]).to(z.device)
        return nat_loss(z, t), changed

    def state_dict(self) -> dict[str, torch.Tensor]:
        # Targets are regenerated from the seed; only the table changes during training.
        return {"table": self.table.clone(), "targets_version": torch.tensor(TARGETS_VERSION)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        table = state["table"]
        if table.shape != self.table.shape:
            raise ValueError(f"NAT table has {table.numel()} entries, the dataset has {self.table.numel()} samples")
        version = int(state.get("targets_version", 1))
        if version != TARGETS_VERSION:
            # Its table points into another generator's targets: resuming would train towards different ones.
            raise ValueError(
                f"NAT checkpoint uses targets version {version}, this release regenerates version {TARGETS_VERSION}: "
                "start a new run (a new run.name) instead of resuming this one"
            )
        self.table = table.to(torch.int32).clone()


class NATMethod:
    """Noise As Targets on any backbone: a linear head to the unit sphere + the assignment table."""

    two_views = False

    def __init__(self, cfg: PretrainConfig, num_samples: int) -> None:
        backbone = build_backbone(cfg.model, cfg.data.channels, cfg.data.image_size)
        self.model = NATHead(backbone, feature_dim(cfg.model), cfg.nat.target_dim)
        self.nat = NoiseAsTargets(num_samples, cfg.nat.target_dim, cfg.nat.seed)
        self.reassign_every = cfg.nat.reassign_every

    def step(self, model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z = model(batch["image"])
        do_reassign = ctx.epoch % self.reassign_every == 0  # the same on every worker
        loss, changed = self.nat.step_loss(z, batch["index"], do_reassign, ctx.gather, ctx.batch_capacity)
        return loss, {"reassigned_fraction": torch.tensor(float(changed))}

    def backbone(self) -> nn.Module:
        return self.model.backbone

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.nat.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.nat.load_state_dict(state)

    def on_checkpoint(self, run_dir: str, epoch: int) -> dict[str, torch.Tensor]:
        return {}
