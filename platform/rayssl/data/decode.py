"""Pure decoding: encoded bytes -> uint8 [H, W, C]. Failures become quarantine records, never exceptions.

One undecodable image must not take down a Ray Data block (or the job), so `decode_batch`
returns the good images plus a record per bad one instead of raising.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

_MODES = {1: "L", 3: "RGB"}
# 16/32-bit integer modes (16-bit PNG, TIFF): PIL's convert("L") clips them at 255, so they are
# rescaled from the 16-bit range instead.
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I")
# Modes that hold one grey channel (decode_pixels keeps them grey by default).
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")
# The largest image decoded, from its header, before any pixel is allocated: a 50,000 x 50,000 px
# "decompression bomb" is quarantined, and one decode holds at most ~3 x 64 MB. Full-size photos
# (ImageNet: ~0.2 MP; a 50 MP camera) pass.
MAX_PIXELS = 64_000_000


@dataclass(frozen=True)
class ImageSpec:
    size: int  # output height = width
    channels: int  # 1 or 3

    def __post_init__(self) -> None:
        if self.channels not in _MODES:
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.size < 1:
            raise ValueError(f"image size must be positive, got {self.size}")


@dataclass(frozen=True)
class QuarantineRecord:
    sample_id: str
    index: int
    reason: str


class DecodeError(ValueError):
    pass


def decode_image(data: bytes | None, spec: ImageSpec) -> np.ndarray:
    """Decode one image to uint8 [spec.size, spec.size, spec.channels].

    Other sizes are resized (bilinear) and other channel layouts converted (RGBA/CMYK/P -> RGB,
    RGB -> L, ...). Raises DecodeError with a short reason when the bytes are not a usable image.
    """
    converted = _decode(data, spec.channels)
    if converted.size != (spec.size, spec.size):
        converted = converted.resize((spec.size, spec.size), Image.Resampling.BILINEAR)
    return np.asarray(converted, dtype=np.uint8).reshape(spec.size, spec.size, spec.channels)


def decode_pixels(data: bytes | None, channels: int | None = None) -> tuple[np.ndarray, str]:
    """Decode one image at its own size: (uint8 [H, W, C], the file's PIL mode).

    C is `channels`, or by default the file's own: 1 for grey modes, else 3 (palettes, CMYK,
    alpha become RGB). The same checks and conversions as `decode_image`; raises DecodeError likewise.
    """
    converted = _decode(data, channels)
    return np.asarray(converted, dtype=np.uint8).reshape(converted.height, converted.width, -1), converted.info["source_mode"]


def _decode(data: bytes | None, channels: int | None) -> Image.Image:
    """Fully decoded image converted to `channels` (1: "L", 3: "RGB", None: as the file's mode is
    grey or not); info["source_mode"] holds the file's mode."""
    if channels not in (None, *_MODES):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not data:
        raise DecodeError("empty image bytes")
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            if img.width * img.height > MAX_PIXELS:
                raise DecodeError(f"image declares {img.width}x{img.height} px, over the {MAX_PIXELS:,} px decode limit")
            img.load()  # force the full decode: truncated files fail here, not later
            if img.width == 0 or img.height == 0:
                raise DecodeError(f"zero-sized image {img.width}x{img.height}")
            source = img
            if img.mode in _WIDE_MODES:
                source = Image.fromarray((np.clip(np.asarray(img, dtype=np.int64), 0, 65535) // 257).astype(np.uint8))
            converted = source.convert(_MODES[channels or (1 if img.mode in GREY_MODES else 3)])
            converted.load()
            converted.info["source_mode"] = img.mode
    except DecodeError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"{type(exc).__name__}: {exc}") from None
    return converted


def decode_batch(
    sample_ids: list[str], indices: np.ndarray, images: list[bytes | None], spec: ImageSpec
) -> tuple[np.ndarray, np.ndarray, list[QuarantineRecord]]:
    """Decode a batch of N images.

    Returns (ok [N] bool, decoded uint8 [N_ok, H, W, C], quarantine records for the others).
    """
    ok = np.zeros(len(images), dtype=bool)
    decoded, bad = [], []
    for i, data in enumerate(images):
        try:
            decoded.append(decode_image(data, spec))
            ok[i] = True
        except DecodeError as exc:
            bad.append(QuarantineRecord(str(sample_ids[i]), int(indices[i]), str(exc)))
    shape = (0, spec.size, spec.size, spec.channels)
    return ok, (np.stack(decoded) if decoded else np.zeros(shape, np.uint8)), bad
