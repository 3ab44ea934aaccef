"""uint8 image batches -> normalised float tensors, with optional per-sample augmentation."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

from rayssl.config import AugmentConfig


def augmentation(size: int, augment: AugmentConfig | None) -> v2.Transform | None:
    """The torchvision v2 pipeline an AugmentConfig describes, on uint8 [C, H, W]; None if it does nothing.

    Order as in the usual recipes: crop/translate (geometry), rotate, flip, then erase.
    """
    if augment is None:
        return None
    steps: list[v2.Transform] = []
    if augment.crop_scale_min < 1.0:
        steps.append(v2.RandomResizedCrop(size, scale=(augment.crop_scale_min, 1.0), antialias=True))
    if augment.translate_px > 0:  # pad with black and crop back: a translation of up to +-translate_px
        steps.append(v2.RandomCrop(size, padding=augment.translate_px))
    if augment.rotate_deg > 0:
        steps.append(v2.RandomRotation(augment.rotate_deg))
    if augment.horizontal_flip:
        steps.append(v2.RandomHorizontalFlip())
    if augment.erase_p > 0:
        steps.append(v2.RandomErasing(p=augment.erase_p, scale=(0.02, 0.2), value=0))
    return v2.Compose(steps) if steps else None


def normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float32 in [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


class ImageTransform:
    """uint8 [N, H, W, C] -> float32 [N, C, H, W] in [-1, 1], augmenting each sample independently.

    torchvision v2 transforms draw one set of random parameters per call, so augmentation runs
    per sample (cheap at these sizes; it happens in Ray Data CPU tasks or on the few labelled
    images of a fine-tuning step).
    """

    def __init__(self, size: int, augment: AugmentConfig | None) -> None:
        self.augment = augmentation(size, augment)

    def tensor(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, C, H, W] -> float32 [N, C, H, W]."""
        if self.augment is not None and len(images):
            images = torch.stack([self.augment(img) for img in images])
        return normalise(images)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.tensor(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
