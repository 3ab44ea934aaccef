"""Raw datasets -> labelled samples with stable ids, ready to be written as shards.

A source yields `RawSample`s per split ("train", "test"). Images are kept encoded (PNG for array
datasets, the original bytes for image folders) so shards stay compact and decoding happens in
the Ray Data CPU stage.
"""

from __future__ import annotations

import gzip
import io
import lzma
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.model_selection import train_test_split

from rayssl.data.label_table import LabelTable, label_listing

SOURCES = ("digits", "mnist", "cifar10", "folder")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class SourceError(ValueError):
    """A raw dataset cannot be turned into shards; the message names the path and what is wrong."""


@dataclass(frozen=True)
class RawSample:
    sample_id: str  # stable and unique within the dataset, e.g. "train/000042" or "cat/img1.jpg"
    image: bytes  # encoded image (PNG/JPEG)
    label: int | None


@dataclass(frozen=True)
class SourceData:
    splits: dict[str, Iterator[RawSample]]  # lazily produced, one pass each
    classes: list[str] | None  # class names in label order, None for unlabelled sources


def load_source(
    kind: str, path: str | None = None, test_fraction: float = 0.2, seed: int = 0, labels: LabelTable | None = None
) -> SourceData:
    """Open a raw dataset. `test_fraction` is used only by sources without an official split.
    `labels`: a label table (rayssl.data.label_table) naming images of a folder source by path."""
    if labels is not None and kind != "folder":
        raise SourceError(
            f"--labels names images of a folder source by path; {kind!r} comes with its labels "
            "(a table can still add labels at fine-tune time: semisup.labels)"
        )
    if kind == "digits":
        return _digits(test_fraction, seed)
    if path is None:
        raise SourceError(f"source {kind!r} needs --path")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"source {kind!r}: {root} is not a directory")
    if kind == "mnist":
        return _mnist(root)
    if kind == "cifar10":
        return _cifar10(root)
    if kind == "folder":
        return _folder(root, test_fraction, seed, labels)
    raise SourceError(f"unknown source {kind!r}; choose one of {', '.join(SOURCES)}")


def encode_png(image: np.ndarray) -> bytes:
    """uint8 [H, W] or [H, W, C] -> PNG bytes (lossless)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _array_split(split: str, images: np.ndarray, labels: np.ndarray) -> Iterator[RawSample]:
    for i in range(len(images)):
        yield RawSample(f"{split}/{i:06d}", encode_png(images[i]), int(labels[i]))


def holdout(n: int, labels: np.ndarray | None, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified (when labelled) train/test indices."""
    idx = np.arange(n)
    if test_fraction <= 0:
        return idx, idx[:0]
    return train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=labels)


