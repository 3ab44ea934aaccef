"""The interfaces of the methods: PretrainMethod (pretraining) and FinetuneObjective (fine-tuning), and what their steps see."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from rayssl.config import AugmentConfig, FinetuneConfig, SweepConfig
from rayssl.methods.sweep_rows import SweepRow
from rayssl.models.classifier import Classifier

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


class FinetuneObjective:
    """Base of the fine-tuning objectives (rayssl.methods.registry.FINETUNING), built per run as cls(cfg, net).

    The classifier's terms (supervised, inversion, FixMatch) share one forward (`forward`, which at
    most one active term overrides); a `standalone` method (the inverted VAE) computes its own loss.
    The defaults: reads no unlabelled image, no strong view, no label-only record, adds no sweep row.
    """

    standalone = False  # True: the whole loss, no shared classifier forward
    title = ""  # in `rayssl runs` and the run's log
    section = ""  # the FinetuneConfig section it owns ("" for none)

    def __init__(self, cfg: FinetuneConfig, net: nn.Module) -> None:
        self.run_cfg = cfg

    @staticmethod
    def active(cfg: FinetuneConfig) -> bool:
        """Whether a run with this config trains with the objective."""
        raise NotImplementedError

    @classmethod
    def describe(cls, cfg: FinetuneConfig) -> str:
        """'FixMatch (weight 1.0, confidence 0.95)': the title and its section's settings, for the run's log."""
        return f"{cls.title} ({settings(getattr(cfg, cls.section))})" if cls.section else cls.title

    @staticmethod
    def reads_unlabelled(cfg: FinetuneConfig) -> bool:
        return False

    @staticmethod
    def strong_view(cfg: FinetuneConfig) -> AugmentConfig | None:
        """The strong view of each unlabelled image the stream must carry (batch["image_view2"])."""
        return None

    @staticmethod
    def label_only_source(cfg: FinetuneConfig) -> str:
        """URI of the label-only records it reads ("" for none)."""
        return ""

    @staticmethod
    def label_only_batch_size(cfg: FinetuneConfig) -> int:
        return 0

    @staticmethod
    def resolved(cfg: FinetuneConfig, labelled_labels: np.ndarray, label_only: np.ndarray) -> FinetuneConfig:
        """cfg with what this objective derives from the run's data filled in, at launch, before the run's
        config.yaml is written (labelled_labels int [N], label_only float [M, K]); default: cfg as is."""
        return cfg

    @staticmethod
    def network(cfg: FinetuneConfig, backbone: nn.Module, dim: int) -> Classifier | None:
        """A standalone method's own network around the backbone (features [B, dim]); None: the classifier."""
        return None

    @staticmethod
    def sweep_rows(sweep: SweepConfig) -> list[SweepRow]:
        """Its rows of the sweep's table (those the sweep's flags enable)."""
        return []

    def forward(self, model: nn.Module, x: torch.Tensor, n_labelled: int) -> ClassifierForward | None:
        """The shared forward over x [L + U, C, H, W] (the first n_labelled labelled), or None to leave it to a plain model(x)."""
        return None

    def loss_terms(
        self, model: nn.Module, batch: FinetuneBatch, out: ClassifierForward | None
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """(weighted loss parts, added in order; {stat name: sum over the batch's rows})."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """State beyond the model's weights that a checkpoint keeps (e.g. adaptive thresholds); {} for none."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what state_dict returned ({} from a checkpoint written without it: keep the initial state)."""


def settings(section: Any) -> str:
    """A config section's scalar settings for a log line: 'kind global, alpha 0.1' (nested sections left out)."""
    return ", ".join(
        f"{f.name} {getattr(section, f.name)}"
        for f in dataclasses.fields(section)
        if not dataclasses.is_dataclass(getattr(section, f.name))
    )
