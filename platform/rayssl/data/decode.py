"""Pure decoding: encoded bytes -> uint8 [H, W, C]. Failures become quarantine records, never exceptions.

One undecodable image must not take down a Ray Data block (or the job), so `decode_batch`
returns the good images plus a record per bad one instead of raising.

Photos (the crop modes) take a fast path: JPEGs are decoded by libjpeg-turbo through simplejpeg,
at a reduced DCT scale where the crop box allows, and resized with torchvision's uint8 kernel.
Everything else, and any JPEG that path declines, goes through PIL, which has the last word on
whether an image is broken.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import simplejpeg
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from rayssl.config import DataConfig

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


Box = tuple[float, float, float, float]  # left, top, right, bottom in pixels of the decoded image


@dataclass(frozen=True)
class ImageSpec:
    """What the decoder returns: size x size x channels, and how an image of another shape gets there.

    crop:
      resize       the whole image, squashed to a square if it is not one (MNIST, CIFAR, digits);
      random_crop  a RandomResizedCrop box (area fraction in `crop_scale`, aspect 3/4..4/3) drawn
                   on the original size, then resized: the standard training recipe for photos;
      center_crop  the central square of `center_fraction` of the shorter side, then resized
                   (evaluation: resize to size / 0.875, centre crop size).
    The aspect ratio of the content is kept in both crop modes. JPEGs are decoded at a reduced DCT
    scale (1/2, 1/4, 1/8) whenever the box still has at least `size` pixels per side after it. The
    crop modes decode JPEGs with simplejpeg and resize with torchvision's uint8 kernel
    (crop_and_resize); `resize` keeps PIL for both.
    """

    size: int  # output height = width
    channels: int  # 1 or 3
    crop: Literal["resize", "random_crop", "center_crop"] = "resize"
    crop_scale: tuple[float, float] = (0.08, 1.0)
    center_fraction: float = 0.875

    def __post_init__(self) -> None:
        if self.channels not in _MODES:
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.size < 1:
            raise ValueError(f"image size must be positive, got {self.size}")


def image_spec(data: DataConfig, train: bool) -> ImageSpec:
    """The decode of a data config: for `crop: random_crop`, a random box for training streams and
    a centre crop for everything else (evaluation, labelled and validation sets)."""
    if data.crop == "resize":
        return ImageSpec(data.image_size, data.channels)
    if train:
        return ImageSpec(data.image_size, data.channels, "random_crop", (data.augment.crop_scale_min, 1.0))
    return ImageSpec(data.image_size, data.channels, "center_crop")


@dataclass(frozen=True)
class QuarantineRecord:
    sample_id: str
    index: int
    reason: str


class DecodeError(ValueError):
    pass


def crop_box(img: Image.Image, spec: ImageSpec) -> Box:
    """The region of `img` (opened, its pixels not necessarily decoded) that becomes the output (see ImageSpec.crop)."""
    return crop_box_of_size(img.width, img.height, spec)


def crop_box_of_size(width: int, height: int, spec: ImageSpec) -> Box:
    """The region of a width x height image that becomes the output (see ImageSpec.crop)."""
    if spec.crop == "resize":
        return (0.0, 0.0, float(width), float(height))
    if spec.crop == "center_crop":
        side = spec.center_fraction * min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        return (left, top, left + side, top + side)
    # torchvision's sampler (torch's RNG) on the original size. It reads only the size of what it is
    # given: a zero-stride [1, height, width] view, no pixels allocated.
    shape_only = torch.empty(1, 1, 1, dtype=torch.uint8).expand(1, height, width)
    top, left, h, w = RandomResizedCrop.get_params(shape_only, list(spec.crop_scale), [3 / 4, 4 / 3])
    return (float(left), float(top), float(left + w), float(top + h))


def decode_image(data: bytes | None, spec: ImageSpec) -> np.ndarray:
    """Decode one image to uint8 [spec.size, spec.size, spec.channels].

    The region `spec.crop` picks is resized (antialiased bilinear) to size x size in one step, other
    channel layouts are converted (RGBA/CMYK/P -> RGB, RGB -> L, ...). Raises DecodeError with a
    short reason when the bytes are not a usable image.
    """
    if spec.crop != "resize":
        fast = _decode_jpeg_fast(data, spec)
        if fast is not None:
            pixels, box = fast
        else:
            converted, box = _decode(data, spec.channels, spec)
            # np.array, not asarray: PIL's array is read-only, which torch warns about (the copy costs ~0.05 ms).
            pixels = np.array(converted, dtype=np.uint8).reshape(converted.height, converted.width, spec.channels)
        # torchvision's uint8 antialiased bilinear kernel costs a quarter of PIL's resize of the same
        # box (about 0.6 ms against 2.4 ms for a 500 x 400 px photo to 224 px, one core), which
        # would otherwise cost as much as the decode itself; the device path resizes with it too.
        return crop_and_resize(torch.from_numpy(pixels).permute(2, 0, 1), box, spec.size).permute(1, 2, 0).numpy()
    # Small whole images (MNIST, CIFAR, digits) keep PIL's resize: their pixels stay those of every
    # committed result, and most are already size x size.
    converted, box = _decode(data, spec.channels, spec)
    if converted.size != (spec.size, spec.size) or box != (0.0, 0.0, *map(float, converted.size)):
        converted = converted.resize((spec.size, spec.size), Image.Resampling.BILINEAR, box=box)
    return np.asarray(converted, dtype=np.uint8).reshape(spec.size, spec.size, spec.channels)


def _decode_jpeg_fast(data: bytes | None, spec: ImageSpec) -> tuple[np.ndarray, Box] | None:
    """(uint8 [H, W, channels] decoded at the largest DCT reduction the crop box allows, the box in
    its pixels) for a JPEG that libjpeg-turbo decodes to RGB or grey; None for anything else
    (not a JPEG, CMYK, too large, or bytes it calls broken), which the PIL path then decodes or
    rejects with its reason. simplejpeg, not PIL: the same libjpeg-turbo without PIL's image
    object and copies (~1.6 ms against ~2.2 ms per 500 x 400 px photo, one core)."""
    if not data or data[:2] != b"\xff\xd8":  # the JPEG start-of-image marker
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in ("Gray", "YCbCr", "RGB") or not 0 < width * height <= MAX_PIXELS:
        return None
    box = crop_box_of_size(width, height, spec)
    factor = _dct_factor(box, spec)
    try:
        # The smallest output of at least ceil(side / factor) pixels is exactly 1/factor: libjpeg-turbo's
        # other scales (7/8, 3/4, ...) are not SIMD-accelerated and decode slower than the full size.
        pixels = simplejpeg.decode_jpeg(
            data, "GRAY" if spec.channels == 1 else "RGB", min_height=-(-height // factor), min_width=-(-width // factor)
        )
    except ValueError:
        return None
    return pixels.reshape(pixels.shape[0], pixels.shape[1], spec.channels), _scaled_box(
        box, (width, height), (pixels.shape[1], pixels.shape[0])
    )


def crop_and_resize(image: torch.Tensor, box: Box | np.ndarray, size: int) -> torch.Tensor:
    """uint8 [C, H, W] (any strides) -> uint8 [C, size, size]: the box (left, top, right, bottom, in
    pixels of `image`, rounded to whole pixels) resized with antialiased bilinear filtering, which
    matches PIL's BILINEAR resize within a grey level or two."""
    left, top, right, bottom = (int(round(float(v))) for v in box)
    height, width = max(1, bottom - top), max(1, right - left)
    return TF.resized_crop(image, top, left, height, width, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)


