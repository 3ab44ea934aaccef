"""JPEG decode for photos, per core: crop-then-resize with draft (reduced DCT scale) decoding, as
the training stream does it (`data.crop: random_crop`), against a plain full-resolution PIL decode
+ resize of the same files. Side columns separate the effects: the same path with PIL as the JPEG
decoder (its fallback for what simplejpeg declines), the same path without DCT scaling, and the
worker-side decode of `data.decode: device` on the CPU device (header stage + torchvision's
libjpeg-turbo decode_jpeg in batches of 64 + crop and resize on tensors; nvJPEG on a GPU).
Synthetic ImageNet-like JPEGs (bench/synthetic_imagenet.py), generated at run time, held in memory;
one process, one thread. Target: >= 2x at 224 px.

    .venv/bin/python bench/decode_jpeg.py [--n 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from rayssl.config import StorageConfig  # noqa: E402
from rayssl.data import decode  # noqa: E402
from rayssl.data.decode import ImageSpec, decode_image  # noqa: E402
from rayssl.data.device_decode import DeviceDecoder  # noqa: E402
from rayssl.data.pipeline import ReadHeaders  # noqa: E402
from synthetic_imagenet import synthetic_jpeg  # noqa: E402


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
        rows = pa.table(
            {
                "sample_id": [str(i) for i in range(len(chunk))],
                "index": np.arange(len(chunk)),
                "image": chunk,
                "label": [None] * len(chunk),
            },
            schema=pa.schema([("sample_id", pa.string()), ("index", pa.int64()), ("image", pa.binary()), ("label", pa.int64())]),
        )
        decoder(headers(rows), torch.device("cpu"))


def timed(fn: Callable[[list[bytes]], None], files: list[bytes]) -> float:
    """Images/s of one pass of `fn` over `files`, the torch seed reset so random boxes repeat."""
    torch.manual_seed(0)
    start = time.perf_counter()
    fn(files)
    return len(files) / (time.perf_counter() - start)


def each(decode_one: Callable[[bytes], object]) -> Callable[[list[bytes]], None]:
    """A pass that decodes the files one at a time."""

    def run(files: list[bytes]) -> None:
        for data in files:
            decode_one(data)

    return run


@contextlib.contextmanager
def replaced(hook: str, replacement: Callable) -> Iterator[None]:
    """rayssl.data.decode with one of its hooks replaced: one effect switched off."""
    original = getattr(decode, hook)
    setattr(decode, hook, replacement)
    try:
        yield
    finally:
        setattr(decode, hook, original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5, help="passes per column, interleaved; medians reported")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    files = [synthetic_jpeg(rng) for _ in range(args.n)]
    print(
        f"{len(files)} synthetic JPEGs, mean {np.mean([len(f) for f in files]) / 1e3:.0f} KB; images/s on one core, "
        f"median of {args.rounds} interleaved passes (ratios: median of the per-pass ratios)"
    )
    print(
        "| output | crop | plain decode + resize | ours, PIL decoder | ours, no DCT scaling | ours | ours / plain "
        "| device path on the CPU | device / plain |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    run_dir = tempfile.mkdtemp(prefix="decode_jpeg_")  # where a quarantine would go: none expected
    for size in (224, 128, 64):
        for crop in ("random_crop", "center_crop"):
            spec = ImageSpec(size, 3, crop)
            columns: dict[str, list[float]] = {"plain": [], "pil": [], "full": [], "ours": [], "device": []}
            for _ in range(args.rounds):  # interleaved, so a slow spell of the machine hits every column alike
                columns["plain"].append(timed(each(lambda d, size=size: plain(d, size)), files))
                with replaced("_decode_jpeg_fast", lambda data, spec: None):
                    columns["pil"].append(timed(each(lambda d, spec=spec: decode_image(d, spec)), files))
                with replaced("_dct_factor", lambda box, spec: 1):
                    columns["full"].append(timed(each(lambda d, spec=spec: decode_image(d, spec)), files))
                columns["ours"].append(timed(each(lambda d, spec=spec: decode_image(d, spec)), files))
                columns["device"].append(timed(lambda f, spec=spec: device_path(f, spec, run_dir), files))
            med = {name: float(np.median(values)) for name, values in columns.items()}
            ratio = {name: float(np.median(np.array(columns[name]) / np.array(columns["plain"]))) for name in ("ours", "device")}
            print(
                f"| {size} px | {crop} | {med['plain']:.0f} | {med['pil']:.0f} | {med['full']:.0f} | {med['ours']:.0f} "
                f"| {ratio['ours']:.2f}x | {med['device']:.0f} | {ratio['device']:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
