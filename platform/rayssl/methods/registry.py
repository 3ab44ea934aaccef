"""Config -> method object: the pretraining methods behind one interface.

`two_views`: the method reads a second, independently augmented view of every image
(batch["image_view2"], made in the Ray Data CPU stage with the same data.augment).
"""

from __future__ import annotations

import torch
from torch import nn

from rayssl.config import PretrainConfig
from rayssl.methods.base import StepContext
from rayssl.methods.contrastive import nt_xent
from rayssl.methods.mae import mae_loss
from rayssl.methods.nat import NATHead, NoiseAsTargets
from rayssl.methods.reconstructions import write_reconstructions
from rayssl.models import build_backbone, feature_dim
from rayssl.models.contrastive import ContrastiveNet, MaskedContrastiveAutoencoder
from rayssl.models.mae import MaskedAutoencoder
from rayssl.models.vit import ViTFeatures


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


class _StatelessMethod:
    """Methods whose whole state is the model's weights."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass

    def on_checkpoint(self, run_dir: str, epoch: int) -> dict[str, torch.Tensor]:
        return {}


class MAEMethod(_StatelessMethod):
    """Masked autoencoder (the loop runs every step under bf16 autocast on GPU workers)."""

    two_views = False

    def __init__(self, cfg: PretrainConfig, num_samples: int) -> None:
        self.model = MaskedAutoencoder(cfg.model.vit, cfg.mae, cfg.data.channels, cfg.data.image_size)
        self.patch, self.norm_pix = cfg.model.vit.patch_size, cfg.mae.norm_pix_loss
        self.cfg = cfg

    def step(self, model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = batch["image"]
        pred, mask = model(images)
        return mae_loss(images, pred, mask, self.patch, self.norm_pix), {}

    def backbone(self) -> nn.Module:
        return ViTFeatures(self.model.encoder)

    def on_checkpoint(self, run_dir: str, epoch: int) -> dict[str, torch.Tensor]:
        """Reconstruction grid of fixed held-out images, next to each checkpoint (rank 0)."""
        return {"reconstructions": write_reconstructions(self.model, self.cfg, run_dir, epoch)}


class SimCLRMethod(_StatelessMethod):
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


class MaskedContrastiveMethod(_StatelessMethod):
    """MAE reconstruction of two masked views + NT-Xent between their pooled encodings, mixed by contrastive.weight."""

    two_views = True

    def __init__(self, cfg: PretrainConfig, num_samples: int) -> None:
        c = cfg.contrastive
        mae = MaskedAutoencoder(cfg.model.vit, cfg.mae, cfg.data.channels, cfg.data.image_size)
        self.model = MaskedContrastiveAutoencoder(mae, c.projection_hidden, c.projection_dim)
        self.temperature, self.weight = c.temperature, c.weight
        self.patch, self.norm_pix = cfg.model.vit.patch_size, cfg.mae.norm_pix_loss

    def step(self, model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = torch.cat([batch["image"], batch["image_view2"]])  # [2B, C, H, W], each view masked independently
        b = len(batch["image"])
        pred, mask, z = model(images)
        reconstruction = mae_loss(images, pred, mask, self.patch, self.norm_pix)
        contrastive = nt_xent(z[:b], z[b:], self.temperature)
        loss = self.weight * contrastive + (1 - self.weight) * reconstruction
        # stats are sums over the batch's rows (the loop divides by its image count)
        return loss, {"reconstruction": reconstruction.detach() * b, "contrastive": contrastive.detach() * b}

    def backbone(self) -> nn.Module:
        return ViTFeatures(self.model.mae.encoder)


METHODS = {"nat": NATMethod, "mae": MAEMethod, "simclr": SimCLRMethod, "masked_contrastive": MaskedContrastiveMethod}
PretrainMethodImpl = NATMethod | MAEMethod | SimCLRMethod | MaskedContrastiveMethod


def build_method(cfg: PretrainConfig, num_samples: int) -> PretrainMethodImpl:
    return METHODS[cfg.method](cfg, num_samples)
