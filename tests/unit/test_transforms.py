"""Batched per-sample augmentation (rayssl.data.transforms)."""

from __future__ import annotations

import numpy as np
import torch

from rayssl.config import AugmentConfig
from rayssl.data.transforms import ImageTransform, normalise


def _dot_images(n: int, size: int = 16) -> np.ndarray:
    """uint8 [n, size, size, 1]: one white pixel in the centre of each image."""
    images = np.zeros((n, size, size, 1), dtype=np.uint8)
    images[:, size // 2, size // 2] = 255
    return images


def test_no_augmentation_only_normalises():
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    out = ImageTransform(4, None)(images)
    assert out.shape == (2, 3, 4, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out, images.transpose(0, 3, 1, 2) / 127.5 - 1, atol=1e-6)


def test_translation_moves_each_image_by_its_own_whole_pixel_offset():
    torch.manual_seed(0)
    out = ImageTransform(16, AugmentConfig(translate_px=3))(_dot_images(64))
    # Each output still holds exactly one white pixel (an integer shift, no interpolation blur) ...
    assert np.all((out > 0.99).sum(axis=(1, 2, 3)) == 1)
    assert np.all((out > -0.99).sum(axis=(1, 2, 3)) == 1)
    rows, cols = np.nonzero(out[:, 0] > 0.99)[1:]
    # ... within +-3 px of where it was, and the 64 images did not all move alike.
    assert np.abs(rows - 8).max() <= 3 and np.abs(cols - 8).max() <= 3
    assert len({(r, c) for r, c in zip(rows, cols)}) > 10


def test_strong_view_keeps_range_and_shape_and_is_seeded():
    cfg = AugmentConfig(crop_scale_min=0.8, translate_px=2, rotate_deg=20, erase_p=0.5, horizontal_flip=True)
    images = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
    torch.manual_seed(1)
    a = ImageTransform(16, cfg)(images)
    torch.manual_seed(1)
    b = ImageTransform(16, cfg)(images)
    assert a.shape == (32, 3, 16, 16) and a.min() >= -1 - 1e-5 and a.max() <= 1 + 1e-5
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, normalise(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy())


def _bar_images(n: int, size: int = 28) -> np.ndarray:
    """uint8 [n, size, size, 1]: a vertical white bar, 2 px wide, in the middle of each image."""
    images = np.zeros((n, size, size, 1), dtype=np.uint8)
    images[:, 6:22, size // 2 - 1 : size // 2 + 1] = 255
    return images


def test_shear_tilts_a_vertical_bar_without_blurring_it():
    torch.manual_seed(0)
    out = ImageTransform(28, AugmentConfig(shear_deg=15))(_bar_images(32))
    assert set(np.unique(out)) <= {-1.0, 1.0}  # nearest resampling: no grey from interpolation
    # Each bar's top and bottom rows now sit at different columns (a tilt), by a per-image amount.
    tops = [np.nonzero(o[0, 7] > 0)[0].mean() - np.nonzero(o[0, 20] > 0)[0].mean() for o in out]
    assert max(abs(t) for t in tops) >= 2 and len({round(t, 1) for t in tops}) >= 4


def test_elastic_distortion_moves_pixels_a_little_and_per_image():
    torch.manual_seed(0)
    images = _bar_images(32)
    out = ImageTransform(28, AugmentConfig(elastic_alpha=2.0))(images)
    assert out.shape == (32, 1, 28, 28) and set(np.unique(out)) <= {-1.0, 1.0}
    bar = images.transpose(0, 3, 1, 2) / 127.5 - 1
    changed = (out != bar).mean(axis=(1, 2, 3))
    # Some pixels of every image move, most stay: a distortion, not a different picture.
    assert np.all(changed > 0) and np.all(changed < 0.15)
    assert len({float(c) for c in changed}) > 5  # each image has its own displacement field
    # The bar's ink stays near its column (displacements of a pixel or two, not across the image).
    cols = np.nonzero(out[:, 0] > 0)[2]
    assert np.abs(cols - 13.5).max() <= 6
