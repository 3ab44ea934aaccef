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

from rayssl.config import ConfigError, DataConfig, SemiSupConfig, StorageConfig
from rayssl.data.decode import decode_batch, image_spec
from rayssl.data.label_table import LabelTableError, read_label_table, resolve_keys, resolve_labels
from rayssl.data.labels import LabelSplit, check_no_leakage, draw_labels
from rayssl.data.shardset import ShardSet


@dataclass(frozen=True)
class LabelledSet:
    images: np.ndarray  # uint8 [N, H, W, C], decoded and resized like the training stream, not normalised
    labels: np.ndarray  # int64 [N]
    indices: np.ndarray  # int64 [N] sample indices within the train split


def read_columns(
    data: DataConfig, split: str, columns: list[str], storage_cfg: StorageConfig, filter_expr: pc.Expression | None = None
) -> pa.Table:
    """One read of these columns of a split, for callers without a ShardSet at hand."""
    return ShardSet.open(data.shards, storage_cfg, check=False).read_columns(split, columns, filter_expr)


@dataclass(frozen=True)
class LabelPlan:
    """Where a fine-tuning run's labels come from and how they were split (written as the run's labels.json)."""

    split: LabelSplit
    labels: np.ndarray  # int64 [N]: the class of each train sample by index (-1: unlabelled), the shards' and the table's
    classes: list[str] | None  # class names in id order (None: ids only)
    report: dict[str, Any]


def select_labels(data: DataConfig, semisup: SemiSupConfig, storage_cfg: StorageConfig, shards: ShardSet | None = None) -> LabelPlan:
    """Seeded, stratified labelled + validation (+ held-out test) indices from the train split's labels:
    the shards' own, plus those of the label table semisup.labels. Test never leaks in.
    shards: data.shards already opened (else opened here, unchecked)."""
    shards = shards or ShardSet.open(data.shards, storage_cfg, check=False)
    manifest = shards.manifest
    train = shards.read_columns("train", ["sample_id", "index", "label"])
    order = np.argsort(train.column("index").to_numpy())
    ids = np.asarray(train.column("sample_id").to_pylist(), dtype=object)[order]
    labels = train.column("label").fill_null(-1).to_numpy()[order].astype(np.int64)
    has_test = "test" in manifest["splits"] and manifest["splits"]["test"]["rows"] > 0
    test_ids = set(shards.read_columns("test", ["sample_id"]).column("sample_id").to_pylist()) if has_test else set()
    classes, table_report = manifest.get("classes"), {}
    if semisup.labels:
        resolved = resolve_labels(read_label_table(semisup.labels, storage_cfg), list(ids), classes, test_ids, labels, semisup.num_classes)
        labels, classes = resolved.labels, resolved.classes
        table_report = {
            "table": semisup.labels,
            "table_rows": resolved.rows,
            "repeated_keys": resolved.repeated,
            "test_keys_skipped": resolved.test_keys,
        }
    if classes is not None and len(classes) != semisup.num_classes:
        raise ConfigError(
            f"semisup.num_classes: {semisup.num_classes}, but the labels name {len(classes)} classes ({', '.join(classes[:10])})"
        )
    labelled_test = has_test and bool(manifest["splits"]["test"].get("class_histogram"))
    split = draw_labels(
        labels,
        semisup.labels_per_class,
        semisup.val_per_class,
        semisup.val_fraction,
        semisup.label_seed,
        semisup.labelled_classes,
        0.0 if labelled_test else semisup.test_fraction,
        classes,
    )
    pinned_report: dict[str, Any] = {}
    if semisup.labelled_ids:
        split, pinned_report = pin_labelled(split, semisup.labelled_ids, ids, labels, test_ids, storage_cfg)
    check_no_leakage(
        {
            "labelled": set(ids[split.labelled]),
            "validation": set(ids[split.validation]),
            "test": test_ids if labelled_test else set(ids[split.test]),
        }
    )
    report = {**table_report, **_split_report(labels, split, semisup, classes, labelled_test), **pinned_report}
    return LabelPlan(split, labels, classes, report)


