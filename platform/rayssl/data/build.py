"""Parallel, resumable shard building for folders and buckets of images (local, s3://, gs://), with Ray Data.

    list keys (driver: paths and sizes, never contents) -> plan shards by bytes
      -> ray.data.from_items(plan).map(write one shard)  (tasks anywhere in the cluster)
      -> manifest.json, written last

The driver fixes everything that must be global: the sorted key order, labels from class folders,
the seeded train/test holdout, every sample's dense `index`, and which keys go to which shard
(consecutive keys up to `shard_mb` of encoded bytes). A task reads its shard's files, writes
`<split>/part-NNNNN.parquet`, then a small `.done.json` sidecar with its row count, sha256 and
class histogram. Running the same build again skips every shard whose sidecar exists, so an
interrupted build resumes; the manifest is assembled from the sidecars. The result is the same
layout, schema and keys as the single-process `write_shards` (rayssl.data.shards).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import ray.data

from rayssl.config import StorageConfig
from rayssl.data import storage
from rayssl.data.label_table import LabelTable, label_listing
from rayssl.data.ray_data import quiet_ray_data
from rayssl.data.shards import FORMAT, MANIFEST, shard_bytes
from rayssl.data.sources import IMAGE_SUFFIXES, SourceError, holdout

DONE_SUFFIX = ".done.json"


@dataclass(frozen=True)
class PlannedShard:
    split: str
    number: int
    keys: list[str]  # relative to the root; also the samples' sample_id
    labels: list[int | None]
    first_index: int  # `index` of the shard's first sample within its split
    encoded_bytes: int

    @property
    def path(self) -> str:
        return f"{self.split}/part-{self.number:05d}.parquet"


def list_images(root: str, storage_cfg: StorageConfig) -> list[tuple[str, int]]:
    """(key relative to root, size in bytes) of every image file under root, sorted by key."""
    fs, base = storage.resolve(root, storage_cfg)
    base = base.rstrip("/")
    with storage.reaching(root, storage_cfg):
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    found = [(i.path[len(base) + 1 :], i.size) for i in infos if i.type == pafs.FileType.File and i.path.lower().endswith(IMAGE_SUFFIXES)]
    if not found:
        raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
    return sorted(found)


def plan_shards(
    listing: list[tuple[str, int]], shard_bytes: int, test_fraction: float = 0.2, seed: int = 0, table: LabelTable | None = None
) -> tuple[list[PlannedShard], list[str] | None]:
    """The shard plan of a sorted listing: splits from train/ and test/ folders (else a seeded,
    stratified holdout), labels from class folders (the first folder under the split) and the label
    table (keys relative to the root, applied before the holdout), shards of
    consecutive keys holding at most `shard_bytes` of encoded images (at least one image each)."""
    by_split: dict[str, list[tuple[str, int, str]]] = {}  # split -> [(key, size, key under the split)]
    tops = {k.split("/", 1)[0] for k, _ in listing if "/" in k}
    has_splits = bool(tops & {"train", "test"})
    for key, size in listing:
        split, inner = (key.split("/", 1) if "/" in key else ("", key)) if has_splits else ("train", key)
        if has_splits and split not in ("train", "test"):
            continue  # files beside train/ and test/ belong to neither
        by_split.setdefault(split, []).append((key, size, inner))
    class_names = sorted({inner.split("/", 1)[0] for entries in by_split.values() for _, _, inner in entries if "/" in inner})
    class_index = {c: i for i, c in enumerate(class_names)}

    def label(inner: str) -> int | None:
        return class_index[inner.split("/", 1)[0]] if class_names and "/" in inner else None

    labelled = {s: [(k, size, label(inner)) for k, size, inner in e] for s, e in by_split.items()}
    if table is not None:
        labels, names = label_listing(table, {s: [(k, lab) for k, _, lab in e] for s, e in labelled.items()}, class_names or None)
        labelled = {s: [(k, size, lab) for (k, size, _), lab in zip(e, labels[s])] for s, e in labelled.items()}
        class_names = names or []
    if "test" not in labelled and test_fraction > 0:
        everything = labelled["train"]
        holdout_labels = (
            np.array([lab for _, _, lab in everything]) if class_names and all(lab is not None for _, _, lab in everything) else None
        )
        train_idx, test_idx = holdout(len(everything), holdout_labels, test_fraction, seed)
        labelled = {"train": [everything[i] for i in sorted(train_idx)], "test": [everything[i] for i in sorted(test_idx)]}
    plans = []
    for split in sorted(labelled, key=lambda name: name != "train"):  # train first, as write_shards
        entries = labelled[split]
        chunk: list[tuple[str, int, int | None]] = []
        number, start, size_sum = 0, 0, 0
        for entry in entries:
            if chunk and size_sum + entry[1] > shard_bytes:
                plans.append(_plan(split, number, chunk, start))
                number, start, chunk, size_sum = number + 1, start + len(chunk), [], 0
            chunk.append(entry)
            size_sum += entry[1]
        if chunk:
            plans.append(_plan(split, number, chunk, start))
    return plans, class_names or None


def _plan(split: str, number: int, chunk: list[tuple[str, int, int | None]], start: int) -> PlannedShard:
    return PlannedShard(split, number, [k for k, _, _ in chunk], [lab for _, _, lab in chunk], start, sum(s for _, s, _ in chunk))


class WriteShard:
    """Ray Data row function: one planned shard -> its parquet file and sidecar (skipped when the sidecar exists)."""

    def __init__(self, root: str, out: str, storage_cfg: StorageConfig) -> None:
        self.root, self.out, self.storage_cfg = root, out, storage_cfg

    def __call__(self, row: dict) -> dict:
        fields: dict[str, Any] = {k: (list(v) if isinstance(v, np.ndarray) else v) for k, v in row.items()}
        plan = PlannedShard(**fields)
        done = storage.join(self.out, plan.path + DONE_SUFFIX)
        if storage.exists(done, self.storage_cfg):
            return {**json.loads(storage.read_bytes(done, self.storage_cfg)), "skipped": True}
        images = [storage.read_bytes(storage.join(self.root, key), self.storage_cfg) for key in plan.keys]
        labels = [None if lab is None or (isinstance(lab, float) and np.isnan(lab)) else int(lab) for lab in plan.labels]
        payload = shard_bytes(plan.keys, plan.first_index, images, labels)
        storage.write_bytes(storage.join(self.out, plan.path), payload, self.storage_cfg)
        info = {
            "split": plan.split,
            "number": plan.number,
            "path": plan.path,
            "rows": len(plan.keys),
            "bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "class_histogram": {str(c): n for c, n in sorted(Counter(lab for lab in labels if lab is not None).items())},
        }
        storage.write_bytes(done, json.dumps(info).encode(), self.storage_cfg)  # after the shard: its proof of completion
        return {**info, "skipped": False}


def build_shards_parallel(
    root: str,
    out: str,
    shard_mb: float = 256.0,
    storage_cfg: StorageConfig = StorageConfig(),
    test_fraction: float = 0.2,
    seed: int = 0,
    table: LabelTable | None = None,
) -> dict:
    """Build (or finish building) the shards of an image folder or bucket with Ray Data tasks; returns the manifest.

    Needs a running Ray (local or a cluster); each shard is one task."""
    plans, classes = plan_shards(list_images(root, storage_cfg), int(shard_mb * 2**20), test_fraction, seed, table)
    quiet_ray_data()
    rows = [asdict(p) for p in plans]
    written = ray.data.from_items(rows, override_num_blocks=len(rows)).map(WriteShard(root, out, storage_cfg)).take_all()
    manifest: dict = {"format": FORMAT, "source": "folder", "classes": classes, "splits": {}}
    for split in dict.fromkeys(p.split for p in plans):
        shards = sorted((w for w in written if w["split"] == split), key=lambda w: w["number"])
        histogram: Counter = Counter()
        for w in shards:
            histogram.update(w["class_histogram"])
        manifest["splits"][split] = {
            "rows": sum(w["rows"] for w in shards),
            "class_histogram": {k: histogram[k] for k in sorted(histogram, key=int)},
            "shards": [{"path": w["path"], "rows": w["rows"], "sha256": w["sha256"]} for w in shards],
        }
    manifest["build"] = {"shards_written": sum(not w["skipped"] for w in written), "shards_skipped": sum(w["skipped"] for w in written)}
    storage.write_bytes(storage.join(out, MANIFEST), json.dumps(manifest, indent=2).encode(), storage_cfg)
    return manifest
