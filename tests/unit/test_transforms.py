"""Batched per-sample augmentation (rayssl.data.transforms)."""

from __future__ import annotations

import numpy as np
import torch

from rayssl.config import AugmentConfig
from rayssl.data.transforms import ImageTransform, model_inputs, normalise


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


def _worker_side(transform: ImageTransform, images: np.ndarray, seed: int) -> tuple[np.ndarray, torch.Tensor]:
    """(what the CPU stage ships, what the worker's model gets from it) for uint8 [N, H, W, C] images."""
    torch.manual_seed(seed)
    staged = transform.stage(images)
    return staged, model_inputs({"image": torch.from_numpy(staged), "index": torch.arange(len(images))})["image"]


def _cpu_side(transform: ImageTransform, images: np.ndarray, seed: int) -> np.ndarray:
    """The float32 [N, C, H, W] the CPU stage shipped before it shipped uint8."""
    torch.manual_seed(seed)
    return transform(images)


def test_stage_ships_uint8_and_the_worker_normalises_it_as_the_cpu_did():
    images = np.random.default_rng(0).integers(0, 256, (8, 6, 6, 3), dtype=np.uint8)
    staged, normalised = _worker_side(ImageTransform(6, None, 3), images, 0)
    assert staged.dtype == np.uint8 and staged.shape == (8, 3, 6, 6) and staged.flags.c_contiguous
    np.testing.assert_array_equal(staged, images.transpose(0, 3, 1, 2))
    assert normalised.dtype == torch.float32
    np.testing.assert_allclose(normalised.numpy(), _cpu_side(ImageTransform(6, None, 3), images, 0), rtol=0, atol=1e-6)


def test_views_on_the_uint8_grid_ship_uint8_with_the_same_numerics():
    # Whole-pixel moves, nearest warps, flips and zero erasing: the float view is k / 255 exactly, so uint8 loses nothing.
    cfg = AugmentConfig(translate_px=2, rotate_deg=20, shear_deg=10, elastic_alpha=2.0, horizontal_flip=True, erase_p=0.5)
    images = np.random.default_rng(1).integers(0, 256, (16, 28, 28, 1), dtype=np.uint8)
    transform = ImageTransform(28, cfg)
    assert transform.exact_in_uint8
    staged, normalised = _worker_side(transform, images, 3)
    assert staged.dtype == np.uint8
    np.testing.assert_allclose(normalised.numpy(), _cpu_side(transform, images, 3), rtol=0, atol=1e-6)


def test_interpolating_or_photometric_views_stay_float32():
    images = np.random.default_rng(2).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    for cfg in (
        AugmentConfig(crop_scale_min=0.5),
        AugmentConfig(color_jitter=0.5),
        AugmentConfig(blur_p=1.0),
        AugmentConfig(grayscale_p=1.0),
    ):
        transform = ImageTransform(16, cfg, 3)
        assert not transform.exact_in_uint8, cfg
        staged, normalised = _worker_side(transform, images, 4)
        assert staged.dtype == np.float32
        np.testing.assert_array_equal(normalised.numpy(), _cpu_side(transform, images, 4))


def test_model_inputs_leaves_other_columns_alone():
    batch = {"image": torch.zeros(2, 1, 2, 2, dtype=torch.uint8), "index": torch.tensor([3, 4]), "label": torch.tensor([0, 1])}
    out = model_inputs(batch)
    assert torch.equal(out["image"], torch.full((2, 1, 2, 2), -1.0))
    assert out["index"] is batch["index"] and out["label"] is batch["label"]
