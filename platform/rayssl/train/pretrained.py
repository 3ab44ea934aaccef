"""Backbones from pretraining runs, for fine-tuning and evaluation (no Ray)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml
from torch import nn

from rayssl.config import FinetuneConfig, PretrainConfig, StorageConfig, from_dict
from rayssl.data import storage
from rayssl.methods import build_method
from rayssl.train import checkpoints

if TYPE_CHECKING:
    from rayssl.models.classifier import Classifier


def resolve_checkpoint(init: str, storage_cfg: StorageConfig) -> tuple[str, str]:
    """(run dir, checkpoint URI) for a pretraining run dir or one of its checkpoint dirs."""
    if storage.exists(storage.join(init, checkpoints.META), storage_cfg):
        return init.rstrip("/").rsplit("/", 1)[0], init
    latest = checkpoints.latest_checkpoint(init, storage_cfg)
    if latest is None:
        raise FileNotFoundError(f"no pretraining checkpoint under {init}")
    return init, latest


def load_pretrained_backbone(init: str, storage_cfg: StorageConfig) -> tuple[nn.Module, PretrainConfig]:
    """The feature extractor of a pretraining run (its config.yaml says which method built it)."""
    run_dir, checkpoint = resolve_checkpoint(init, storage_cfg)
    cfg = from_dict(PretrainConfig, yaml.safe_load(storage.read_bytes(storage.join(run_dir, "config.yaml"), storage_cfg)))
    state, _ = checkpoints.load_model_state(checkpoint, storage_cfg)
    method = build_method(cfg, num_samples=0)
    method.model.load_state_dict(state)
    return method.backbone(), cfg


def build_classifier(cfg: FinetuneConfig) -> Classifier:
    """Backbone (pretrained from cfg.init, or freshly initialised from cfg.model) + linear head, in
    the network the run's method trains (rayssl.methods.registry.build_network: the inverted VAE's
    wraps that classifier)."""
    from rayssl.config import ConfigError
    from rayssl.methods.registry import build_network
    from rayssl.models import build_backbone, feature_dim

    if cfg.init:
        backbone, pretrain = load_pretrained_backbone(cfg.init, cfg.storage)
        if (pretrain.data.image_size, pretrain.data.channels) != (cfg.data.image_size, cfg.data.channels):
            raise ConfigError(
                f"init {cfg.init} was pretrained on {pretrain.data.image_size}px x {pretrain.data.channels} channels, "
                f"but data is {cfg.data.image_size}px x {cfg.data.channels}"
            )
        dim = feature_dim(pretrain.model)
    else:
        backbone, dim = build_backbone(cfg.model, cfg.data.channels, cfg.data.image_size), feature_dim(cfg.model)
    return build_network(cfg, backbone, dim)
