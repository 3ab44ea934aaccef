"""The quality checks on tiny arrays with known answers (no Ray)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from helpers import strokes
from rayssl.config import QualityConfig
from rayssl.data.decode import DecodeError
from rayssl.quality import duplicates, stats
from rayssl.quality.findings import find_issues, summary
from rayssl.quality.labels import label_issues, out_of_sample_probabilities
from rayssl.quality.report import markdown
from rayssl.quality.signatures import Signatures, changed_fraction, changed_fractions, signature


def png(array: np.ndarray, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG", **options)
    return buf.getvalue()


def shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    return np.roll(np.roll(a, dy, 0), dx, 1)


def test_pixel_hash_ignores_the_encoding_and_sees_the_pixels():
    a = strokes(0)
    assert signature(png(a, compress_level=0)).pixel_sha == signature(png(a, compress_level=9)).pixel_sha
    other = a.copy()
    other[0, 0] = 1
    assert signature(png(other)).pixel_sha != signature(png(a)).pixel_sha


def test_signature_statistics_of_a_constant_image():
    sig = signature(png(np.full((10, 20), 7, np.uint8)))
    assert (sig.height, sig.width, sig.mode) == (10, 20, "L")
    assert sig.mean == pytest.approx(7) and sig.std == 0 and sig.entropy == 0
    assert sig.analysis.shape == (28, 28)


def test_signature_of_broken_bytes_raises_the_decode_reason():
    with pytest.raises(DecodeError, match="empty image bytes"):
        signature(b"")
    with pytest.raises(DecodeError):
        signature(png(strokes(1))[:40])  # truncated


def test_changed_fraction_is_zero_for_shifted_copies_and_large_for_other_pictures():
    a = strokes(3)
    assert changed_fraction(a, shifted(a, 2, -1)) == 0
    assert changed_fraction(a, shifted(a, 3, 0), radius=2) > 0  # beyond the search radius
    assert changed_fraction(a, strokes(4)) > 0.3
    # Hand-computed: a 2x2 bright square against a 2x1 one: 4 structure pixels, 2 changed.
    square, half = np.zeros((6, 6), np.uint8), np.zeros((6, 6), np.uint8)
    square[2:4, 2:4] = 255
    half[2:4, 2] = 255
    assert changed_fraction(square, half, radius=0) == pytest.approx(0.5)
    np.testing.assert_allclose(changed_fractions(np.stack([square, square]), np.stack([half, square]), radius=0), [0.5, 0.0])


def test_exact_and_near_duplicates_are_found_and_distinct_images_are_not():
    base = [strokes(s) for s in range(40)]
    rng = np.random.default_rng(0)
    noisy = np.clip(base[5] + rng.normal(0, 10, base[5].shape), 0, 255).astype(np.uint8)
    images = [*base, base[1].copy(), shifted(base[2], 1, 2), noisy]  # 40 exact, 41 shifted, 42 noised
    analysis = np.stack([signature(png(a)).analysis for a in images])
    sha = [signature(png(a)).pixel_sha for a in images]
    assert duplicates.exact_duplicate_groups(sha) == [[1, 40]]
    near = duplicates.near_duplicate_pairs(analysis, sha)
    assert sorted((i, j) for i, j, _ in near) == [(2, 41), (5, 42)]


def test_groups_and_leaks_name_the_samples_across_splits():
    groups = duplicates.duplicate_groups(5, [(0, 3), (3, 4)])
    assert groups == [[0, 3, 4]]
    # Leaks are direct pairs: 0 and 4 are both alike 3 but not necessarily alike each other.
    assert duplicates.cross_split_pairs([(0, 3), (3, 4), (0, 1)], ["train", "train", "train", "test", "train"]) == [(0, 3), (3, 4)]


def test_robust_z_and_outliers():
    np.testing.assert_allclose(stats.robust_z(np.array([1.0, 2.0, 3.0])), [-1 / 1.4826, 0, 1 / 1.4826])
    assert stats.robust_z(np.array([5.0, 5.0, 6.0]))[2] == np.inf
    n = 200
    rng = np.random.default_rng(0)
    mean, std, entropy = rng.normal(30, 3, n), rng.normal(80, 5, n), rng.normal(2.0, 0.1, n)
    height, width, mode = np.full(n, 28), np.full(n, 28), ["L"] * n
    std[0] = 0  # blank
    mean[1] = 250  # too bright
    height[2], width[2] = 280, 280  # unusual size
    mode[3] = "RGB"  # unusual channels
    flags = stats.outliers(mean, std, entropy, height, width, mode)
    assert np.flatnonzero(flags["blank"]).tolist() == [0]
    assert np.flatnonzero(flags["too_bright"]).tolist() == [1]
    assert np.flatnonzero(flags["unusual_size"]).tolist() == [2]
    assert np.flatnonzero(flags["unusual_channels"]).tolist() == [3]
    assert not flags["too_dark"].any()


def test_class_balance_and_sources():
    balance = stats.class_balance(np.array([0, 0, 0, 0, 1, -1]), ["zero", "one", "two"], min_per_class=2)
    assert balance["histogram"] == {"zero": 4, "one": 1, "two": 0}
    assert balance["imbalance_ratio"] == float("inf") and balance["classes_below_min"] == ["one", "two"]
    assert stats.class_balance(np.array([0, 0, 1]), ["a", "b"], 1)["imbalance_ratio"] == 2.0
    ids = [f"cam{c}/{i}.png" for c in "ABCD" for i in range(10)]
    mean = np.array([30.0] * 10 + [31.0] * 10 + [29.0] * 10 + [90.0] * 10)
    rows = stats.sources(ids, mean, np.full(40, 50.0), np.zeros(40, np.int64), 2)
    assert [r["source"] for r in rows if r["flagged"]] == ["camD"] and rows[3]["flagged"] == ["brightness"]
    assert stats.sources(["train/1", "train/2"], np.zeros(2), np.zeros(2), np.zeros(2, np.int64), 2) == []


def test_label_issues_find_flipped_labels_on_separable_features():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    features = np.eye(3)[labels] * 5 + rng.normal(0, 0.3, (120, 3))
    noisy = labels.copy()
    flipped = [3, 50, 100]
    noisy[flipped] = (labels[flipped] + 1) % 3
    probs = out_of_sample_probabilities(features.astype(np.float32), noisy, 3)
    positions, suggested, _ = label_issues(noisy, probs)
    assert sorted(positions.tolist()) == flipped
    assert sorted(zip(positions.tolist(), suggested.tolist())) == [(p, int(labels[p])) for p in flipped]


def sigs_of(images: list[np.ndarray], splits: list[str], labels: list[int]) -> Signatures:
    s = [signature(png(a)) for a in images]
    return Signatures(
        split=splits,
        index=np.arange(len(images)),
        sample_id=[f"{sp}/{i:03d}" for i, sp in enumerate(splits)],
        label=np.array(labels),
        pixel_sha=[x.pixel_sha for x in s],
        height=np.array([x.height for x in s]),
        width=np.array([x.width for x in s]),
        mode=[x.mode for x in s],
        mean=np.array([x.mean for x in s]),
        std=np.array([x.std for x in s]),
        entropy=np.array([x.entropy for x in s]),
        analysis=np.stack([x.analysis for x in s]),
        thumb=np.stack([x.thumb for x in s]),
        rows_read={},
    )


def test_find_issues_reports_a_test_image_leaked_into_train():
    images = [strokes(s) for s in range(30)] + [np.zeros((28, 28), np.uint8)]
    splits = ["train"] * 20 + ["test"] * 10 + ["train"]
    images[3] = shifted(images[25], 1, 1)  # train/003 is test/025 moved by a pixel
    images[4] = images[26].copy()  # train/004 is test/026
    sigs = sigs_of(images, splits, [i % 2 for i in range(31)])
    findings = find_issues(sigs, ["even", "odd"], QualityConfig(label_issues=False))
    leaks = sorted((x["a"]["sample_id"], x["b"]["sample_id"], x["kind"]) for x in findings["leaks"])
    assert leaks == [("train/003", "test/025", "near"), ("train/004", "test/026", "exact")]
    assert findings["outliers"]["blank"] == [{"split": "train", "sample_id": "train/030"}]
    counts = summary(findings, quarantined=2)
    assert counts["train/test leaks"] == 2 and counts["undecodable"] == 2 and counts["exact duplicate groups"] == 1
    report = {"shards": "s", "seconds": 1.0, "images_per_s": 31.0, "undecodable": [], "summary": counts, "findings": findings}
    md = markdown(report)
    assert "| train/test leaks | 2 |" in md and "train/004 = test/026 (exact)" in md
