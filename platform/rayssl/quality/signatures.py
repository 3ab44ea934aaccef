"""Per-image signatures for the quality scan: pure functions on encoded bytes, no Ray.

A signature is what the checks need from one image, small enough to keep for every sample of a
corpus: a hash of the decoded pixels, the original size and mode, brightness statistics, and a
small grey "analysis image" (centred on its centre of mass) that the digits near-duplicate check compares,
and a 16 x 16 colour thumbnail that the photo check compares.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from rayssl.data.decode import decode_pixels
from rayssl.quality.photos import thumbnail

# Grey analysis images are this many pixels a side: MNIST's native size. Near-duplicate
# verification compares these; 28 x 28 bytes per sample is what the scan keeps for every image.
ANALYSIS_SIZE = 28
# Grey levels a pixel must move to count as changed (and to count as structure, off the background).
# Measured on MNIST (5,300 images with planted copies): planted shifted / noised (sigma 10) / JPEG-75
# copies score at most 0.035 at 32 levels; the nearest distinct digit scores >= 0.078 even at 64.
# On scikit-learn's 8x8 digits (17 grey levels, upscaled) 64 levels made 39% of images a near
# duplicate of their nearest neighbour; 32 levels makes it 0.7%.
CHANGE_LEVELS = 32
# Thumbnail grid for the near-duplicate candidate index (7 x 7 means of 4 x 4 cells at 28 px).
THUMB_GRID = 7


@dataclass(frozen=True)
class Signature:
    pixel_sha: str  # sha1 of the decoded pixels (shape and bytes): re-encoded copies share it
    height: int
    width: int
    mode: str  # PIL mode of the file as stored ("L", "RGB", "CMYK", "I;16", ...)
    mean: float  # grey level 0..255
    std: float
    entropy: float  # bits, of the 256-bin grey histogram
    analysis: np.ndarray  # uint8 [ANALYSIS_SIZE, ANALYSIS_SIZE], grey, centred on its centre of mass
    thumb: np.ndarray  # uint8 [3, 16, 16] colour thumbnail (grey repeated): what photo near-duplicates compare


@dataclass
class Signatures:
    """Every decodable image of a shard set, positions aligned across the arrays (splits concatenated)."""

    split: list[str]
    index: np.ndarray  # int64 [N]
    sample_id: list[str]
    label: np.ndarray  # int64 [N], -1 unlabelled
    pixel_sha: list[str]
    height: np.ndarray
    width: np.ndarray
    mode: list[str]
    mean: np.ndarray  # float64 [N]
    std: np.ndarray
    entropy: np.ndarray
    analysis: np.ndarray  # uint8 [N, S, S]
    thumb: np.ndarray  # uint8 [N, 3, 16, 16] (quality.photos.thumbnail)
    rows_read: dict[str, int]  # per split, decodable or not (the manifest's counts)


def signature(data: bytes | None) -> Signature:
    """The signature of one encoded image; raises DecodeError (the decode quarantine's reason) when unusable."""
    # The training decoder's checks and conversions, at the file's own size and grey or colour as stored.
    pixels, mode = decode_pixels(data)
    channels = pixels.shape[2]
    height, width = pixels.shape[:2]
    grey = pixels[..., 0].astype(np.float32) if channels == 1 else pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    grey8 = np.rint(grey).astype(np.uint8)  # ITU-R 601 luma, as PIL's "L"
    histogram = np.bincount(grey8.ravel(), minlength=256) / grey8.size
    nonzero = histogram[histogram > 0]
    small = (
        grey8
        if grey8.shape == (ANALYSIS_SIZE, ANALYSIS_SIZE)
        else np.asarray(Image.fromarray(grey8).resize((ANALYSIS_SIZE, ANALYSIS_SIZE), Image.Resampling.BILINEAR))
    )
    return Signature(
        # The hash covers the decoded channels: a grey copy of a colour picture is another image.
        pixel_sha=hashlib.sha1(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest(),
        height=height,
        width=width,
        mode=mode,
        mean=float(grey.mean()),
        std=float(grey.std()),
        entropy=float(-(nonzero * np.log2(nonzero)).sum()),
        analysis=centred(small),
        thumb=thumbnail(pixels),
    )


def centred(grey: np.ndarray) -> np.ndarray:
    """uint8 [S, S] shifted (whole pixels, background fill) so that its centre of mass is at the centre.

    Translated copies then line up, and the thumbnails of the candidate index sit in one place; the
    remaining +-1 px is left to `changed_fractions`' alignment search. Intensity is measured from the
    background (the border's median), so a bright background does not pin the centre.
    """
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = int(np.median(border))
    weight = np.abs(grey.astype(np.int32) - background)
    total = weight.sum()
    if total == 0:
        return grey.copy()
    rows, cols = np.arange(grey.shape[0]), np.arange(grey.shape[1])
    cy, cx = (weight.sum(axis=1) @ rows) / total, (weight.sum(axis=0) @ cols) / total
    dy, dx = int(round((grey.shape[0] - 1) / 2 - cy)), int(round((grey.shape[1] - 1) / 2 - cx))
    out = np.full_like(grey, background)
    h, w = grey.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = grey[max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return out


def thumbnails(analysis: np.ndarray) -> np.ndarray:
    """[N, S, S] uint8 analysis images -> [N, THUMB_GRID**2] float32 unit vectors (mean removed).

    Block means of the blurred image are insensitive to noise, re-encoding and small shifts; the index finds near-duplicate
    candidates among these, `changed_fraction` then decides.
    """
    n, s = analysis.shape[0], analysis.shape[1]
    cell = s // THUMB_GRID
    # Blurred first, so that the +-1 px left after centring moves mass between cells smoothly.
    blurred = ndimage.gaussian_filter(analysis.astype(np.float32), sigma=(0, cell / 2, cell / 2))
    cropped = blurred[:, : cell * THUMB_GRID, : cell * THUMB_GRID]
    t = cropped.reshape(n, THUMB_GRID, cell, THUMB_GRID, cell).mean(axis=(2, 4)).reshape(n, -1)
    t -= t.mean(axis=1, keepdims=True)
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-6)


def changed_fraction(a: np.ndarray, b: np.ndarray, radius: int = 2, threshold: int = CHANGE_LEVELS) -> float:
    """`changed_fractions` of one pair of [S, S] analysis images."""
    return float(changed_fractions(a[None], b[None], radius, threshold)[0])


def changed_fractions(a: np.ndarray, b: np.ndarray, radius: int = 2, threshold: int = CHANGE_LEVELS) -> np.ndarray:
    """How different pairs of analysis images are, after the best whole-pixel alignment within +-radius.

    a, b: uint8 [P, S, S] (pair p is a[p], b[p]). Returns float64 [P]: the fraction of "structure"
    pixels (more than `threshold` grey levels from their image's background, the border median, in
    either image) whose values differ by more than `threshold`, minimised over the (2r+1)^2 shifts of
    b. Noise, blur and JPEG artefacts rarely move a pixel that far; a different picture moves many.
    Two flat images score 1 (nothing to compare; the blank check reports them).
    """
    a16, b16 = a.astype(np.int16), b.astype(np.int16)
    a_background = np.median(np.concatenate([a16[:, 0], a16[:, -1]], axis=1), axis=1)[:, None, None]
    b_background = np.median(np.concatenate([b16[:, 0], b16[:, -1]], axis=1), axis=1)[:, None, None]
    a_structure = np.abs(a16 - a_background) > threshold
    size = a.shape[1]
    # Shifted views of b come from one padded copy (padding = replicated border: the background).
    padded = np.pad(b16, ((0, 0), (radius, radius), (radius, radius)), mode="edge")
    best = np.ones(len(a))
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            shifted = padded[:, dy : dy + size, dx : dx + size]
            structure = a_structure | (np.abs(shifted - b_background) > threshold)
            changed = ((np.abs(a16 - shifted) > threshold) & structure).sum(axis=(1, 2))
            total = structure.sum(axis=(1, 2))
            # Two flat images have nothing to compare (the blank check reports them): never near duplicates.
            best = np.minimum(best, np.where(total > 0, changed / np.maximum(total, 1), 1.0))
    return best
