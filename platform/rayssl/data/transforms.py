"""uint8 image batches -> normalised float tensors, with optional per-sample augmentation.

Augmentation is batched with kornia: one call draws independent parameters for every image of
the batch and warps them together. torchvision v2 transforms draw one set of parameters per
call, so per-sample augmentation with them is a Python loop over images (140 us per 28-px image
on one core, against ~12 us batched; see the closing note of issue 8). The same code runs in the
Ray Data CPU stage and on a worker's device.

The CPU stage ships uint8 where it can (`ImageTransform.stage`): no augmentation, or only steps
whose output stays on the uint8 grid (whole-pixel moves, nearest resampling, zero fill), so the
images cross processes in a quarter of the bytes; the worker normalises them after moving them to
its device (`model_inputs`). Views with interpolating or photometric steps (resized crop, colour
jitter, greyscale, blur) stay float32: rounding them to uint8 would change the training images.
"""

from __future__ import annotations

import dataclasses

import kornia.augmentation as K
import numpy as np
import torch
from torch import nn

from rayssl.config import AugmentConfig, StorageConfig
from rayssl.data.decode import ImageSpec
from rayssl.data.randaugment import Cutout, RandAugment


def augmentation(size: int, augment: AugmentConfig | None, channels: int = 1) -> K.AugmentationSequential | None:
    """The batched pipeline an AugmentConfig describes, on float [N, C, H, W] in [0, 1]; None if it does nothing.

    Order as in the usual recipes: crop/translate (geometry), rotate, shear, elastic, flip, colour, blur,
    RandAugment, then erase and Cutout (FixMatch's strong view: flip and translate, RandAugment, Cutout).
    """
    if augment is None:
        return None
    steps: list[nn.Module] = []  # kornia augmentations, and RandAugment and Cutout (plain modules)
    if augment.crop_scale_min < 1.0:
        steps.append(K.RandomResizedCrop((size, size), scale=(augment.crop_scale_min, 1.0)))
    if augment.translate_px > 0:  # pad with black and crop back: an integer translation of up to +-translate_px
        steps.append(K.RandomCrop((size, size), padding=augment.translate_px))
    if augment.rotate_deg > 0:
        # Nearest, as torchvision's default: bilinear-blurred strong views made FixMatch on MNIST
        # (5 labels/class) collapse from 91% to 81% test accuracy over 1,500 steps; nearest reached 96%.
        steps.append(K.RandomRotation(augment.rotate_deg, p=1.0, resample="nearest"))
    if augment.shear_deg > 0:
        steps.append(
            K.RandomAffine(
                0.0,
                shear=(-augment.shear_deg, augment.shear_deg, -augment.shear_deg, augment.shear_deg),  # type: ignore[arg-type]  # kornia accepts (x_min, x_max, y_min, y_max); its annotation omits it
                p=1.0,
                resample="nearest",
            )
        )
    if augment.elastic_alpha > 0:
        sigma = 0.15 * size  # 4.2 px at 28 px, Simard et al.'s 4 px
        kernel = int(2 * round(1.5 * sigma) + 1)  # odd, +-1.5 sigma
        steps.append(
            K.RandomElasticTransform(
                (kernel, kernel), (sigma, sigma), (augment.elastic_alpha, augment.elastic_alpha), p=1.0, resample="nearest"
            )
        )
    if augment.horizontal_flip:
        steps.append(K.RandomHorizontalFlip())
    if augment.color_jitter > 0:
        s = augment.color_jitter
        colour = (0.8 * s, 0.2 * s) if channels == 3 else (0.0, 0.0)  # saturation and hue need RGB
        steps.append(K.ColorJitter(0.8 * s, 0.8 * s, colour[0], colour[1], p=0.8))
    if augment.grayscale_p > 0 and channels == 3:
        steps.append(K.RandomGrayscale(p=augment.grayscale_p))
    if augment.blur_p > 0:
        kernel = max(3, (size // 10) | 1)  # odd, ~10% of the side as in SimCLR
        steps.append(K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=augment.blur_p))
    if augment.randaugment_ops > 0:
        steps.append(RandAugment(augment.randaugment_ops, channels, augment.randaugment_p))
    if augment.erase_p > 0:
        steps.append(K.RandomErasing(p=augment.erase_p, scale=(0.02, 0.2), value=0.0))
    if augment.cutout > 0:
        steps.append(Cutout(augment.cutout))
    # kornia runs plain nn.Modules among its augmentations (as image-only steps); its annotation names only its own
    return K.AugmentationSequential(*steps) if steps else None  # type: ignore[arg-type]


# Steps whose output, on images k / 255, is again k / 255 (exactly, in float32) as `augmentation`
# builds them: whole-pixel crops with zero padding, flips, nearest-resampled rotation, shear and
# elastic warps (zeros outside), erasing with 0. The stage ships such views as uint8, losslessly.
_ON_UINT8_GRID = (K.RandomCrop, K.RandomHorizontalFlip, K.RandomRotation, K.RandomAffine, K.RandomElasticTransform, K.RandomErasing)
# The image columns a training or evaluation stream carries, uint8 or float32 [N, C, H, W].
IMAGE_COLUMNS = ("image", "image_view2")


def normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float32 in [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A stream's batch as the model takes it: uint8 image columns ([N, C, H, W], as the CPU stage
    ships them) normalised to float32 in [-1, 1] where they are (on the worker's device after
    `.to(device)`); float32 columns (augmented views) and the other columns unchanged."""
    return {k: normalise(v) if k in IMAGE_COLUMNS and v.dtype == torch.uint8 else v for k, v in batch.items()}


class ImageTransform:
    """uint8 [N, H, W, C] -> float32 [N, C, H, W] in [-1, 1], augmenting each sample independently
    (random parameters from torch's global generator, which the worker loop seeds per rank)."""

    def __init__(self, size: int, augment: AugmentConfig | None, channels: int = 1) -> None:
        self.augment = augmentation(size, augment, channels)
        # Whether stage() ships uint8: every step keeps the pixels on the uint8 grid.
        self.exact_in_uint8 = self.augment is None or all(isinstance(step, _ON_UINT8_GRID) for step in self.augment.children())

    @torch.no_grad()
    def tensor(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, C, H, W] -> float32 [N, C, H, W], on the images' device."""
        if self.augment is None or not len(images):
            return normalise(images)
        return self.augment(images.float().div_(255.0)).mul_(2.0).sub_(1.0)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, C] -> float32 [N, C, H, W]."""
        return self.tensor(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()

    @torch.no_grad()
    def stage(self, images: np.ndarray) -> np.ndarray:
        """What the Ray Data CPU stage ships, [N, C, H, W]: uint8 (augmented if there is an
        augmentation, all of whose steps are exact in uint8), for `model_inputs` to normalise on the
        worker, or else the float32 output of __call__. uint8 [N, H, W, C] in."""
        if not self.exact_in_uint8:
            return self(images)
        chw = torch.from_numpy(images).permute(0, 3, 1, 2)
        if self.augment is None or not len(images):
            return np.ascontiguousarray(chw.numpy())
        return self.augment(chw.float().div_(255.0)).mul_(255.0).round_().to(torch.uint8).numpy()


class TrainingViews:
    """Base of a training stream's decode stage (on the CPU, or on the worker's device): the image spec,
    the transforms of the stream's view(s) of each decoded image, and where undecodable rows are
    quarantined. With data.crop: random_crop the decode already took the random-resized-crop box, so
    the views do not crop again."""

    def __init__(
        self,
        spec: ImageSpec,
        augment: AugmentConfig | None,
        split: str,
        run_dir: str,
        storage_cfg: StorageConfig,
        second_view: AugmentConfig | None = None,
    ) -> None:
        self.spec = spec
        if augment is not None and spec.crop == "random_crop":
            augment = dataclasses.replace(augment, crop_scale_min=1.0)
        self.transform = ImageTransform(spec.size, augment, spec.channels)
        self.second_view = ImageTransform(spec.size, second_view, spec.channels) if second_view is not None else None
        self.split, self.run_dir, self.storage_cfg = split, run_dir, storage_cfg