def decode_pixels(data: bytes | None, channels: int | None = None) -> tuple[np.ndarray, str]:
    """Decode one image at its own size: (uint8 [H, W, C], the file's PIL mode).

    C is `channels`, or by default the file's own: 1 for grey modes, else 3 (palettes, CMYK,
    alpha become RGB). The same checks and conversions as `decode_image`; raises DecodeError likewise.
    """
    converted, _ = _decode(data, channels)
    return np.asarray(converted, dtype=np.uint8).reshape(converted.height, converted.width, -1), converted.info["source_mode"]


def _dct_factor(box: Box, spec: ImageSpec) -> int:
    """The largest JPEG DCT reduction (1, 2, 4 or 8) that keeps `spec.size` pixels across the box."""
    need = max(spec.size / max(box[2] - box[0], 1e-6), spec.size / max(box[3] - box[1], 1e-6))
    return next(factor for factor in (8, 4, 2, 1) if need * factor <= 1 or factor == 1)


def _scaled_box(box: Box, size: tuple[int, int], scaled: tuple[int, int]) -> Box:
    """`box` in pixels of the image decoded at `scaled` (width, height) instead of `size`. The scaled
    size is rounded up per axis (333 px at 1/2 -> 167): each axis is scaled on its own, within the image."""
    fx, fy = scaled[0] / size[0], scaled[1] / size[1]
    return (min(box[0] * fx, scaled[0]), min(box[1] * fy, scaled[1]), min(box[2] * fx, scaled[0]), min(box[3] * fy, scaled[1]))


