"""The small labelled sets of few-label fine-tuning, read straight from the shards (no Ray).

Labelled and validation sets hold at most a few thousand images, so they are decoded once on
the driver and shipped to the workers with the train-loop config; the unlabelled corpus
streams through Ray Data as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rayssl.config import ConfigError, DataConfig, SemiSupConfig, StorageConfig
from rayssl.data import storage
from rayssl.data.decode import decode_batch, image_spec
from rayssl.data.label_table import read_label_table, resolve_labels
from rayssl.data.labels import LabelSplit, check_no_leakage, draw_labels
from rayssl.data.shards import list_shards, read_manifest


@dataclass(frozen=True)
class LabelledSet:
    images: np.ndarray  # uint8 [N, H, W, C], decoded and resized like the training stream, not normalised
    labels: np.ndarray  # int64 [N]
    indices: np.ndarray  # int64 [N] sample indices within the train split


def read_columns(data: DataConfig, split: str, columns: list[str], storage_cfg: StorageConfig, filter_expr: pc.Expression | None = None) -> pa.Table:
    tables = []
    for shard in list_shards(data.shards, split, storage_cfg):
        fs, path = storage.resolve(shard.uri, storage_cfg)
        tables.append(pq.read_table(path, filesystem=fs, columns=columns, filters=filter_expr))
    return pa.concat_tables(tables)


@dataclass(frozen=True)
class LabelPlan:
    """Where a fine-tuning run's labels come from and how they were split (written as the run's labels.json)."""

    split: LabelSplit
    labels: np.ndarray  # int64 [N]: the class of each train sample by index (-1: unlabelled), the shards' and the table's
    classes: list[str] | None  # class names in id order (None: ids only)
    report: dict[str, Any]


def select_labels(data: DataConfig, semisup: SemiSupConfig, storage_cfg: StorageConfig) -> LabelPlan:
    """Seeded, stratified labelled + validation (+ held-out test) indices from the train split's labels:
    the shards' own, plus those of the label table semisup.labels. Test never leaks in."""
    manifest = read_manifest(data.shards, storage_cfg)
    train = read_columns(data, "train", ["sample_id", "index", "label"], storage_cfg)
    order = np.argsort(train.column("index").to_numpy())
    ids = np.asarray(train.column("sample_id").to_pylist(), dtype=object)[order]
    labels = train.column("label").fill_null(-1).to_numpy()[order].astype(np.int64)
    has_test = "test" in manifest["splits"] and manifest["splits"]["test"]["rows"] > 0
    test_ids = set(read_columns(data, "test", ["sample_id"], storage_cfg).column("sample_id").to_pylist()) if has_test else set()
    classes, table_report = manifest.get("classes"), {}
    if semisup.labels:
        resolved = resolve_labels(read_label_table(semisup.labels, storage_cfg), list(ids), classes, test_ids, labels, semisup.num_classes)
        labels, classes = resolved.labels, resolved.classes
        table_report = {"table": semisup.labels, "table_rows": resolved.rows, "repeated_keys": resolved.repeated, "test_keys_skipped": resolved.test_keys}
    if classes is not None and len(classes) != semisup.num_classes:
        raise ConfigError(f"semisup.num_classes: {semisup.num_classes}, but the labels name {len(classes)} classes ({', '.join(classes[:10])})")
    labelled_test = has_test and bool(manifest["splits"]["test"].get("class_histogram"))
    split = draw_labels(labels, semisup.labels_per_class, semisup.val_per_class, semisup.val_fraction, semisup.label_seed,
                        semisup.labelled_classes, 0.0 if labelled_test else semisup.test_fraction, classes)
    check_no_leakage({"labelled": set(ids[split.labelled]), "validation": set(ids[split.validation]),
                      "test": test_ids if labelled_test else set(ids[split.test])})
    return LabelPlan(split, labels, classes, {**table_report, **_split_report(labels, split, semisup, classes, labelled_test)})


def _split_report(labels: np.ndarray, split: LabelSplit, semisup: SemiSupConfig, classes: list[str] | None, labelled_test: bool) -> dict[str, Any]:
    """Per class (by name): labels that exist, and how many went to training, validation and test."""
    def per_class(indices: np.ndarray) -> dict[str, int]:
        counts = np.bincount(labels[indices], minlength=semisup.num_classes)
        return {classes[c] if classes else str(c): int(n) for c, n in enumerate(counts)}

    available = per_class(np.flatnonzero(labels >= 0))
    return {
        "budget": semisup.labels_per_class, "label_seed": semisup.label_seed,
        "test": "the shards' labelled test split" if labelled_test else
                f"held out from the labels: {len(split.test)} images ({semisup.test_fraction:.0%} of each class, at least one)",
        "labels_available": available, "labelled": per_class(split.labelled), "validation": per_class(split.validation),
        **({"test_held_out": per_class(split.test)} if not labelled_test else {}),
        "short_of_budget": {classes[c] if classes else str(c): n for c, n in split.shortfall.items()},
        "classes_without_labels": [name for name, n in available.items() if n == 0],
    }


def load_labelled(data: DataConfig, indices: np.ndarray, labels: np.ndarray, storage_cfg: StorageConfig) -> LabelledSet:
    """Decode the train-split rows with these indices, labelled by `labels` (int64 [N] by train index:
    LabelPlan.labels). uint8; augmentation and normalisation happen on the worker, per step, with
    rayssl.data.transforms."""
    table = read_columns(data, "train", ["sample_id", "index", "image"], storage_cfg, pc.field("index").isin(pa.array(indices)))
    spec = image_spec(data, train=False)  # decoded once; the worker augments them per step
    ok, decoded, bad = decode_batch(table.column("sample_id").to_pylist(), table.column("index").to_numpy(), table.column("image").to_pylist(), spec)
    if bad:
        raise ValueError(f"labelled images are undecodable: {[(r.sample_id, r.reason) for r in bad]}")
    kept = table.column("index").to_numpy()[ok]
    return LabelledSet(decoded, labels[kept], kept)
