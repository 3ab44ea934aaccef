"""uint8 image batches -> normalised float tensors, with optional per-sample augmentation."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

from rayssl.config import AugmentConfig


class ImageTransform:
    """uint8 [N, H, W, C] -> float32 [N, C, H, W] in [-1, 1], augmenting each sample independently.

    torchvision v2 transforms draw one set of random parameters per call, so augmentation runs
    per sample (cheap at these sizes; it happens in Ray Data CPU tasks, not on the trainers).
    """

    def __init__(self, size: int, augment: AugmentConfig | None) -> None:
        steps: list[v2.Transform] = []
        if augment is not None and augment.crop_scale_min < 1.0:
            steps.append(v2.RandomResizedCrop(size, scale=(augment.crop_scale_min, 1.0), antialias=True))
        if augment is not None and augment.horizontal_flip:
            steps.append(v2.RandomHorizontalFlip())
        self.augment = v2.Compose(steps) if steps else None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(images).permute(0, 3, 1, 2)  # [N, C, H, W] uint8
        if self.augment is not None and len(x):
            x = torch.stack([self.augment(img) for img in x])
        return (x.float().div_(127.5).sub_(1.0)).numpy()
