"""JPEG decode for photos, per core: crop-then-resize with draft (reduced DCT scale) decoding, as
the training stream does it (`data.crop: random_crop`), against a plain full-resolution PIL decode
+ resize of the same files. Side columns separate the effects: the same path with PIL as the JPEG
decoder (its fallback for what simplejpeg declines), the same path without DCT scaling, and the
worker-side decode of `data.decode: device` on the CPU device (header stage + torchvision's
libjpeg-turbo decode_jpeg in batches of 64 + crop and resize on tensors; nvJPEG on a GPU).
Synthetic ImageNet-like JPEGs (bench/synthetic_imagenet.py), generated at run time, held in memory;
one process, one thread. Target: >= 2x at 224 px.

Two more columns decode only the crop box through libjpeg-turbo's TurboJPEG 3 API (bench/turbojpeg_crop.py):
PyTurboJPEG's lossless crop then scaled decode, and a decode-time cropping region
(tj3SetCroppingRegion). They need PyTurboJPEG (the `bench` extra) and libturbojpeg >= 3.0, which
the project's set-up does not install: without them the table says "unavailable: <reason>".

    .venv/bin/python bench/decode_jpeg.py [--n 500] [--rounds 5] [--sizes 224 128 64] [--turbojpeg-lib PATH]
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
from turbojpeg_crop import TurboCrop, open_turbojpeg  # noqa: E402


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


def measure(files: list[bytes], spec: ImageSpec, rounds: int, run_dir: str, turbo: TurboCrop | str) -> dict[str, str]:
    """The table's cells for one spec: images/s per column (medians of `rounds` interleaved passes)
    and each path's ratio to plain (the median of the per-pass ratios)."""
    size = spec.size
    passes: dict[str, Callable[[list[bytes]], None]] = {
        "plain": each(lambda d: plain(d, size)),
        "ours": each(lambda d: decode_image(d, spec)),
        "device": lambda f: device_path(f, spec, run_dir),
    }
    if isinstance(turbo, TurboCrop):
        passes["lossless"] = each(lambda d: turbo.lossless_crop(d, spec))
        passes["region"] = each(lambda d: turbo.region_decode(d, spec))
    columns: dict[str, list[float]] = {name: [] for name in ("plain", "pil", "full", *passes)}
    for _ in range(rounds):  # interleaved, so a slow spell of the machine hits every column alike
        with replaced("_decode_jpeg_fast", lambda data, spec: None):
            columns["pil"].append(timed(passes["ours"], files))
        with replaced("_dct_factor", lambda box, spec: 1):
            columns["full"].append(timed(passes["ours"], files))
        for name, run in passes.items():
            columns[name].append(timed(run, files))
    plain_rate = np.array(columns["plain"])
    cells = {name: f"{np.median(values):.0f}" for name, values in columns.items()}
    for name in passes.keys() - {"plain"}:
        cells[name + "/plain"] = f"{np.median(np.array(columns[name]) / plain_rate):.2f}x"
    if not isinstance(turbo, TurboCrop):
        cells["lossless"] = cells["region"] = cells["lossless/plain"] = cells["region/plain"] = "unavailable"  # why: above the table
    return cells


def turbo_difference(files: list[bytes], spec: ImageSpec, turbo: TurboCrop) -> str:
    """The largest mean |difference| (grey levels) of either turbojpeg path's output from ours, same boxes."""
    worst = 0.0
    for data in files:
        outputs = []
        for decoder in (decode_image, turbo.lossless_crop, turbo.region_decode):
            torch.manual_seed(len(data))  # the same random box for the three decodes
            outputs.append(decoder(data, spec).astype(np.int16))
        worst = max(worst, *(float(np.abs(o - outputs[0]).mean()) for o in outputs[1:]))
    return f"{worst:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5, help="passes per column, interleaved; medians reported")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 128, 64])
    parser.add_argument("--turbojpeg-lib", default=None, help="libturbojpeg >= 3.0 for the turbojpeg columns (default: searched)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    files = [synthetic_jpeg(rng) for _ in range(args.n)]
    turbo = open_turbojpeg(args.turbojpeg_lib)
    print(
        f"{len(files)} synthetic JPEGs, mean {np.mean([len(f) for f in files]) / 1e3:.0f} KB; images/s on one core, "
        f"median of {args.rounds} interleaved passes (ratios: median of the per-pass ratios); turbojpeg: "
        + ((args.turbojpeg_lib or "found on the loader's path") if isinstance(turbo, TurboCrop) else turbo)
    )
    print(
        "| output | crop | plain decode + resize | ours, PIL decoder | ours, no DCT scaling | ours | ours / plain "
        "| device path on the CPU | device / plain | turbojpeg lossless crop + scaled decode | lossless / plain "
        "| turbojpeg region decode | region / plain | turbojpeg vs ours, mean abs diff |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    run_dir = tempfile.mkdtemp(prefix="decode_jpeg_")  # where a quarantine would go: none expected
    for size in args.sizes:
        for crop in ("random_crop", "center_crop"):
            spec = ImageSpec(size, 3, crop)
            cells = measure(files, spec, args.rounds, run_dir, turbo)
            diff = turbo_difference(files[:50], spec, turbo) if isinstance(turbo, TurboCrop) else "-"
            print(
                f"| {size} px | {crop} | {cells['plain']} | {cells['pil']} | {cells['full']} | {cells['ours']} "
                f"| {cells['ours/plain']} | {cells['device']} | {cells['device/plain']} | {cells['lossless']} "
                f"| {cells['lossless/plain']} | {cells['region']} | {cells['region/plain']} | {diff} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
