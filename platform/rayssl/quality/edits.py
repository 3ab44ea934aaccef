"""The edits that make a photo's near-duplicates: pure functions on uint8 [H, W, 3] images, no Ray.

`rayssl quality` plants one of each on a sample of the corpus to calibrate its near-duplicate decision
(`quality.photos.calibrate`), and `bench/quality_photos.py` plants them to measure recall. Ranges are the
issue's: colour and brightness/contrast shifts, a crop of 80-95% of the side rescaled back, a translation
of up to 3 px, JPEG re-encoding at quality 50, a horizontal flip.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

Edit = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def colour_shift(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """White balance (per-channel gain 0.85-1.15 and offset +-20 levels) and saturation x0.7-1.3."""
    x = image.astype(np.float32) * rng.uniform(0.85, 1.15, 3) + rng.uniform(-20, 20, 3)
    grey = x.mean(axis=2, keepdims=True)
    return _to_uint8(grey + rng.uniform(0.7, 1.3) * (x - grey))


def brightness_contrast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast x0.7-1.3 about mid-grey, then brightness +-30 levels."""
    return _to_uint8((image.astype(np.float32) - 128.0) * rng.uniform(0.7, 1.3) + 128.0 + rng.uniform(-30, 30))


def crop_rescale(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A square-ish box of 80-95% of each side at a random place, resized back to the original size."""
    height, width = image.shape[:2]
    fraction = rng.uniform(0.8, 0.95)
    box_h, box_w = max(1, int(round(height * fraction))), max(1, int(round(width * fraction)))
    top, left = int(rng.integers(0, height - box_h + 1)), int(rng.integers(0, width - box_w + 1))
    crop = Image.fromarray(image[top : top + box_h, left : left + box_w])
    return np.asarray(crop.resize((width, height), Image.Resampling.BILINEAR))


def translate(image: np.ndarray, rng: np.random.Generator, most: int = 3) -> np.ndarray:
    """Shifted by 1..`most` px in x and/or y; the uncovered border repeats the edge (as a re-framed photo)."""
    while True:
        dy, dx = (int(v) for v in rng.integers(-most, most + 1, 2))
        if dy or dx:
            break
    height, width = image.shape[:2]
    padded = np.pad(image, ((most, most), (most, most), (0, 0)), mode="edge")
    return padded[most - dy : most - dy + height, most - dx : most - dx + width].copy()


def jpeg_reencode(image: np.ndarray, rng: np.random.Generator, quality: int = 50) -> np.ndarray:
    """Encoded as JPEG at `quality` and decoded again (rng unused: the edit is deterministic)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def horizontal_flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirrored left to right (rng unused)."""
    return image[:, ::-1].copy()


PHOTO_EDITS: dict[str, Edit] = {
    "colour_shift": colour_shift,
    "brightness_contrast": brightness_contrast,
    "crop_rescale": crop_rescale,
    "translate": translate,
    "jpeg_q50": jpeg_reencode,
    "horizontal_flip": horizontal_flip,
}


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
