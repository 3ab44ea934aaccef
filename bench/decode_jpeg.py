"""JPEG decode for photos, per core: crop-then-resize with draft (reduced DCT scale) decoding, as
the training stream does it (`data.crop: random_crop`), against a plain full-resolution PIL decode
+ resize of the same files; also crop-then-resize without draft, to separate the two effects, and
the worker-side decode of `data.decode: device` on the CPU device (header stage + torchvision's
libjpeg-turbo decode_jpeg in batches of 64 + crop and resize on tensors; nvJPEG on a GPU).
Synthetic ImageNet-like JPEGs (bench/synthetic_imagenet.py), generated at run time, held in memory;
one process, one thread. Target: >= 2x at 224 px.

    .venv/bin/python bench/decode_jpeg.py [--n 1000]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_imagenet import synthetic_jpeg  # noqa: E402

from rayssl.config import StorageConfig  # noqa: E402
from rayssl.data import decode  # noqa: E402
from rayssl.data.decode import ImageSpec, decode_image  # noqa: E402
from rayssl.data.device_decode import DeviceDecoder  # noqa: E402
from rayssl.data.pipeline import ReadHeaders  # noqa: E402


def plain(data: bytes, size: int) -> np.ndarray:
    """What a loader without crop-aware decoding does: decode everything, then resize."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))


def device_path(files: list[bytes], spec: ImageSpec, run_dir: str, batch: int = 64) -> None:
    """`data.decode: device` on the CPU device: the header stage, then a worker's decode, per batch."""
    headers = ReadHeaders(spec, "train", run_dir, StorageConfig())
    decoder = DeviceDecoder(spec, None, "train", run_dir, StorageConfig())
    for first in range(0, len(files), batch):
        chunk = files[first : first + batch]
        rows = pa.table({"sample_id": [str(i) for i in range(len(chunk))], "index": np.arange(len(chunk)), "image": chunk, "label": [None] * len(chunk)},
                        schema=pa.schema([("sample_id", pa.string()), ("index", pa.int64()), ("image", pa.binary()), ("label", pa.int64())]))
        decoder(headers(rows), torch.device("cpu"))


def rate(fn, files: list[bytes]) -> float:
    fn(files[0])  # warm-up
    start = time.perf_counter()
    for data in files:
        fn(data)
    return len(files) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    files = [synthetic_jpeg(rng) for _ in range(args.n)]
    print(f"{len(files)} synthetic JPEGs, mean {np.mean([len(f) for f in files]) / 1e3:.0f} KB; images/s on one core")
    print("| output | crop | plain decode + resize | crop-then-resize, full decode | crop-then-resize + draft | draft / plain "
          "| device path on the CPU | device / plain |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    run_dir = tempfile.mkdtemp(prefix="decode_jpeg_")  # where a quarantine would go: none expected
    draft = decode._draft
    for size in (224, 128, 64):
        for crop in ("random_crop", "center_crop"):
            spec = ImageSpec(size, 3, crop)
            torch.manual_seed(0)
            with_draft = rate(lambda d: decode_image(d, spec), files)
            decode._draft = lambda img, box, spec, channels: box  # the same path with draft disabled
            try:
                torch.manual_seed(0)
                no_draft = rate(lambda d: decode_image(d, spec), files)
            finally:
                decode._draft = draft
            baseline = rate(lambda d: plain(d, size), files)
            torch.manual_seed(0)
            start = time.perf_counter()
            device_path(files, spec, run_dir)
            on_device = len(files) / (time.perf_counter() - start)
            print(f"| {size} px | {crop} | {baseline:.0f} | {no_draft:.0f} | {with_draft:.0f} | {with_draft / baseline:.2f}x "
                  f"| {on_device:.0f} | {on_device / baseline:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
