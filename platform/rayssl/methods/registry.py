"""Every method, by the name its config uses: one registry for pretraining and fine-tuning.

Adding a method is one module under rayssl.methods plus one line here (and, for fine-tuning, the
config section its module reads). Nothing else dispatches on a method's name.

- PRETRAINING[cfg.method]: a class with the PretrainMethod interface (rayssl.methods.base), built
  as cls(cfg, num_samples). `two_views`: it reads a second, independently augmented view of every
  image (batch["image_view2"], made in the Ray Data CPU stage with the same data.augment).
- FINETUNING: the fine-tuning objectives (FinetuneObjective), in the order their loss parts add
  up. A run uses those whose `active(cfg)` holds: the classifier's terms (supervised, inversion,
  FixMatch) or a standalone method (the inverted VAE, `method: inverted_vae`). Each also lists its
  rows of the sweep's table (`sweep_rows`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from rayssl.config import AugmentConfig, FinetuneConfig, PretrainConfig, SweepConfig
from rayssl.methods.base import FinetuneObjective, PretrainMethod
from rayssl.methods.contrastive import SimCLRMethod
from rayssl.methods.fixmatch import FixMatch
from rayssl.methods.inversion import Inversion
from rayssl.methods.inverted_vae import InvertedVAEObjective
from rayssl.methods.mae import MAEMethod
from rayssl.methods.masked_contrastive import MaskedContrastiveMethod
from rayssl.methods.nat import NATMethod
from rayssl.methods.supervised import Supervised
from rayssl.methods.sweep_rows import SweepRow
from rayssl.models.classifier import Classifier

PRETRAINING: dict[str, Any] = {"nat": NATMethod, "mae": MAEMethod, "simclr": SimCLRMethod, "masked_contrastive": MaskedContrastiveMethod}

FINETUNING: dict[str, type[FinetuneObjective]] = {
    "supervised": Supervised,
    "inversion": Inversion,
    "fixmatch": FixMatch,
    "inverted_vae": InvertedVAEObjective,
}


def build_method(cfg: PretrainConfig, num_samples: int) -> PretrainMethod:
    """The pretraining method cfg.method names (num_samples: train rows, for NAT's assignment table)."""
    return PRETRAINING[cfg.method](cfg, num_samples)


def two_views(cfg: PretrainConfig) -> bool:
    return PRETRAINING[cfg.method].two_views


def active_objectives(cfg: FinetuneConfig) -> list[type[FinetuneObjective]]:
    """The classes of the objectives this fine-tuning run trains with, in registry order."""
    return [objective for objective in FINETUNING.values() if objective.active(cfg)]


def build_objectives(cfg: FinetuneConfig, net: nn.Module) -> list[FinetuneObjective]:
    return [objective(cfg, net) for objective in active_objectives(cfg)]


def build_network(cfg: FinetuneConfig, backbone: nn.Module, dim: int) -> Classifier:
    """The network a fine-tuning run trains: an active objective's own (the inverted VAE's), else backbone + linear head."""
    own = (o.network(cfg, backbone, dim) for o in active_objectives(cfg))
    return next((net for net in own if net is not None), None) or Classifier(backbone, dim, cfg.semisup.num_classes)


def resolved(cfg: FinetuneConfig, labelled_labels: np.ndarray, label_only: np.ndarray) -> FinetuneConfig:
    """cfg with what every active objective derives from the run's data (labels [N], label-only records [M, K]) filled in."""
    for objective in active_objectives(cfg):
        cfg = objective.resolved(cfg, labelled_labels, label_only)
    return cfg


def reads_unlabelled(cfg: FinetuneConfig) -> bool:
    """Whether any active objective reads unlabelled images (else fine-tuning never opens the stream)."""
    return any(objective.reads_unlabelled(cfg) for objective in active_objectives(cfg))


def strong_view(cfg: FinetuneConfig) -> AugmentConfig | None:
    """The strong view the unlabelled stream carries (batch["image_view2"]), when an active objective reads one."""
    return next((view for o in active_objectives(cfg) if (view := o.strong_view(cfg)) is not None), None)


def label_only_source(cfg: FinetuneConfig) -> str:
    """URI of the label-only records an active objective reads ("" for none)."""
    return next((source for o in active_objectives(cfg) if (source := o.label_only_source(cfg))), "")


def describe(cfg: FinetuneConfig) -> str:
    """The active objectives and their settings, for the run's log: 'supervised; inversion (kind global, alpha 0.1, ...)'."""
    return "; ".join(o.describe(cfg) for o in active_objectives(cfg))


def label_only_batch_size(cfg: FinetuneConfig) -> int:
    """Label-only records drawn per step (0: the run reads none)."""
    return max((o.label_only_batch_size(cfg) for o in active_objectives(cfg)), default=0)


def sweep_rows(sweep: SweepConfig) -> list[SweepRow]:
    """Every row the sweep's flags enable, in table order: from scratch, then from pretrained runs."""
    rows = [row for objective in FINETUNING.values() for row in objective.sweep_rows(sweep)]
    return sorted(rows, key=lambda row: row.pretrained)
