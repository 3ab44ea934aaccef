"""Frozen features of a labelled split, streamed through the same Ray Data pipeline as training."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rayssl.config import DataConfig, StorageConfig
from rayssl.data.pipeline import image_dataset


@torch.no_grad()
def extract_features(
    backbone: nn.Module, data: DataConfig, split: str, run_dir: str, storage_cfg: StorageConfig, batch_size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, D] float32, labels [N] int64) of the labelled rows of `split`, no augmentation."""
    backbone.eval()
    feats, labels = [], []
    ds = image_dataset(data, split, run_dir, storage_cfg, augment=False)
    for batch in ds.iter_torch_batches(batch_size=batch_size, device="cpu"):
        keep = batch["label"] >= 0
        if keep.any():
            feats.append(backbone(batch["image"][keep]).numpy())
            labels.append(batch["label"][keep].numpy())
    if not feats:
        raise ValueError(f"split {split!r} of {data.shards} has no labelled images to evaluate on")
    return np.concatenate(feats), np.concatenate(labels)
