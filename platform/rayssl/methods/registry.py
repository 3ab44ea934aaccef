"""Config -> method object: the two pretraining methods behind one interface."""

from __future__ import annotations

import torch
from torch import nn

from rayssl.config import PretrainConfig
from rayssl.methods.base import StepContext
from rayssl.methods.mae import mae_loss
from rayssl.methods.nat import NATHead, NoiseAsTargets
from rayssl.methods.reconstructions import write_reconstructions
from rayssl.models import build_backbone, feature_dim
from rayssl.models.mae import MaskedAutoencoder
from rayssl.models.vit import ViTFeatures


class NATMethod:
    """Noise As Targets on any backbone: a linear head to the unit sphere + the assignment table."""

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


class MAEMethod:
    """Masked autoencoder; bf16 autocast on GPU, fp32 on CPU."""

    def __init__(self, cfg: PretrainConfig, num_samples: int) -> None:
        self.model = MaskedAutoencoder(cfg.model.vit, cfg.mae, cfg.data.channels, cfg.data.image_size)
        self.patch, self.norm_pix = cfg.model.vit.patch_size, cfg.mae.norm_pix_loss
        self.cfg = cfg

    def step(self, model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = batch["image"]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=images.is_cuda):
            pred, mask = model(images)
        return mae_loss(images, pred, mask, self.patch, self.norm_pix), {}

    def backbone(self) -> nn.Module:
        return ViTFeatures(self.model.encoder)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass

    def on_checkpoint(self, run_dir: str, epoch: int) -> dict[str, torch.Tensor]:
        """Reconstruction grid of fixed held-out images, next to each checkpoint (rank 0)."""
        return {"reconstructions": write_reconstructions(self.model, self.cfg, run_dir, epoch)}


METHODS = {"nat": NATMethod, "mae": MAEMethod}


def build_method(cfg: PretrainConfig, num_samples: int) -> NATMethod | MAEMethod:
    return METHODS[cfg.method](cfg, num_samples)
