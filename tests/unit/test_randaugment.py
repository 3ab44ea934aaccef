"""FixMatch's RandAugment and Cutout (rayssl.data.randaugment), each operation against a value by hand."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from rayssl.config import AugmentConfig
from rayssl.data import randaugment as ra
from rayssl.data.transforms import ImageTransform


def test_photometric_operations_by_hand():
    x = torch.tensor([0.2, 0.6]).view(1, 1, 1, 2).repeat(2, 1, 1, 1)  # two grey 1x2 images
    low_high = torch.tensor([0.0, 1.0])  # magnitude 0 -> the range's low end, 1 -> its high end
    # brightness: x * B, B in [0.05, 0.95]
    assert ra.brightness(x, low_high).flatten().tolist() == pytest.approx([0.01, 0.03, 0.19, 0.57])
    # contrast: mean + C (x - mean), mean 0.4
    assert ra.contrast(x, low_high).flatten().tolist() == pytest.approx([0.39, 0.41, 0.21, 0.59])
    # solarize at T = 0.5 (magnitude 0.5): values above it are inverted
    assert ra.solarize(x, torch.tensor([0.5, 0.5])).flatten().tolist() == pytest.approx([0.2, 0.4, 0.2, 0.4])
    # auto-contrast stretches 0.2..0.6 to 0..1; posterize to 4 bits: 0.6 * 255 = 153 -> 144
    assert ra.auto_contrast(x, low_high).flatten().tolist() == pytest.approx([0.0, 1.0, 0.0, 1.0])
    assert ra.posterize(x, torch.tensor([0.0, 0.0]))[0].flatten().tolist() == pytest.approx([48 / 255, 144 / 255])


def test_colour_blends_with_grey_and_is_left_out_for_grey_images():
    red = torch.zeros(1, 3, 1, 1)
    red[0, 0] = 1.0
    luma = 0.299  # kornia's rgb_to_grayscale weight of red
    out = ra.color(red, torch.tensor([1.0]))  # C = 0.95
    assert out.flatten().tolist() == pytest.approx([luma + 0.95 * (1 - luma), 0.05 * luma, 0.05 * luma], abs=1e-6)
    assert "color" in ra.pool_for(3) and "color" not in ra.pool_for(1) and len(ra.pool_for(3)) == 14


def test_translation_moves_whole_pixels_by_a_fraction_of_the_side():
    x = torch.zeros(1, 1, 10, 10)
    x[0, 0, 5, 5] = 1.0
    moved = ra.POOL["translate_x"](x, torch.tensor([1.0]))  # +0.3 of 10 px = 3 px to the right
    assert moved.sum() == 1.0 and moved[0, 0, 5, 8] == 1.0


def test_cutout_fills_a_grey_square_of_the_given_side():
    torch.manual_seed(0)
    out = ra.Cutout(0.5)(torch.ones(200, 3, 16, 16))
    grey = (out == 0.5).all(dim=1)  # [N, H, W]
    rows, cols = grey.any(dim=2).sum(dim=1), grey.any(dim=1).sum(dim=1)
    # an 8 x 8 square, cut by the border when its centre lies near it; every pixel of a channel alike
    assert grey.sum(dim=(1, 2)).equal(rows * cols) and rows.max() == 8 and cols.max() == 8 and rows.min() >= 4
    # whole where the centre lies 4 .. 11 along both axes: a quarter of the images
    assert 0.15 < (grey.sum(dim=(1, 2)) == 64).float().mean() < 0.35


def test_randaugment_draws_per_image_and_keeps_the_range():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 8, 8)
    out = ra.RandAugment(2, 3)(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    # per image: a batch of identical images comes out in many different versions
    same = ra.RandAugment(2, 3)(x[:1].repeat(64, 1, 1, 1))
    assert len({tuple(v.flatten().round(decimals=4).tolist()) for v in same}) > 40


def test_each_operation_is_applied_with_probability_p():
    torch.manual_seed(0)
    x = torch.rand(400, 3, 8, 8)
    assert ra.RandAugment(2, 3, p=0.0)(x).equal(x)  # nothing applied: every image as it came
    # p = 0.5 (FixMatch's reference code): a quarter of the images skip both operations; "identity" (1 in 14)
    # and operations that change nothing on a given image leave a few more unchanged
    unchanged = (ra.RandAugment(2, 3, p=0.5)(x) == x).flatten(1).all(dim=1).float().mean()
    assert 0.2 < unchanged < 0.4


def test_the_strong_view_pickles():
    transform = ImageTransform(8, AugmentConfig(randaugment_ops=2, randaugment_p=0.5, cutout=0.5), 3)
    assert len(pickle.dumps(transform)) > 0  # a DataLoader worker or multiprocessing pickles it with the stdlib


def test_strong_view_with_randaugment_and_cutout_ships_float():
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1), dtype=np.uint8)
    transform = ImageTransform(8, AugmentConfig(horizontal_flip=True, translate_px=1, randaugment_ops=2, cutout=0.5), 1)
    out = transform.stage(images)
    # photometric steps leave the uint8 grid, so the stage ships float32 in [-1, 1] with the cutout at 0 (grey)
    assert out.dtype == np.float32 and out.shape == (16, 1, 8, 8) and -1 <= out.min() and out.max() <= 1
    assert ((out == 0.0).sum(axis=(1, 2, 3)) >= 4).all()
    assert math.isclose(float(np.abs(out).max()), 1.0, abs_tol=1e-6)
