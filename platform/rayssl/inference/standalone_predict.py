"""Predict classes of image files with an exported RaySSL classifier, in plain PyTorch.

    python predict.py IMAGE [IMAGE ...] [--out predictions.csv] [--model-dir DIR] [--batch-size 64]

Needs only torch, numpy and Pillow: rayssl is not imported (`rayssl export` copies this file next
to model.pt2 and preprocess.json). Writes CSV rows `path,class,confidence` (stdout by default).
An image that cannot be decoded is reported on stderr and skipped; the others are still predicted.

Decoding reproduces rayssl.data.decode (what the model saw in evaluation), as preprocess.json
describes it: PIL decode (JPEGs at a reduced DCT scale where the output still gets `image_size`
pixels per side), 16-bit greys rescaled by //257, conversion to L or RGB, then either the whole
image resized to a square (crop "resize", PIL bilinear) or the central square of
`center_fraction` of the shorter side resized with antialiased bilinear filtering ("center_crop");
then x / 127.5 - 1 as float32 NCHW.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

MAX_PIXELS = 64_000_000  # rayssl.data.decode.MAX_PIXELS: larger images are refused, not decoded
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I")  # 16/32-bit greys: rescaled from 0..65535, not clipped at 255
MODES = {1: "L", 3: "RGB"}


def crop_box(width: int, height: int, pre: dict) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) in pixels of the region that becomes the model's input."""
    if pre["decode"]["crop"] == "resize":
        return (0.0, 0.0, float(width), float(height))
    side = pre["decode"]["center_fraction"] * min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def draft(img: Image.Image, box: tuple[float, float, float, float], size: int, channels: int) -> tuple[float, float, float, float]:
    """Ask a JPEG for the largest DCT reduction (8, 4, 2, 1) that keeps `size` pixels across the box;
    returns the box in pixels of the reduced image."""
    need = max(size / max(box[2] - box[0], 1e-6), size / max(box[3] - box[1], 1e-6))
    factor = next(f for f in (8, 4, 2, 1) if need * f <= 1 or f == 1)
    if img.format != "JPEG" or factor == 1:
        return box
    width, height = img.size
    img.draft(MODES[channels] if img.mode in ("RGB", "L") else img.mode, (width // factor, height // factor))
    fx, fy = img.size[0] / width, img.size[1] / height
    return (min(box[0] * fx, img.size[0]), min(box[1] * fy, img.size[1]), min(box[2] * fx, img.size[0]), min(box[3] * fy, img.size[1]))


def decode(path: str, pre: dict) -> np.ndarray:
    """One image file -> uint8 [size, size, channels], as rayssl.data.decode.decode_image makes it."""
    size, channels = pre["input"]["image_size"], pre["input"]["channels"]
    with Image.open(path) as img:
        if img.width * img.height > MAX_PIXELS:
            raise ValueError(f"image declares {img.width}x{img.height} px, over the {MAX_PIXELS:,} px decode limit")
        box = crop_box(img.width, img.height, pre)
        if img.width and img.height:
            box = draft(img, box, size, channels)
        img.load()
        if img.width == 0 or img.height == 0:
            raise ValueError(f"zero-sized image {img.width}x{img.height}")
        source: Image.Image = img
        if img.mode in WIDE_MODES:
            source = Image.fromarray((np.clip(np.asarray(img, dtype=np.int64), 0, 65535) // 257).astype(np.uint8))
        converted = source if source.mode == MODES[channels] else source.convert(MODES[channels])
        converted.load()
    if pre["decode"]["crop"] == "resize":
        if converted.size != (size, size) or box != (0.0, 0.0, *map(float, converted.size)):
            converted = converted.resize((size, size), Image.Resampling.BILINEAR, box=box)
        return np.asarray(converted, dtype=np.uint8).reshape(size, size, channels)
    pixels = torch.from_numpy(np.array(converted, dtype=np.uint8).reshape(converted.height, converted.width, channels)).permute(2, 0, 1)
    left, top, right, bottom = (int(round(float(v))) for v in box)
    crop = pixels[:, top : top + max(1, bottom - top), left : left + max(1, right - left)]
    return resize_uint8(crop, size).permute(1, 2, 0).numpy()


def resize_uint8(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [C, H, W] -> uint8 [C, size, size], antialiased bilinear, as torchvision's resize does it:
    torch's native uint8 kernel where the CPU has one (AVX2/AVX512, ARM), else float and round."""
    if tuple(image.shape[-2:]) == (size, size):
        return image
    native = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or platform.machine() in ("aarch64", "arm64")
    x = image[None] if native else image[None].float()
    out = torch.nn.functional.interpolate(x, size=[size, size], mode="bilinear", align_corners=False, antialias=True)[0]
    return out if native else out.round_().to(torch.uint8)


def normalise(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, C] -> float32 [B, C, H, W] in [-1, 1]: x / 127.5 - 1."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def predict(paths: list[str], model_dir: Path, batch_size: int) -> tuple[list[tuple[str, str, float]], list[tuple[str, str]]]:
    """([(path, class name, softmax confidence)], [(path, why it failed)]) for the given image files."""
    pre = json.loads((model_dir / "preprocess.json").read_text())
    model = torch.export.load(str(model_dir / "model.pt2")).module()
    classes = pre["classes"]
    rows, failed = [], []
    for start in range(0, len(paths), batch_size):
        good, pixels = [], []
        for path in paths[start : start + batch_size]:
            try:
                pixels.append(decode(path, pre))
                good.append(path)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                failed.append((path, f"{type(exc).__name__}: {exc}"))
        if not good:
            continue
        with torch.inference_mode():
            probs = torch.softmax(model(normalise(np.stack(pixels))), dim=1)
        confidence, index = probs.max(dim=1)
        rows += [(p, classes[int(i)], float(c)) for p, i, c in zip(good, index, confidence)]
    return rows, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, anything Pillow reads)")
    parser.add_argument("--out", help="CSV file to write (default: stdout)")
    parser.add_argument("--model-dir", default=str(Path(__file__).resolve().parent), help="folder with model.pt2 and preprocess.json")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    rows, failed = predict(args.images, Path(args.model_dir), args.batch_size)
    out = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        writer = csv.writer(out)
        writer.writerow(["path", "class", "confidence"])
        writer.writerows((p, c, f"{conf:.9g}") for p, c, conf in rows)  # 9 digits: a float32 read back exactly
    finally:
        if args.out:
            out.close()
    for path, why in failed:
        print(f"predict.py: skipped {path}: {why}", file=sys.stderr)
    return 2 if failed and not rows else 0


if __name__ == "__main__":
    sys.exit(main())