def _digits(test_fraction: float, seed: int) -> SourceData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 8x8 values in 0..16 -> 0..255 uint8 grey.
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    labels = digits.target.astype(np.int64)
    train, test = holdout(len(images), labels, test_fraction, seed)
    return SourceData(
        splits={"train": _array_split("train", images[train], labels[train]), "test": _array_split("test", images[test], labels[test])},
        classes=[str(c) for c in digits.target_names],
    )


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format), gzip or plain: big-endian magic, dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise SourceError(f"{path}: not a uint8 IDX file (magic {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise SourceError(f"{path}: truncated IDX file ({array.size} bytes for dims {dims})")
    return array.reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{root}: missing {stem}[.gz]")


def _mnist(root: Path) -> SourceData:
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
        labels = _read_idx(_find(root, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
        if len(images) != len(labels):
            raise SourceError(f"{root}: {split} has {len(images)} images but {len(labels)} labels (IDX counts disagree)")
        splits[split] = _array_split(split, images, labels)
    return SourceData(splits=splits, classes=[str(i) for i in range(10)])


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 binary batch: records of 1 label byte + 3072 bytes (R, G, B planes of 32x32)."""
    data = lzma.open(path).read() if path.suffix == ".xz" else path.read_bytes()
    if len(data) % 3073:
        raise SourceError(f"{path}: size {len(data)} is not a multiple of the 3073-byte record")
    records = np.frombuffer(data, np.uint8).reshape(-1, 3073)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), records[:, 0].astype(np.int64)


CIFAR10_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}


def cifar10_arrays(root: str | Path, split: str, batches: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's binary files (each optionally .xz) of one split -> (uint8 [N, 32, 32, 3], int64 labels [N]),
    in the shards' order; `batches` reads only the first files of 10,000 images each (benchmarks' small runs)."""
    parts = [_read_cifar_batch(_find_any(Path(root), name)) for name in CIFAR10_FILES[split][:batches]]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _cifar10(root: Path) -> SourceData:
    train, test = cifar10_arrays(root, "train"), cifar10_arrays(root, "test")
    names_file = root / "labels.txt"
    classes = names_file.read_text().split() if names_file.exists() else [str(i) for i in range(10)]
    return SourceData(splits={"train": _array_split("train", *train), "test": _array_split("test", *test)}, classes=classes)


def _find_any(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.xz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{root}: missing {name}[.xz]")


def _folder(root: Path, test_fraction: float, seed: int, table: LabelTable | None = None) -> SourceData:
    """A folder of images, optionally in class subfolders, optionally under train/ and test/, labelled
    by the class folders and the label table (keys: paths relative to root), before any hold-out."""
    split_roots = {s: root / s for s in ("train", "test") if (root / s).is_dir()}
    if not split_roots:
        split_roots = {"train": root}
    class_dirs = sorted({d.name for r in split_roots.values() for d in r.iterdir() if d.is_dir()})
    classes = class_dirs or None
    class_index = {name: i for i, name in enumerate(class_dirs)}

    def files(split_root: Path) -> list[tuple[Path, int | None]]:
        found = []
        for p in sorted(split_root.rglob("*")):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                rel = p.relative_to(split_root)
                label = class_index[rel.parts[0]] if classes and len(rel.parts) > 1 else None
                found.append((p, label))
        return found

    listed = {split: files(r) for split, r in split_roots.items()}
    _check_folder_listing(root, split_roots, listed, class_dirs)
    if table is not None:
        paths = {split: [(str(p.relative_to(root)), label) for p, label in entries] for split, entries in listed.items()}
        labels, classes = label_listing(table, paths, classes)
        listed = {split: [(p, label) for (p, _), label in zip(entries, labels[split])] for split, entries in listed.items()}
        class_dirs = classes or []
    if "test" not in listed and test_fraction > 0:
        everything = listed["train"]
        holdout_labels = np.array([lab for _, lab in everything]) if classes and all(lab is not None for _, lab in everything) else None
        if holdout_labels is not None:
            counts = np.bincount(holdout_labels, minlength=len(class_dirs))
            if counts.min() < 2:
                raise SourceError(
                    f"{root}: class folder {class_dirs[int(counts.argmin())]!r} has {counts.min()} image(s); "
                    "a held-out test split needs at least 2 per class (or pass --test-fraction 0, or add train/ and test/ folders)"
                )
        train_idx, test_idx = holdout(len(everything), holdout_labels, test_fraction, seed)
        listed = {"train": [everything[i] for i in sorted(train_idx)], "test": [everything[i] for i in sorted(test_idx)]}

    def samples(entries: list[tuple[Path, int | None]]) -> Iterator[RawSample]:
        for p, label in entries:
            yield RawSample(str(p.relative_to(root)), p.read_bytes(), label)

    return SourceData(splits={split: samples(e) for split, e in listed.items()}, classes=classes)


def _check_folder_listing(
    root: Path, split_roots: dict[str, Path], listed: dict[str, list[tuple[Path, int | None]]], class_dirs: list[str]
) -> None:
    """Fail before any shard is written when a folder source holds nothing to train on."""
    for split, entries in listed.items():
        if entries:
            continue
        split_root = split_roots[split]
        others = [p for p in split_root.rglob("*") if p.is_file()]
        if not others:
            raise SourceError(f"no images found under {split_root}: the folder is empty")
        raise SourceError(
            f"no images found under {split_root}: {len(others)} file(s), none with an image suffix "
            f"{', '.join(IMAGE_SUFFIXES)} (e.g. {others[0].relative_to(root)})"
        )
    for split_root in split_roots.values():
        for name in class_dirs:
            class_root = split_root / name
            if class_root.is_dir() and not any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in class_root.rglob("*")):
                raise SourceError(f"class folder {class_root} has no images ({', '.join(IMAGE_SUFFIXES)})")
