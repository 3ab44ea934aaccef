"""Corruptions and the robustness summary on tiny arrays with known answers (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from rayssl.config import CORRUPTION_NAMES, ConfigError, RobustnessConfig
from rayssl.data.corruptions import CORRUPTIONS, corrupt, corrupt_batch, rng_for
from rayssl.eval.robustness import CLEAN, markdown, summary


def digit(channels: int = 1) -> np.ndarray:
    """A diagonal stroke and a bar on black, uint8 [28, 28, channels]."""
    img = np.zeros((28, 28, channels), np.uint8)
    for i in range(6, 22):
        img[i, i - 1 : i + 2] = 120 + 5 * i
    img[8:20, 17:19] = 200
    return img


def test_the_config_names_every_corruption():
    assert CORRUPTION_NAMES == CORRUPTIONS


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("channels", [1, 3])
def test_severity_zero_is_the_clean_image_and_every_severity_is_seeded(name, channels):
    img = digit(channels)
    assert np.array_equal(corrupt(img, name, 0, rng_for(0, name, 0, 7)), img)
    for severity in range(1, 6):
        a = corrupt(img, name, severity, rng_for(0, name, severity, 7))
        assert a.shape == img.shape and a.dtype == np.uint8
        assert np.array_equal(a, corrupt(img, name, severity, rng_for(0, name, severity, 7)))  # repeatable
        assert not np.array_equal(a, img), f"{name} at severity {severity} left the image unchanged"


def test_noise_and_blur_grow_with_severity():
    img = digit()
    for name in ("gaussian_noise", "impulse_noise", "gaussian_blur", "contrast", "pixelate"):
        change = [np.abs(corrupt(img, name, s, rng_for(0, name, s, 1)).astype(int) - img).mean() for s in (1, 3, 5)]
        assert change[0] < change[1] < change[2], (name, change)


def test_hand_computed_contrast_brightness_and_translate():
    img = np.array([[[0], [100]]], np.uint8)  # mean 50 (0.196 in [0, 1])
    # contrast severity 1: factor 0.75 towards the mean -> 12.5 and 87.5 -> rounded 12, 88 (half to even: 12)
    assert corrupt(img, "contrast", 1, rng_for(0, "contrast", 1, 0))[..., 0].tolist() == [[12, 88]]
    # brightness severity 2: +0.2 x 255 = 51
    assert corrupt(img, "brightness", 2, rng_for(0, "brightness", 2, 0))[..., 0].tolist() == [[51, 151]]
    dot = np.zeros((28, 28, 1), np.uint8)
    dot[14, 14] = 255
    moved = corrupt(dot, "translate", 3, rng_for(0, "translate", 3, 0))
    (y,), (x,) = np.nonzero(moved[..., 0])
    assert max(abs(y - 14), abs(x - 14)) == 3  # severity 3: 3 px on the longer axis at 28 px


def test_batches_seed_each_sample_by_its_index_not_its_position():
    imgs = np.stack([digit(), digit()])
    a = corrupt_batch(imgs, np.array([5, 6]), "gaussian_noise", 3, seed=0)
    b = corrupt_batch(imgs[::-1], np.array([6, 5]), "gaussian_noise", 3, seed=0)
    assert np.array_equal(a, b[::-1]) and not np.array_equal(a[0], a[1])
    assert not np.array_equal(a, corrupt_batch(imgs, np.array([5, 6]), "gaussian_noise", 3, seed=1))


def test_bad_names_and_severities_are_refused():
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(digit(), "fog", 1, rng_for(0, "fog", 1, 0))
    with pytest.raises(ValueError, match="severity must be 0..5"):
        corrupt(digit(), "jpeg", 6, rng_for(0, "jpeg", 6, 0))
    with pytest.raises(ConfigError, match="corruptions\\[1\\]: must be one of"):
        RobustnessConfig(run="runs/x", corruptions=["jpeg", "fog"])
    with pytest.raises(ConfigError, match="severities\\[0\\]: must be between 1 and 5"):
        RobustnessConfig(run="runs/x", severities=[0])


def test_summary_means_relative_robustness_and_table():
    accuracy = {CLEAN: 0.8, ("jpeg", 1): 0.8, ("jpeg", 2): 0.6, ("rotate", 1): 0.4, ("rotate", 2): 0.2}
    s = summary(accuracy)
    assert s["clean_acc"] == 0.8 and s["mean_corruption_acc"] == pytest.approx(0.5)
    assert s["relative_robustness"] == pytest.approx(0.625) and s["per_corruption"] == pytest.approx({"jpeg": 0.7, "rotate": 0.3})
    report = {
        "run": "r",
        "model": "m",
        "shards": "s",
        "seed": 0,
        "corruptions": ["jpeg", "rotate"],
        "severities": [1, 2],
        "summary": s,
        "accuracy": {"jpeg": {"1": 0.8, "2": 0.6}, "rotate": {"1": 0.4, "2": 0.2}},
        "domain_shift": {"shards": "t", "accuracy": 0.3},
    }
    md = markdown(report)
    assert "| 80.00% | 50.00% | 0.625 |" in md and "| rotate | 40.00% | 20.00% | 30.00% |" in md and "| t (target) | 30.00% |" in md
