"""Near-duplicates of photos: candidates from an approximate-neighbour index, a decision calibrated on
edits planted in the corpus itself. Pure functions on thumbnails (and optional features), no Ray.

Photo duplicates differ by colour, crop, scale and flips rather than by a stroke's shift, so the digits
rule (`quality.duplicates`: structure pixels off a background) does not carry over. Here every image is
kept as a 32 x 32 colour thumbnail (3 KB). Candidates and the cheap prefilters work on its 16 x 16 means,
made "canonical" before comparison:
- each channel standardised (mean 0, std 1, the std floored at STD_FLOOR levels so that a flat sky is not
  blown up into noise): colour, brightness and contrast shifts, JPEG's colour drift drop out;
- shifted so that the centroid of its gradient energy is at the centre: translations drop out, and a
  crop's content lands where the original's does, so scale is left to the VIEWS.

Candidates: every image is queried in each of VIEWS (zoom 1, 0.9, 0.8 about the centre, each also
mirrored) against an index of the unviewed coarse descriptors (8 x 8 x 3 block means of the blurred
canonical thumbnail, unit norm), `neighbours` per view: exact below EXACT_MAX_ROWS, a faiss IVF above.
A second, centre-only index (`centre_descriptors`, the same views, CENTRE_NEIGHBOURS per view) adds the copies
whose border a crop or shift replaced; a pretrained run's features, when given, add their own `neighbours`
nearest rows.

Decision, in three passes over the candidates, each on fewer pairs: a cheap band-pass (difference of
Gaussians) similarity of 2 x 2 means at the view that found the pair (`quick_scores`), the 16 px band
similarity best over +-SHIFT px (`fine_scores`), both prefilters; then the registered score at 32 px
(`registered_scores`): each image zoomed and mirrored over REGISTER_SCALES, every shift up to
REGISTER_SHIFT px at once by FFT cross-correlation, the best normalised correlation of the bands. At 16 px
a crop or a 3 px shift is a sub-pixel misfit that unrelated look-alikes match as well; registered at
32 px, copies score 0.9-1.0 and look-alikes mostly below. An energy floor makes two smooth images (sea,
sky, a wall) score low whatever their shapes: the band-pass removes the gradients that make two skies
alike, and what is left of a flat image is too little energy to pass. The threshold and the prefilters'
floors are calibrated on pairs planted from a sample of the corpus (`quality.edits`): for each edit, a
small quantile of its planted pairs' scores, the lowest over edits; the threshold is raised only where
more than a set fraction of the corpus would be flagged (`near_duplicate_pairs`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rayssl.quality.edits import PHOTO_EDITS

THUMB_SIZE = 32  # the stored thumbnail (3 KB per image) and the decision's resolution
COARSE_SIZE = 16  # candidates and prefilters work on 2 x 2 means of it
STD_FLOOR = 4.0  # grey levels: a channel flatter than this is scaled as if it had this std
VIEWS = tuple((scale, flip) for scale in (1.0, 0.9, 0.8) for flip in (False, True))
COARSE_GRID = 8
# The centre index: block means of the central part of the canonical thumbnail only, which a crop or a shift
# keeps and whose border it replaces. On CIFAR-10 it offers translations the whole-image index ranks below
# 10 look-alikes (planted 3 px shifts found as candidates: 94% -> 96% with 3 neighbours a view).
CENTRE_GRID = 6
CENTRE_MARGIN = 3  # px of the 16 px canonical thumbnail left out on each side
CENTRE_NEIGHBOURS = 3
COARSE_DIMS = 48  # principal components of the coarse descriptor that the index holds
PCA_SAMPLE = 20_000
# Per value. A canonical CIFAR-10 image's band holds ~0.13 per value (median; 1% under 0.04): two equal
# bands at 0.05 score 0.98, two near-flat ones (0.002) at most 0.67. 0.01 cost identical low-texture
# copies (a mirrored image at 0.05 scored 0.91) the threshold.
ENERGY_FLOOR = 0.002
SHIFT = 1  # thumbnail px searched each way in the fine score (2 px of a 32 px image)
EXACT_MAX_ROWS = 20_000
IVF_LISTS_PER_SQRT_N = 4
IVF_NPROBE = 16
BLOCK = 8192  # images (or pairs) per torch block: bounds memory at millions of images
# The decision (`registered_scores`): a copy's crop of 80-95% is a zoom of 1.05-1.25 about a point up to 4 px
# off the centre, a translation up to 3 px: zooms in 5% steps (at most 0.4 px off at the edge) and every
# shift up to REGISTER_SHIFT px cover both, mirrored or not.
REGISTER_SCALES = (1.0, 0.95, 0.9, 0.85, 0.8)
REGISTER_SHIFT = 5
REGISTER_FFT = 40  # >= THUMB_SIZE + REGISTER_SHIFT: the correlation does not wrap within the shifts searched
REGISTER_BORDER = 2  # px left out of the query: resampled and edge-repeated borders agree with nothing
REGISTER_SIGMAS = (1.0, 4.0)  # the band at 32 px: the 16 px band's wavelengths, finer detail kept
REGISTER_BLOCK = 1024  # pairs per block (~30 MB of spectra)


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    """uint8 [H, W, C] (C 1 or 3) -> uint8 [3, THUMB_SIZE, THUMB_SIZE] (box-filtered; grey repeated)."""
    rgb = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels
    small = np.asarray(Image.fromarray(rgb).resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX))
    return np.ascontiguousarray(small.transpose(2, 0, 1))


def canonical(thumbs: np.ndarray) -> torch.Tensor:
    """[N, 3, S, S] (uint8 or float) -> float32 [N, 3, S, S]: each channel standardised (floored std), then shifted
    (sub-pixel, edges repeated) so that the centroid of its gradient energy sits at the centre."""
    x = torch.from_numpy(np.ascontiguousarray(thumbs)).float()
    x = x - x.mean(dim=(2, 3), keepdim=True)
    x = x / x.std(dim=(2, 3), keepdim=True).clamp_min(STD_FLOOR)
    # Central differences (edges repeated): a mirrored image gets the mirrored centroid exactly, so a
    # flipped copy lines up without the half-pixel resampling that a one-sided difference would cost.
    smooth = F.pad(_blur(x, 0.5), (1, 1, 1, 1), mode="replicate")
    energy = ((smooth[:, :, 2:, 1:-1] - smooth[:, :, :-2, 1:-1]).abs() + (smooth[:, :, 1:-1, 2:] - smooth[:, :, 1:-1, :-2]).abs()).sum(1)
    energy = energy / energy.sum(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    axis = torch.linspace(-1, 1, x.shape[-1])
    centre_y, centre_x = (energy.sum(2) * axis).sum(1), (energy.sum(1) * axis).sum(1)
    return _affine(x, torch.ones(len(x)), torch.ones(len(x)), centre_x, centre_y)


def view(x: torch.Tensor, scale: float, flip: bool) -> torch.Tensor:
    """[N, C, S, S] zoomed in by 1/scale about the centre (scale <= 1), mirrored when `flip`: bilinear, edges
    repeated, as `_affine` would; done as two small matrix products (separable), the hot path of scoring."""
    size = x.shape[-1]
    return _separable(x, _axis_matrix(scale, size), _axis_matrix(-scale if flip else scale, size))


def coarse_descriptors(x: torch.Tensor) -> np.ndarray:
    """[N, 3, S, S] canonical -> float32 [N, 3 * COARSE_GRID**2] unit vectors (mean removed) for the index."""
    return _unit_block_means(_blur(x, 0.75), COARSE_GRID)


def centre_descriptors(x: torch.Tensor) -> np.ndarray:
    """[N, 3, S, S] canonical -> float32 [N, 3 * CENTRE_GRID**2]: `coarse_descriptors` of the thumbnail without
    its CENTRE_MARGIN px border."""
    return _unit_block_means(_blur(x, 0.75)[:, :, CENTRE_MARGIN:-CENTRE_MARGIN, CENTRE_MARGIN:-CENTRE_MARGIN], CENTRE_GRID)


def _unit_block_means(x: torch.Tensor, grid: int) -> np.ndarray:
    """[N, C, H, W] -> float32 [N, C * grid**2]: grid x grid block means, mean removed, unit norm."""
    d = F.adaptive_avg_pool2d(x, grid).flatten(1)
    return F.normalize(d - d.mean(1, keepdim=True), dim=1).numpy().astype(np.float32)


def band(x: torch.Tensor) -> torch.Tensor:
    """[N, 3, S, S] -> [N, 3, S, S]: difference of Gaussians (sigma 0.5 and 2 px): edges and texture, no gradients."""
    return _blur(x, 0.5) - _blur(x, 2.0)


def band_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """2 a.b / (|a|^2 + |b|^2 + floor) per row of [P, D]: near 1 for equal textured bands, near 0 for unrelated
    ones, and low for two flat ones (the floor outweighs what little energy they have)."""
    floor = ENERGY_FLOOR * a.shape[1]
    return 2 * (a * b).sum(1) / ((a * a).sum(1) + (b * b).sum(1) + floor)


def band_vectors(canon: torch.Tensor, view_id: int) -> torch.Tensor:
    """float16 [N, 3 * (S/2)**2]: `band` of canonical [N, 3, S, S] thumbnails seen in VIEWS[view_id], 2 x 2
    means (the band's wavelengths are 3-12 px: little is lost, and the vectors are a quarter the size)."""
    out = []
    for lo in range(0, len(canon), BLOCK):
        x = view(canon[lo : lo + BLOCK].float(), *VIEWS[view_id])
        out.append(F.avg_pool2d(band(x), 2).flatten(1).half())
    return torch.cat(out) if out else torch.zeros(0, 3 * (COARSE_SIZE // 2) ** 2, dtype=torch.float16)


def canonical_all(thumbs: np.ndarray, centred: bool = True) -> torch.Tensor:
    """uint8 [N, 3, S, S] -> float16 [N, 3, C, C] canonical COARSE_SIZE thumbnails, computed in blocks (1.5 KB per
    image); `centred` False leaves out the shift to the gradient centroid (standardised only)."""
    make = canonical if centred else _standardised
    blocks = [make(coarse_thumbs(thumbs[lo : lo + BLOCK])).half() for lo in range(0, len(thumbs), BLOCK)]
    return torch.cat(blocks) if blocks else torch.zeros(0, 3, COARSE_SIZE, COARSE_SIZE, dtype=torch.float16)


def coarse_thumbs(thumbs: np.ndarray) -> np.ndarray:
    """uint8 [N, 3, S, S] -> float32 [N, 3, COARSE_SIZE, COARSE_SIZE] block means (S a multiple of COARSE_SIZE)."""
    n, c, size, _ = thumbs.shape
    f = size // COARSE_SIZE
    return thumbs.reshape(n, c, COARSE_SIZE, f, COARSE_SIZE, f).mean(axis=(3, 5), dtype=np.float32)


def candidate_pairs(
    canon: torch.Tensor, neighbours: int, features: np.ndarray | None = None, uncentred: torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(pairs int64 [P, 2] as (query, other), views int8 [P]) worth scoring, one row per unordered pair: the
    direction and view whose coarse descriptors were closest. canon: float16 [N, 3, S, S] (`canonical_all`).
    features: optional float32 [N, D] unit rows; each row's own `neighbours` nearest among them are added
    with view -1 ("score every view"). uncentred: optional float16 [N, 3, S, S] (`canonical_all(..., centred=
    False)`): its own index, queried as is and mirrored, adds the copies whose gradient centroid moved with
    their edited border (on CIFAR-10, a third of the 3 px translations the centred index missed)."""
    n = len(canon)
    k = min(neighbours + 1, n)
    found = _coarse_rows(canon, k, range(len(VIEWS)))
    found += _coarse_rows(canon, min(CENTRE_NEIGHBOURS + 1, n), range(len(VIEWS)), centre_descriptors)
    if uncentred is not None:
        found += _coarse_rows(uncentred, k, (0, 1))  # views 0 and 1: the identity, mirrored
    if features is not None:
        unit = np.ascontiguousarray(np.nan_to_num(features), dtype=np.float32)  # rows the embedder could not read match nothing
        feature_index = _index(unit)
        for lo in range(0, n, BLOCK):
            _, ids = feature_index.search(unit[lo : lo + BLOCK], k)
            found.append(_rows(lo, ids, np.full(ids.shape, 2.0, np.float32), -1))  # 2: kept over any coarse row
    rows = np.concatenate(found)
    rows = rows[np.argsort(-rows[:, 3], kind="stable")]
    key = np.sort(rows[:, :2], axis=1).astype(np.int64)
    _, first = np.unique(key[:, 0] * n + key[:, 1], return_index=True)
    best = rows[first]
    return best[:, :2].astype(np.int64), best[:, 2].astype(np.int8)


def _coarse_rows(
    thumbs: torch.Tensor, k: int, view_ids: Iterable[int], describe: Callable[[torch.Tensor], np.ndarray] = coarse_descriptors
) -> list[np.ndarray]:
    """`_rows` of every image of thumbs float16 [N, 3, S, S] queried in each of `view_ids` against an index of
    the unviewed descriptors (`describe`, PCA-projected), k nearest each."""
    n = len(thumbs)
    base = np.concatenate([describe(thumbs[lo : lo + BLOCK].float()) for lo in range(0, n, BLOCK)])
    project = _projection(base)
    index = _index(project(base))
    found = []
    for v in view_ids:
        for lo in range(0, n, BLOCK):
            closeness, ids = index.search(project(describe(view(thumbs[lo : lo + BLOCK].float(), *VIEWS[v]))), k)
            found.append(_rows(lo, ids, closeness, v))
    return found


def quick_scores(canon: torch.Tensor, pairs: np.ndarray, views: np.ndarray) -> np.ndarray:
    """float32 [P]: `band_similarity` of the 2 x 2-mean band vectors of each (query, other) candidate with the
    query in its view, unaligned; a view of -1 (a feature neighbour) takes the best view. The cheap first
    pass: one view's vectors of every image are held at a time."""
    other = band_vectors(canon, 0)  # view 0 is the identity
    scores = np.full(len(pairs), -1.0, np.float32)
    for v in range(len(VIEWS)):
        rows = np.flatnonzero((views == v) | (views < 0))
        if len(rows) == 0:
            continue
        query = other if v == 0 else band_vectors(canon, v)
        for lo in range(0, len(rows), 4 * BLOCK):
            block = rows[lo : lo + 4 * BLOCK]
            a, b = query[torch.from_numpy(pairs[block, 0])].float(), other[torch.from_numpy(pairs[block, 1])].float()
            scores[block] = np.maximum(scores[block], band_similarity(a, b).numpy())
    return scores


def fine_scores(canon: torch.Tensor, pairs: np.ndarray, views: np.ndarray) -> np.ndarray:
    """float32 [P]: `band_similarity` of the full-resolution bands, the query in its view (or as is, whichever
    is better), best over +-SHIFT px of the other (a view of -1 takes the best view)."""
    scores = np.full(len(pairs), -1.0, np.float32)
    size = canon.shape[-1]
    for lo in range(0, len(pairs), BLOCK):
        block, block_views = pairs[lo : lo + BLOCK], views[lo : lo + BLOCK]
        query, other = canon[torch.from_numpy(block[:, 0])].float(), band(canon[torch.from_numpy(block[:, 1])].float())
        padded = F.pad(other, (SHIFT,) * 4, mode="replicate")
        shifted = [padded[:, :, dy : dy + size, dx : dx + size].flatten(1) for dy in range(2 * SHIFT + 1) for dx in range(2 * SHIFT + 1)]
        for v in range(len(VIEWS)):
            # Every pair is also scored as is (view 0): a translated copy is often found at a zoomed view.
            rows = torch.from_numpy(np.flatnonzero((block_views == v) | (block_views < 0) | (v == 0)))
            if len(rows) == 0:
                continue
            seen = band(view(query[rows], *VIEWS[v])).flatten(1)
            best = torch.stack([band_similarity(seen, candidate[rows]) for candidate in shifted]).max(0).values
            scores[lo + rows.numpy()] = np.maximum(scores[lo + rows.numpy()], best.numpy())
    return scores


def registered_scores(thumbs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """float32 [P]: the decision's score of each (i, j) in pairs int64 [P, 2] over thumbs uint8 [N, 3, S, S]:
    `_registered` both ways (either image may be the crop of the other), the better of the two."""
    scores = np.full(len(pairs), -1.0, np.float32)
    for lo in range(0, len(pairs), REGISTER_BLOCK):
        block = pairs[lo : lo + REGISTER_BLOCK]
        a, b = _standardised(thumbs[block[:, 0]]), _standardised(thumbs[block[:, 1]])
        scores[lo : lo + len(block)] = torch.maximum(_registered(a, b), _registered(b, a)).numpy()
    return scores


def _registered(query: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """[P]: best over REGISTER_SCALES x mirrored views of `query` [P, 3, S, S] and over shifts d up to
    REGISTER_SHIFT px of 2 sum_x A(x) B(x + d) / (sum A^2 + sum_x W(x) B(x + d)^2 + floor), A the query view's
    band inside the border mask W, B the other's band: `band_similarity` at the best alignment, every shift at
    once by FFT (zero-padded to REGISTER_FFT: on CIFAR-10 a circular correlation at 32 px wraps enough of the
    other in to lower the calibrated threshold, the planted crops' 1% quantile, by 0.03)."""
    size, fft = other.shape[-1], (REGISTER_FFT, REGISTER_FFT)
    mask = torch.zeros(size, size)
    mask[REGISTER_BORDER:-REGISTER_BORDER, REGISTER_BORDER:-REGISTER_BORDER] = 1.0
    other_band = _registered_band(other, 1.0, False)
    other_spectrum = torch.fft.rfft2(other_band, s=fft)
    shifts = torch.tensor([d % REGISTER_FFT for d in range(-REGISTER_SHIFT, REGISTER_SHIFT + 1)])
    window = lambda x: x[:, shifts][:, :, shifts]  # noqa: E731  [P, F, F] -> [P, 2R+1, 2R+1]: the shifts searched
    # sum_x W(x) B(x + d)^2 for every d: the other's energy under the shifted mask.
    other_energy = window(torch.fft.irfft2(torch.fft.rfft2(mask, s=fft).conj() * torch.fft.rfft2(other_band.pow(2).sum(1), s=fft), s=fft))
    floor = ENERGY_FLOOR * 3 * float(mask.sum())
    best = torch.full((len(query),), -1.0)
    for scale in REGISTER_SCALES:
        for flip in (False, True):
            # The band of the zoomed view, not the zoom of the band: a copy's band was taken after its zoom
            # (on CIFAR-10 the cheaper order lowers the calibrated threshold by 0.016, closer to the look-alikes).
            seen = _registered_band(query, scale, flip) * mask
            product = (torch.fft.rfft2(seen, s=fft).conj() * other_spectrum).sum(1)  # summed over channels
            score = 2 * window(torch.fft.irfft2(product, s=fft)) / (seen.pow(2).sum((1, 2, 3))[:, None, None] + other_energy + floor)
            best = torch.maximum(best, score.flatten(1).max(1).values)
    return best


def _registered_band(x: torch.Tensor, scale: float, flip: bool) -> torch.Tensor:
    """[N, C, S, S] -> the REGISTER_SIGMAS difference of Gaussians of its `view` (edges repeated), as two
    separable products: N x N^T - W x W^T = (N - W) x N^T + W x (N - W)^T, each blur already composed with the view."""
    rows, cols = _register_matrices(x.shape[-1], scale, flip)
    return _separable(x, rows[0] - rows[1], cols[0]) + _separable(x, rows[1], cols[0] - cols[1])


@functools.cache
def _register_matrices(size: int, scale: float, flip: bool) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """((narrow, wide) blur @ row view, (narrow, wide) blur @ column view): [S, S] matrices for `_registered_band`."""
    rows, cols = _axis_matrix(scale, size), _axis_matrix(-scale if flip else scale, size)
    narrow, wide = (_blur_matrix(size, sigma) for sigma in REGISTER_SIGMAS)
    return (narrow @ rows, wide @ rows), (narrow @ cols, wide @ cols)


def _standardised(thumbs: np.ndarray) -> torch.Tensor:
    """[N, 3, S, S] (uint8 or float) -> float32, each channel mean 0 and std 1 (std floored at STD_FLOOR levels)."""
    x = torch.from_numpy(np.ascontiguousarray(thumbs)).float()
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return x / x.std(dim=(2, 3), keepdim=True).clamp_min(STD_FLOOR)


@dataclass(frozen=True)
class Calibration:
    """The near-duplicate threshold, the prefilters' floors, and what they were measured on."""

    threshold: float  # on `registered_scores`
    quick_floor: float  # on `quick_scores`: candidates below are not scored further
    fine_floor: float  # on `fine_scores`: candidates below are not registered
    planted: int  # planted pairs scored
    quantile: float  # per edit, of its planted pairs' registered scores: the threshold is the lowest over edits
    planted_recall: float  # fraction of planted pairs at or above the threshold and both floors
    per_edit: dict[str, float]  # that recall per edit kind


def calibrate(images: list[np.ndarray], seed: int = 0, quantile: float = 0.01) -> Calibration:
    """Plant one edit (cycling through `quality.edits.PHOTO_EDITS`) on each of `images` (uint8 [H, W, 3],
    a sample of the corpus) and score each (original, copy) pair as a corpus pair would be: the prefilters
    both ways at the best view, then registered. Each edit keeps 1 - `quantile` of its pairs above the
    threshold and 1 - `quantile` / 2 above each floor: the lowest such value over edits is taken, so the
    hardest edit (a crop) sets it rather than being averaged away by the easy ones."""
    rng = np.random.default_rng(seed)
    kinds = list(PHOTO_EDITS)
    edited = [PHOTO_EDITS[kinds[i % len(kinds)]](image, rng) for i, image in enumerate(images)]
    originals = np.stack([thumbnail(image) for image in images])
    copies = np.stack([thumbnail(image) for image in edited])
    quick_forward, fine_forward = _best_view_scores(originals, copies)
    quick_backward, fine_backward = _best_view_scores(copies, originals)
    quick, fine = np.maximum(quick_forward, quick_backward), np.maximum(fine_forward, fine_backward)
    registered = registered_scores(
        np.concatenate([originals, copies]), np.stack([np.arange(len(images)), np.arange(len(images)) + len(images)], 1)
    )
    kind_of = np.array([kinds[i % len(kinds)] for i in range(len(images))])
    lowest = lambda scores, q: float(min(np.quantile(scores[kind_of == k], q) for k in set(kind_of)))  # noqa: E731
    threshold, quick_floor, fine_floor = lowest(registered, quantile), lowest(quick, quantile / 2), lowest(fine, quantile / 2)
    found = (registered >= threshold) & (quick >= quick_floor) & (fine >= fine_floor)
    return Calibration(
        threshold=threshold,
        quick_floor=quick_floor,
        fine_floor=fine_floor,
        planted=len(images),
        quantile=quantile,
        planted_recall=float(found.mean()),
        per_edit={kind: float(found[kind_of == kind].mean()) for kind in kinds},
    )


def near_duplicate_pairs(
    thumbs: np.ndarray,
    pixel_sha: list[str],
    calibration: Calibration,
    neighbours: int,
    max_flagged_fraction: float,
    features: np.ndarray | None = None,
    registered_per_image: float = 2.0,
) -> tuple[list[tuple[int, int, float]], float]:
    """((i, j, score) with i < j, not pixel-identical, for pairs at or above the threshold; the threshold).

    Candidates pass the quick and the fine floor, and every image's best one, then the best of the rest up to
    `registered_per_image` x N in all (`_registration_order`), are registered (`registered_scores`, ~1 ms a
    pair on 2 cores): the work stays linear in N whatever the floors admit. The threshold is the calibrated
    one, raised only where more than `max_flagged_fraction` of the images would have a passing pair: a safety
    net (a corpus of one repeated scene), since real photo corpora repeat themselves (CIFAR-10:
    bench/results/quality_photos.md).
    thumbs: uint8 [N, 3, S, S]; features: optional float32 [N, D] unit rows of a pretrained run.
    """
    if len(thumbs) < 2:
        return [], calibration.threshold
    canon = canonical_all(thumbs)
    pairs, views = candidate_pairs(canon, neighbours, features, uncentred=canonical_all(thumbs, centred=False))
    sha = np.asarray(pixel_sha)
    keep = sha[pairs[:, 0]] != sha[pairs[:, 1]]  # exact duplicates are reported as such
    pairs, views = pairs[keep], views[keep]
    keep = np.flatnonzero(quick_scores(canon, pairs, views) >= calibration.quick_floor)
    pairs, views = pairs[keep], views[keep]
    fine = fine_scores(canon, pairs, views)
    keep = np.flatnonzero(fine >= calibration.fine_floor)
    pairs = pairs[keep[_registration_order(pairs[keep], fine[keep], int(registered_per_image * len(thumbs)))]]
    scores = registered_scores(thumbs, pairs)
    best = np.full(len(thumbs), -1.0, np.float32)
    np.maximum.at(best, pairs[:, 0], scores)
    np.maximum.at(best, pairs[:, 1], scores)
    threshold = max(calibration.threshold, float(np.nextafter(np.quantile(best, 1 - max_flagged_fraction), np.inf)))
    passing = scores >= threshold
    ordered = np.sort(pairs[passing], axis=1)
    return sorted((int(i), int(j), round(float(s), 4)) for (i, j), s in zip(ordered, scores[passing])), threshold


def _registration_order(pairs: np.ndarray, fine: np.ndarray, budget: int) -> np.ndarray:
    """Rows of pairs int64 [P, 2] to register: every image's best `fine` [P] candidate, then the best of the
    rest up to `budget` rows in all (the bests are kept even past the budget: one per image at most). A copy
    whose 16 px score is low (a crop: 0.65 where look-alikes elsewhere score 0.7) is still its image's best
    match, and a global ranking alone would spend the budget on the second and third matches of crowded
    groups (on CIFAR-10 it dropped one planted crop in 50)."""
    order = np.argsort(-fine, kind="stable")
    images = np.stack([pairs[order, 0], pairs[order, 1]], axis=1).ravel()  # both images of each pair, best pairs first
    best_of_each = np.unique(np.repeat(order, 2)[np.unique(images, return_index=True)[1]])
    rest = order[~np.isin(order, best_of_each)][: max(0, budget - len(best_of_each))]
    return np.concatenate([best_of_each, rest])


def _best_view_scores(query_thumbs: np.ndarray, other_thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(quick, fine) float32 [P]: pair p (query p, other p) scored at the view whose coarse descriptor of
    query p is nearest other p's, as `candidate_pairs` would have found it."""
    canon = torch.cat([canonical(coarse_thumbs(query_thumbs)), canonical(coarse_thumbs(other_thumbs))]).half()
    n = len(query_thumbs)
    target = coarse_descriptors(canon[n:].float())
    closeness = np.stack([(coarse_descriptors(view(canon[:n].float(), *v)) * target).sum(1) for v in VIEWS], axis=1)
    pairs = np.stack([np.arange(n), np.arange(n, 2 * n)], axis=1)
    views = closeness.argmax(axis=1).astype(np.int8)
    return quick_scores(canon, pairs, views), fine_scores(canon, pairs, views)


def _projection(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """PCA of coarse descriptors [N, D] to COARSE_DIMS, re-normalised: a quarter of the search's arithmetic.
    Block means of blurred thumbnails are smooth, so few components hold most of their variance."""
    if x.shape[1] <= COARSE_DIMS or len(x) < 4 * COARSE_DIMS:
        return lambda rows: rows
    pca = faiss.PCAMatrix(x.shape[1], COARSE_DIMS)
    pca.train(x[np.sort(np.random.default_rng(0).choice(len(x), min(len(x), PCA_SAMPLE), replace=False))])
    return lambda rows: np.ascontiguousarray(F.normalize(torch.from_numpy(pca.apply(np.ascontiguousarray(rows))), dim=1).numpy())


def _index(x: np.ndarray) -> faiss.Index:
    """Inner-product index of unit rows x [N, D]: exact below EXACT_MAX_ROWS, IVF above (bounded work per query)."""
    n, d = x.shape
    if n <= EXACT_MAX_ROWS:
        flat = faiss.IndexFlatIP(d)
        flat.add(x)
        return flat
    nlist = int(round(IVF_LISTS_PER_SQRT_N * math.sqrt(n)))
    quantizer = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(n, min(n, 40 * nlist), replace=False)  # faiss wants >= 39 per list
    ivf.train(x[np.sort(sample)])
    ivf.add(x)
    ivf.nprobe = min(IVF_NPROBE, nlist)
    return ivf


def _rows(lo: int, ids: np.ndarray, closeness: np.ndarray, view_id: int) -> np.ndarray:
    """float64 [R, 4] (query row, neighbour row, view, closeness) of one search block, misses (-1) and self dropped."""
    query = np.repeat(np.arange(lo, lo + len(ids)), ids.shape[1])
    other, close = ids.ravel(), closeness.ravel()
    keep = (other >= 0) & (other != query)
    return np.stack([query[keep], other[keep], np.full(int(keep.sum()), view_id), close[keep]], axis=1).astype(np.float64)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, C, S, S], edges repeated: M x M^T with M the [S, S] blur matrix (on
    small thumbnails two batched matrix products are far faster than a depthwise convolution)."""
    matrix = _blur_matrix(x.shape[-1], sigma)
    return _separable(x, matrix, matrix)


@functools.cache
def _blur_matrix(size: int, sigma: float) -> torch.Tensor:
    """[S, S] Gaussian blur of one axis, edges repeated (taps beyond the edge land on it)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    taps = taps / taps.sum()
    matrix = torch.zeros(size, size)
    for offset, weight in zip(range(-radius, radius + 1), taps):
        matrix[torch.arange(size), (torch.arange(size) + offset).clamp(0, size - 1)] += weight
    return matrix


def _separable(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """rows @ x @ cols^T for every [S, S] image of x [N, C, S, S], as two single large matrix products
    (a broadcast matmul would run N * C tiny ones)."""
    n, c, size, _ = x.shape
    x = (x.reshape(-1, size) @ cols.T).reshape(n, c, size, size)  # along each row: the columns
    x = rows @ x.permute(2, 0, 1, 3).reshape(size, -1)  # along each column: the rows
    return x.reshape(size, n, c, size).permute(1, 2, 0, 3).contiguous()


@functools.cache
def _axis_matrix(scale: float, size: int) -> torch.Tensor:
    """[S, S] bilinear resampling of one axis at normalised coordinate scale * u (align_corners, border clamp)."""
    source = ((scale * torch.linspace(-1, 1, size) + 1) / 2 * (size - 1)).clamp(0, size - 1)
    low = source.floor().long().clamp(max=size - 1)
    high = (low + 1).clamp(max=size - 1)
    frac = source - low
    matrix = torch.zeros(size, size)
    matrix[torch.arange(size), low] += 1 - frac
    matrix[torch.arange(size), high] += frac
    return matrix


def _affine(x: torch.Tensor, scale_x: torch.Tensor, scale_y: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor) -> torch.Tensor:
    """Resample [N, C, S, S] at (scale_x u + shift_x, scale_y v + shift_y) in normalised coordinates."""
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = scale_x, scale_y, shift_x, shift_y
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=True)