def pin_labelled(
    split: LabelSplit, uri: str, ids: np.ndarray, labels: np.ndarray, test_ids: set[str], storage_cfg: StorageConfig
) -> tuple[LabelSplit, dict[str, Any]]:
    """The images listed at `uri` (semisup.labelled_ids) as the labelled set, in place of the per-class draw.

    ids: [N] sample id by train index; labels: int64 [N] (-1: unlabelled). A listed image that the
    validation draw or the test hold-out took leaves them (they shrink, and the report counts it), so
    a list chosen without knowing them is never trained and scored on at once. Raises LabelTableError
    naming the row of a listed image that has no label or is a test image."""
    table = read_label_table(uri, storage_cfg, needs_labels=False)
    indices = resolve_keys(table, list(ids), test_ids)
    unlabelled = np.flatnonzero(labels[indices] < 0)
    if len(unlabelled):
        row = int(unlabelled[0])
        raise LabelTableError(
            f"{table.where(row)}: {table.key_column} {table.keys[row]!r} has no label "
            f"({len(unlabelled)} listed images have none): label them in semisup.labels"
        )
    pinned = np.unique(indices)
    moved = {"validation": np.intersect1d(split.validation, pinned), "test": np.intersect1d(split.test, pinned)}
    pinned_split = LabelSplit(pinned, np.setdiff1d(split.validation, pinned), np.setdiff1d(split.test, pinned))
    report = {
        "budget": f"{len(pinned)} images listed in {uri}",
        "labelled_ids": uri,
        "taken_from_validation": len(moved["validation"]),
        "taken_from_test_hold_out": len(moved["test"]),
    }
    return pinned_split, report


def _split_report(
    labels: np.ndarray, split: LabelSplit, semisup: SemiSupConfig, classes: list[str] | None, labelled_test: bool
) -> dict[str, Any]:
    """Per class (by name): labels that exist, and how many went to training, validation and test."""

    def per_class(indices: np.ndarray) -> dict[str, int]:
        counts = np.bincount(labels[indices], minlength=semisup.num_classes)
        return {classes[c] if classes else str(c): int(n) for c, n in enumerate(counts)}

    available = per_class(np.flatnonzero(labels >= 0))
    return {
        "budget": semisup.labels_per_class,
        "label_seed": semisup.label_seed,
        "test": "the shards' labelled test split"
        if labelled_test
        else f"held out from the labels: {len(split.test)} images ({semisup.test_fraction:.0%} of each class, at least one)",
        "labels_available": available,
        "labelled": per_class(split.labelled),
        "validation": per_class(split.validation),
        **({"test_held_out": per_class(split.test)} if not labelled_test else {}),
        "short_of_budget": {classes[c] if classes else str(c): n for c, n in split.shortfall.items()},
        "classes_without_labels": [name for name, n in available.items() if n == 0],
    }


def load_labelled(
    data: DataConfig, indices: np.ndarray, labels: np.ndarray, storage_cfg: StorageConfig, shards: ShardSet | None = None
) -> LabelledSet:
    """Decode the train-split rows with these indices, labelled by `labels` (int64 [N] by train index:
    LabelPlan.labels). uint8; augmentation and normalisation happen on the worker, per step, with
    rayssl.data.transforms."""
    return load_labelled_sets(data, {"rows": indices}, labels, storage_cfg, shards)["rows"]


def load_labelled_sets(
    data: DataConfig, sets: dict[str, np.ndarray], labels: np.ndarray, storage_cfg: StorageConfig, shards: ShardSet | None = None
) -> dict[str, LabelledSet]:
    """Several labelled sets ({name: train indices}) decoded from one read of the train split."""
    shards = shards or ShardSet.open(data.shards, storage_cfg, check=False)
    wanted = np.concatenate(list(sets.values())) if sets else np.zeros(0, np.int64)
    table = shards.read_columns("train", ["sample_id", "index", "image"], pc.field("index").isin(pa.array(wanted)))
    spec = image_spec(data, train=False)  # decoded once; the worker augments them per step
    ok, decoded, bad = decode_batch(
        table.column("sample_id").to_pylist(), table.column("index").to_numpy(), table.column("image").to_pylist(), spec
    )
    if bad:
        raise ValueError(f"labelled images are undecodable: {[(r.sample_id, r.reason) for r in bad]}")
    kept = table.column("index").to_numpy()[ok]
    out = {}
    for name, indices in sets.items():
        rows = np.isin(kept, indices)  # each set in shard order, as one read of its own gives it
        out[name] = LabelledSet(decoded[rows], labels[kept[rows]], kept[rows])
    return out
