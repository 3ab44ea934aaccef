"""Common corruptions, five severities each, seeded per sample: pure numpy/scipy/PIL on uint8 images.

The families and severities follow Hendrycks & Dietterich 2019 (CIFAR-10-C, arXiv 1903.12261) for
noise, blur, contrast, brightness, JPEG and pixelate, and Mu & Gilmer 2019 (MNIST-C, arXiv
1906.02337) for rotation and translation. Parameters are CIFAR-10-C's, written for 32-px images;
lengths (blur radii, shifts) scale with the image size. Severity 0 is the clean image.

Each sample's randomness comes from a generator seeded by (seed, corruption, severity, sample
index), so a corrupted test set is the same in every run, however Ray Data splits it into blocks.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image
from scipy import ndimage

SEVERITIES = (1, 2, 3, 4, 5)
# name -> the parameter at severities 1..5 (its meaning is in `_apply`).
PARAMETERS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # std of additive noise, image in [0, 1]
    "shot_noise": (500, 250, 100, 75, 50),  # Poisson photons per unit intensity
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # fraction of pixels set to black or white
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),  # sigma in px at 32 px
    "motion_blur": (3, 5, 7, 9, 11),  # streak length in px at 32 px, random direction
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor towards the image mean
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),  # added to every pixel in [0, 1]
    "jpeg": (80, 65, 58, 50, 40),  # JPEG quality
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # downscale factor (box), then back up
    "rotate": (6, 12, 18, 24, 30),  # degrees, random sign (MNIST-C)
    "translate": (1, 2, 3, 4, 5),  # px at 28 px, largest axis; random direction (MNIST-C)
}
CORRUPTIONS = tuple(PARAMETERS)


def rng_for(seed: int, name: str, severity: int, index: int) -> np.random.Generator:
    """The generator of one corrupted sample (crc32: a stable id for the name across processes)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), severity, int(index)])


def corrupt(image: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [H, W, C], `name` at `severity` (0: the image unchanged, whatever the name)."""
    if severity == 0:
        return image.copy()
    if name not in PARAMETERS:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    if not 0 < severity <= len(SEVERITIES):
        raise ValueError(f"severity must be 0..{len(SEVERITIES)}, got {severity}")
    return _apply(image, name, PARAMETERS[name][severity - 1], rng)


def corrupt_batch(images: np.ndarray, indices: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """uint8 [N, H, W, C] -> uint8 [N, H, W, C]; sample i draws from rng_for(seed, name, severity, indices[i])."""
    return (
        np.stack([corrupt(img, name, severity, rng_for(seed, name, severity, i)) for img, i in zip(images, indices)])
        if len(images)
        else images.copy()
    )


def _apply(image: np.ndarray, name: str, c: float, rng: np.random.Generator) -> np.ndarray:
    h, w, channels = image.shape
    scale = min(h, w) / 32  # CIFAR-10-C lengths are for 32 px
    x = image.astype(np.float64) / 255.0
    if name == "gaussian_noise":
        x = x + rng.normal(0.0, c, x.shape)
    elif name == "shot_noise":
        x = rng.poisson(x * c) / c
    elif name == "impulse_noise":
        hit = rng.random(x.shape[:2]) < c
        x[hit] = rng.integers(0, 2, int(hit.sum()))[:, None]
    elif name == "gaussian_blur":
        x = ndimage.gaussian_filter(x, sigma=(c * scale, c * scale, 0))
    elif name == "motion_blur":
        x = _motion_blur(x, max(2, round(c * scale)), rng.uniform(-45, 45))
    elif name == "contrast":
        mean = x.mean(axis=(0, 1), keepdims=True)
        x = (x - mean) * c + mean
    elif name == "brightness":
        x = x + c
    elif name == "jpeg":
        return _via_pil(image, lambda img: Image.open(io.BytesIO(_jpeg_bytes(img, int(c)))))
    elif name == "pixelate":
        small = (max(1, int(w * c)), max(1, int(h * c)))
        return _via_pil(image, lambda img: img.resize(small, Image.Resampling.BOX).resize((w, h), Image.Resampling.BOX))
    elif name == "rotate":
        angle = c * rng.choice([-1, 1])
        return _via_pil(image, lambda img: img.rotate(angle, resample=Image.Resampling.BILINEAR))
    elif name == "translate":
        # One axis moves the full distance, the other a random part of it, each with a random sign.
        longest = max(1, round(c * min(h, w) / 28))
        d = np.array([longest, rng.integers(0, longest + 1)]) * rng.choice([-1, 1], 2)
        rng.shuffle(d)
        return ndimage.shift(image, (int(d[0]), int(d[1]), 0), order=0, mode="constant", cval=0)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _motion_blur(x: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    """Average along a line of `length` px at `angle_deg` (a normalised line kernel)."""
    size = length if length % 2 else length + 1
    kernel = np.zeros((size, size))
    centre = size // 2
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, length * 4)
    ys = np.rint(centre + t * np.sin(np.deg2rad(angle_deg))).astype(int)
    xs = np.rint(centre + t * np.cos(np.deg2rad(angle_deg))).astype(int)
    kernel[ys, xs] = 1.0
    kernel /= kernel.sum()
    return np.stack([ndimage.convolve(x[..., k], kernel, mode="nearest") for k in range(x.shape[2])], axis=2)


def _jpeg_bytes(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _via_pil(image: np.ndarray, op) -> np.ndarray:
    """Apply a PIL operation to uint8 [H, W, C] (C = 1 or 3) and return uint8 [H, W, C]."""
    grey = image.shape[2] == 1
    out = np.asarray(op(Image.fromarray(image[..., 0] if grey else image)).convert("L" if grey else "RGB"), dtype=np.uint8)
    return out[..., None] if grey else out
