"""Photo near-duplicates (quality.photos) and the edits that calibrate them, on tiny synthetic images (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rayssl.quality import photos
from rayssl.quality.edits import PHOTO_EDITS, crop_rescale, horizontal_flip, translate


def textured(seed: int, size: int = 32) -> np.ndarray:
    """uint8 [size, size, 3]: smooth random colour blobs plus edges, unlike any other seed's."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (4, 4, 3))
    image = np.kron(coarse, np.ones((size // 4, size // 4, 1)))
    image += rng.normal(0, 25, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def sky(seed: int, size: int = 32) -> np.ndarray:
    """uint8 [size, size, 3]: a vertical blue gradient with faint noise (a smooth image)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(150, 220, size)[:, None, None] * np.array([0.6, 0.8, 1.0])
    return np.clip(np.broadcast_to(ramp, (size, size, 3)) + rng.normal(0, 1.5, (size, size, 3)), 0, 255).astype(np.uint8)


def test_band_similarity_against_hand_computed_values():
    a = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # 2 a.b / (|a|^2 + |b|^2 + 0.002 * 4) = 2 / 2.008 for equal unit rows; 0 for orthogonal ones.
    assert photos.band_similarity(a, a).item() == pytest.approx(2 / 2.008)
    assert photos.band_similarity(a, torch.tensor([[0.0, 1.0, 0.0, 0.0]])).item() == pytest.approx(0.0)
    big = torch.full((1, 4), 10.0)
    assert photos.band_similarity(big, big).item() == pytest.approx(2 * 400 / (800 + 0.008))


def test_thumbnail_is_colour_and_grey_is_repeated():
    assert photos.thumbnail(textured(0)).shape == (3, photos.THUMB_SIZE, photos.THUMB_SIZE)
    grey = photos.thumbnail(textured(0)[..., :1])
    assert np.array_equal(grey[0], grey[2])


def test_canonical_removes_brightness_and_contrast():
    image = textured(1)
    brighter = np.clip(image.astype(np.float32) * 0.8 + 30, 0, 255).astype(np.uint8)
    a, b = photos.canonical(np.stack([photos.thumbnail(image), photos.thumbnail(brighter)]))
    assert torch.allclose(a, b, atol=0.05)


def test_edits_keep_size_and_change_pixels():
    rng = np.random.default_rng(0)
    image = textured(2)
    for name, edit in PHOTO_EDITS.items():
        edited = edit(image, rng)
        assert edited.shape == image.shape and edited.dtype == np.uint8, name
        assert not np.array_equal(edited, image), name
    assert np.array_equal(horizontal_flip(image, rng)[:, 0], image[:, -1])
    shifted = translate(image, np.random.default_rng(3))
    assert any(
        np.array_equal(np.roll(image, (dy, dx), (0, 1))[4:-4, 4:-4], shifted[4:-4, 4:-4]) for dy in range(-3, 4) for dx in range(-3, 4)
    )
    assert crop_rescale(image, rng).shape == image.shape


def test_every_edit_scores_above_unrelated_images():
    rng = np.random.default_rng(4)
    originals = [textured(10 + i) for i in range(6)]
    copies = [edit(image, rng) for image, edit in zip(originals, PHOTO_EDITS.values())]
    thumbs = np.stack([photos.thumbnail(x) for x in originals + copies])
    n = len(originals)
    pairs = np.array([(i, n + i) for i in range(n)] + [(i, n + (i + 1) % n) for i in range(n)])
    scores = photos.fine_scores(photos.canonical_all(thumbs), pairs, np.full(len(pairs), -1, np.int8))
    assert scores[:n].min() > scores[n:].max()


def test_fine_scores_also_score_a_pair_as_is_whatever_view_found_it():
    image = textured(60)
    shifted = translate(image, np.random.default_rng(9))
    canon = photos.canonical_all(np.stack([photos.thumbnail(image), photos.thumbnail(shifted)]))
    pair = np.array([(0, 1)])
    as_is = photos.fine_scores(canon, pair, np.array([0], np.int8))
    zoomed = photos.fine_scores(canon, pair, np.array([len(photos.VIEWS) - 2], np.int8))  # found at zoom 0.8, not mirrored
    assert as_is[0] > 0.9 and zoomed[0] == pytest.approx(as_is[0])


def test_near_duplicate_pairs_find_copies_and_not_smooth_skies():
    rng = np.random.default_rng(5)
    images = [textured(20 + i) for i in range(30)] + [sky(i) for i in range(6)]
    images.append(horizontal_flip(images[3], rng))  # 36: a mirrored copy of 3
    images.append(crop_rescale(images[7], rng))  # 37: a crop of 7
    images.append(images[9].copy())  # 38: an exact copy of 9 (reported as exact, not near)
    thumbs = np.stack([photos.thumbnail(x) for x in images])
    sha = [str(hash(x.tobytes())) for x in images]
    cal = photos.calibrate([textured(100 + i) for i in range(60)], seed=0, quantile=0.02)
    assert 0.0 < cal.threshold < 1.0 and cal.quick_floor < 1.0 and cal.fine_floor < 1.0 and cal.planted == 60
    pairs, threshold = photos.near_duplicate_pairs(thumbs, sha, cal, neighbours=5, max_flagged_fraction=0.2)
    assert threshold >= cal.threshold
    found = {(i, j) for i, j, _ in pairs}
    assert {(3, 36), (7, 37)} <= found
    assert not any(i >= 30 and j < 36 for i, j in found), "two smooth skies matched"
    assert (9, 38) not in found


def test_centre_descriptors_ignore_the_border_that_a_crop_or_shift_replaces():
    canon = photos.canonical(photos.coarse_thumbs(photos.thumbnail(textured(3))[None]))[0]  # [3, 16, 16]
    framed = canon.clone()
    framed[:, :2], framed[:, -2:], framed[:, :, :2], framed[:, :, -2:] = -3.0, 3.0, -3.0, 3.0  # a new 2 px border
    pair = torch.stack([canon, framed])
    centre, whole = photos.centre_descriptors(pair), photos.coarse_descriptors(pair)
    assert centre.shape == (2, 3 * photos.CENTRE_GRID**2)
    assert float(centre[0] @ centre[1]) > 0.99  # only the blur's reach into the margin is left of the frame
    assert float(whole[0] @ whole[1]) < 0.9


def test_registered_scores_align_crops_and_shifts_and_keep_skies_apart():
    rng = np.random.default_rng(8)
    image = textured(50)
    copies = [crop_rescale(image, rng), translate(image, rng), horizontal_flip(crop_rescale(image, rng), rng)]
    images = [image, *copies, textured(51), sky(1), sky(2)]
    thumbs = np.stack([photos.thumbnail(x) for x in images])
    scores = photos.registered_scores(thumbs, np.array([(0, 1), (2, 0), (0, 3), (0, 4), (5, 6)]))
    assert scores[:3].min() > 0.85, scores  # copies: aligned by zoom, shift and mirror
    assert scores[3] < 0.5 and scores[4] < 0.5, scores  # an unrelated image; two skies (the energy floor): far below ~0.88


def test_registered_score_of_an_image_with_itself_is_the_floored_similarity():
    thumbs = np.stack([photos.thumbnail(textured(52))] * 2)
    band = photos._registered_band(photos._standardised(thumbs[:1]), 1.0, False)[..., 2:-2, 2:-2]
    energy = float(band.pow(2).sum())
    # Identity view, no shift: 2 E / (E + E + floor), the floor 0.002 per value of the 3 x 28 x 28 mask.
    expected = 2 * energy / (2 * energy + 0.002 * 3 * 28 * 28)
    assert photos.registered_scores(thumbs, np.array([(0, 1)]))[0] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(("scale", "flip"), photos.VIEWS)
def test_views_as_matrix_products_equal_grid_sampling(scale, flip):
    x = torch.randn(2, 3, photos.THUMB_SIZE, photos.THUMB_SIZE)
    ones, zeros = torch.ones(2), torch.zeros(2)
    reference = photos._affine(x, ones * (-scale if flip else scale), ones * scale, zeros, zeros)
    assert torch.allclose(photos.view(x, scale, flip), reference, atol=1e-5)


def test_the_flagged_fraction_caps_the_threshold():
    rng = np.random.default_rng(6)
    images = [textured(40 + i) for i in range(20)]
    images += [horizontal_flip(images[i], rng) for i in range(4)]  # 4 pairs: 8 of 24 images
    thumbs = np.stack([photos.thumbnail(x) for x in images])
    sha = [str(hash(x.tobytes())) for x in images]
    loose = photos.Calibration(threshold=-1.0, quick_floor=-1.0, fine_floor=-1.0, planted=1, quantile=0.01, planted_recall=1.0, per_edit={})
    everything, _ = photos.near_duplicate_pairs(thumbs, sha, loose, neighbours=3, max_flagged_fraction=1.0)
    capped, threshold = photos.near_duplicate_pairs(thumbs, sha, loose, neighbours=3, max_flagged_fraction=8 / 24)
    assert len(everything) > 4 and threshold > -1.0
    assert {(i, j) for i, j, _ in capped} == {(i, 20 + i) for i in range(4)}


def test_a_mirrored_image_is_canonicalised_to_the_mirror():
    thumbs = np.stack([photos.thumbnail(textured(7)), photos.thumbnail(horizontal_flip(textured(7), np.random.default_rng(0)))])
    canon = photos.canonical(thumbs)
    assert torch.allclose(canon[0].flip(-1), canon[1], atol=1e-4)


def test_every_image_s_best_candidate_is_registered_before_the_rest():
    pairs = np.array([[0, 1], [0, 2], [1, 2], [3, 4], [0, 3]])
    fine = np.array([0.9, 0.8, 0.7, 0.3, 0.85], np.float32)
    # best per image: 0, 1 -> row 0; 2 -> row 1; 3 -> row 4; 4 -> row 3 (0.3, below every global top 3)
    assert sorted(photos._registration_order(pairs, fine, budget=3).tolist()) == [0, 1, 3, 4]
    assert sorted(photos._registration_order(pairs, fine, budget=5).tolist()) == [0, 1, 2, 3, 4]
