"""Tiny, generated image datasets for tests (tests never read ../shared/data)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rayssl.config import PretrainConfig, StorageConfig, load_config
from rayssl.data import storage
from rayssl.train import ledger

# The S3 secret the integration tests run under (moto accepts any): it must never appear in a
# run's files, the console or Ray's logs.
SECRET_SENTINEL = "rayssl-sentinel-secret-6f1d2c"


def encoded(array: np.ndarray, format: str, **options) -> bytes:
    """A uint8 [H, W] or [H, W, C] array as the bytes of an image file (PIL's `format`)."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=format, **options)
    return buf.getvalue()


def png_bytes(array: np.ndarray) -> bytes:
    return encoded(array, "PNG")


def jpeg_bytes(array: np.ndarray, quality: int = 90) -> bytes:
    return encoded(array, "JPEG", quality=quality)


def strokes(seed: int, size: int = 28) -> np.ndarray:
    """A digit-like uint8 [size, size] image: three random thick strokes on black (distinct per seed)."""
    rng = np.random.default_rng(seed)
    img = Image.new("L", (size, size))
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        draw.line([tuple(int(v) for v in rng.integers(5, size - 5, 2)) for _ in range(2)], fill=255, width=3)
    return np.asarray(img)


def make_image_folder(root: Path, per_class: int = 24, size: int = 8, classes: int = 2, seed: int = 0) -> Path:
    """root/train/<class>/*.png and root/test/<class>/*.png: bright-left vs bright-right blobs."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("test", max(per_class // 3, 2))):
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 60, (size, size), dtype=np.uint8)
                cols = slice(0, size // 2) if c % 2 == 0 else slice(size // 2, size)
                img[:, cols] += 150
                (d / f"img{i:03d}.png").write_bytes(png_bytes(img))
    return root


def tiny_config(shards: str, storage_path: str, name: str, *overrides: str) -> PretrainConfig:
    """A NAT config small enough for a 2-core test: 8x8 images, batch 8, 2 epochs, 2 workers."""
    return load_config(
        PretrainConfig,
        None,
        [
            f"run.name={name}",
            f"run.storage_path={storage_path}",
            f"data.shards={shards}",
            "data.image_size=8",
            "data.batch_size=8",
            "model.width=8",
            "model.embed_dim=16",
            "nat.target_dim=8",
            "nat.reassign_every=1",
            "train.epochs=2",
            "train.log_every=1",
            "eval.knn_k=3",
            *overrides,
        ],
    )


def tensorboard_events(log_dir: Path | str) -> EventAccumulator:
    """The TensorBoard event files in log_dir, read with TensorBoard's own reader."""
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return events


def tensorboard_scalars(log_dir: Path | str) -> dict[str, list[int]]:
    """{scalar tag: [global steps]} of the TensorBoard event files in log_dir."""
    events = tensorboard_events(log_dir)
    return {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def assert_table_is_bijection(checkpoint_uri: str, storage_cfg: StorageConfig = StorageConfig(), images: int = 48) -> torch.Tensor:
    """The NAT assignment table in a checkpoint maps the `images` train samples one-to-one onto targets."""
    table = torch.load(io.BytesIO(storage.read_bytes(storage.join(checkpoint_uri, "method.pt"), storage_cfg)), weights_only=True)["table"]
    assert torch.equal(torch.sort(table).values, torch.arange(images))
    return table


def committed_ledger(checkpoint_uri: str, storage_cfg: StorageConfig = StorageConfig()) -> list[dict]:
    """The per-epoch exactly-once ledger a checkpoint committed (rayssl.train.ledger)."""
    return json.loads(storage.read_bytes(storage.join(checkpoint_uri, "meta.json"), storage_cfg))["ledger"]


def assert_every_sample_once_per_epoch(
    checkpoint_uri: str, epochs: int, storage_cfg: StorageConfig = StorageConfig(), images: int = 48
) -> None:
    """The committed model saw each of the `images` train samples exactly once in each of `epochs` epochs."""
    rows = ledger.audit(committed_ledger(checkpoint_uri, storage_cfg), images)
    assert [r["epoch"] for r in rows] == list(range(epochs)) and all(r["exactly_once"] for r in rows), rows


def inject_faults(monkeypatch, **plan) -> None:
    """Fault drills for the runs this test starts from its own process (rayssl.train.faults: RAYSSL_FAULTS)."""
    monkeypatch.setenv("RAYSSL_FAULTS", json.dumps(plan))
