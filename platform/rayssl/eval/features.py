"""Frozen features of a labelled split, streamed through the same Ray Data pipeline as training."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from rayssl.config import DataConfig, StorageConfig
from rayssl.data.pipeline import image_dataset
from rayssl.data.transforms import model_inputs

K = TypeVar("K", bound=Hashable)  # a backbone's name: the caller's keys come back as they went in


@torch.no_grad()
def extract_features(
    backbones: dict[K, nn.Module],
    data: DataConfig,
    split: str,
    run_dir: str,
    storage_cfg: StorageConfig,
    batch_size: int = 512,
    limit: int | None = None,
) -> tuple[dict[K, np.ndarray], np.ndarray]:
    """One pass over the labelled rows of `split` (no augmentation) through every backbone;
    `limit` stops after that many rows (the shards' order: sources write them shuffled or as published).

    Returns ({name: features [N, D] float32}, labels [N] int64).
    """
    for net in backbones.values():
        net.eval()
    feats: dict[K, list[np.ndarray]] = {name: [] for name in backbones}
    labels = []
    ds = image_dataset(data, split, run_dir, storage_cfg, augment=False)
    if limit is not None:
        ds = ds.limit(limit)
    for batch in map(model_inputs, ds.iter_torch_batches(batch_size=batch_size, device="cpu")):
        keep = batch["label"] >= 0
        if keep.any():
            for name, net in backbones.items():
                feats[name].append(net(batch["image"][keep]).numpy())
            labels.append(batch["label"][keep].numpy())
    if not labels:
        raise ValueError(f"split {split!r} of {data.shards} has no labelled images to evaluate on")
    return {name: np.concatenate(f) for name, f in feats.items()}, np.concatenate(labels)


@torch.no_grad()
def embed_split(
    backbone: nn.Module, data: DataConfig, split: str, run_dir: str, storage_cfg: StorageConfig, batch_size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Every decodable row of `split`, labelled or not, through the backbone (no augmentation), in one
    streamed pass on the calling process (for millions of images, `rayssl embed` runs actor pools).

    Returns (index int64 [N] of each row in its split, sorted; features float32 [N, D] in that order).
    """
    backbone.eval()
    indices, feats = [], []
    for batch in image_dataset(data, split, run_dir, storage_cfg, augment=False).iter_torch_batches(batch_size=batch_size, device="cpu"):
        indices.append(batch["index"].numpy())
        feats.append(backbone(model_inputs(batch)["image"]).float().numpy())
    if not indices:
        raise ValueError(f"split {split!r} of {data.shards} has no decodable images to embed")
    index = np.concatenate(indices)
    order = np.argsort(index)
    return index[order], np.concatenate(feats)[order]
