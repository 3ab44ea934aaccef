"""The interface every pretraining method implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import nn

# gather(local [B] int64) -> [world_size, B] int64 on every rank (identity-like on one process)
GatherFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StepContext:
    epoch: int
    gather: GatherFn
    batch_capacity: int  # the configured per-worker batch size (>= any batch's length)


class PretrainMethod(Protocol):
    model: nn.Module  # what the optimiser trains (wrapped in DDP by the loop)

    def step(self, model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, {stat name: sum over the batch}) for one batch {index [B], image [B, C, H, W], label [B]}."""

    def backbone(self) -> nn.Module:
        """Frozen-feature extractor [B, C, H, W] -> [B, D] for probes and fine-tuning."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Method state beyond the model's weights (e.g. the NAT table)."""

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...

    def on_checkpoint(self, run_dir: str, epoch: int) -> dict[str, torch.Tensor]:
        """Artifacts rank 0 writes next to each checkpoint (MAE: the reconstruction grid); returns
        the images to show in TensorBoard, {tag: [C, H, W] in [0, 1]}."""