def _draft(img: Image.Image, box: Box, spec: ImageSpec, channels: int) -> Box:
    """Ask a JPEG opened by PIL for the DCT scale of `_dct_factor`; returns the box in the pixels
    of the scaled image. Other formats (and no-gain cases) are unchanged."""
    factor = _dct_factor(box, spec)
    if img.format != "JPEG" or factor == 1:
        return box
    width, height = img.size
    mode = _MODES[channels] if img.mode in ("RGB", "L") else img.mode  # "L" from a colour JPEG skips chroma
    # PIL picks the largest scale s in (8, 4, 2, 1) with size // requested >= s: floor division
    # asks for exactly `factor` (ceil would ask a 333-px side for 167 px, and 333 // 167 is 1).
    img.draft(mode, (width // factor, height // factor))
    return _scaled_box(box, (width, height), img.size)


@contextlib.contextmanager
def _opened(data: bytes | None) -> Iterator[Image.Image]:
    """The image with only its header read, its declared size checked against MAX_PIXELS; whatever
    PIL raises inside the block (here or on a later load) becomes a DecodeError with a short reason."""
    if not data:
        raise DecodeError("empty image bytes")
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            if img.width * img.height > MAX_PIXELS:
                raise DecodeError(f"image declares {img.width}x{img.height} px, over the {MAX_PIXELS:,} px decode limit")
            yield img
    except DecodeError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"{type(exc).__name__}: {exc}") from None


def _decode(data: bytes | None, channels: int | None, spec: ImageSpec | None = None) -> tuple[Image.Image, Box]:
    """(fully decoded image converted to `channels` (1: "L", 3: "RGB", None: as the file's mode is
    grey or not), the box of it to keep); info["source_mode"] holds the file's mode. With `spec`,
    the box is chosen on the header's size and JPEGs are decoded at a reduced scale if it allows."""
    if channels not in (None, *_MODES):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    with _opened(data) as img:
        box: Box = (0.0, 0.0, float(img.width), float(img.height))
        if spec is not None and img.width and img.height:
            box = _draft(img, crop_box(img, spec), spec, spec.channels)
        img.load()  # force the full decode: truncated files fail here, not later
        if img.width == 0 or img.height == 0:
            raise DecodeError(f"zero-sized image {img.width}x{img.height}")
        source = img
        if img.mode in _WIDE_MODES:
            source = Image.fromarray((np.clip(np.asarray(img, dtype=np.int64), 0, 65535) // 257).astype(np.uint8))
        mode = _MODES[channels or (1 if img.mode in GREY_MODES else 3)]
        converted = source if source.mode == mode else source.convert(mode)  # convert() to the same mode copies
        converted.load()
        converted.info["source_mode"] = img.mode
    return converted, box


def read_header(data: bytes | None, spec: ImageSpec) -> tuple[Box, bool]:
    """(the crop box of the original image that becomes the output, whether the file is a JPEG),
    from the header alone: the CPU half of decoding on the device (rayssl.data.device_decode).
    The same size checks as `decode_image`; raises DecodeError likewise. A file whose pixels are
    broken passes here and is caught where it is decoded."""
    with _opened(data) as img:
        if img.width == 0 or img.height == 0:
            raise DecodeError(f"zero-sized image {img.width}x{img.height}")
        return crop_box(img, spec), img.format == "JPEG"


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
