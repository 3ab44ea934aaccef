"""The interface every pretraining method implements."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

# gather(local [B] int64) -> [world_size, B] int64 on every rank (identity-like on one process)
GatherFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StepContext:
    epoch: int
    gather: GatherFn
    batch_capacity: int  # the configured per-worker batch size (>= any batch's length)


class StatelessMethod:
    """Methods whose whole state is the model's weights."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass

    def on_checkpoint(self, run_dir: str, epoch: int) -> dict[str, torch.Tensor]:
        return {}


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


@dataclass(frozen=True)
class FinetuneBatch:
    """One fine-tuning step's inputs, on the worker's device."""

    labelled: torch.Tensor  # [L, C, H, W] augmented labelled images
    labels: torch.Tensor  # [L] int64
    unlabelled: torch.Tensor  # [U, C, H, W] stream images, validation and test images removed (U may be 0)
    strong: torch.Tensor | None  # [U, C, H, W] strong views of the unlabelled images (methods with a strong_view)
    label_only: torch.Tensor | None  # [M, K] label distributions of label-only records, or None this step
    rows: int  # the step's batch rows (stats are sums over them: the loop divides by its image count)
    step: int  # optimiser steps taken so far


@dataclass(frozen=True)
class ClassifierForward:
    """The one forward of [labelled; unlabelled] images the classifier's loss terms share."""

    logits: torch.Tensor  # [L + U, K]
    n_labelled: int
    reconstruction: torch.Tensor | None = None  # scalar, when the forward went through the inversion


class FinetuneObjective(Protocol):
    """A fine-tuning loss term (rayssl.methods.registry.FINETUNING), built per run as cls(cfg, net).

    The classifier's terms (supervised, inversion, FixMatch) share one forward (`forward`, which at
    most one active term overrides); a `standalone` method (the inverted VAE) computes its own loss.
    """

    standalone: bool  # True: the whole loss, no shared classifier forward

    def forward(self, model: nn.Module, x: torch.Tensor, n_labelled: int) -> ClassifierForward | None:
        """The shared forward over x [L + U, C, H, W] (the first n_labelled labelled), or None to leave it to a plain model(x)."""

    def loss_terms(
        self, model: nn.Module, batch: FinetuneBatch, out: ClassifierForward | None
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """(weighted loss parts, added in order; {stat name: sum over the batch's rows})."""


def settings(section: Any) -> str:
    """A config section's scalar settings for a log line: 'kind global, alpha 0.1' (nested sections left out)."""
    return ", ".join(
        f"{f.name} {getattr(section, f.name)}"
        for f in dataclasses.fields(section)
        if not dataclasses.is_dataclass(getattr(section, f.name))
    )
