"""Label-only records: label values with no image (recorded outcomes, categories with no matching
sample), read with Ray Data from any URI the shards accept and validated before training starts.

Accepted layouts (parquet or CSV; one file or a folder of them):
- an integer column `label` with class ids in [0, K) -> one-hot rows;
- a list column `probs` of K non-negative numbers summing to 1 (soft labels);
- columns p0 .. p{K-1} of such numbers (soft labels in CSV).
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray.data

from rayssl.config import DataConfig, StorageConfig
from rayssl.data import storage
from rayssl.data.labelled import read_columns
from rayssl.data.ray_data import quiet_ray_data

SUM_TOLERANCE = 1e-3


class LabelOnlyError(ValueError):
    """A label-only table is unusable; the message names the URI, the row and the value."""


def label_vectors(columns: dict[str, np.ndarray], num_classes: int, source: str, first_row: int = 0) -> np.ndarray:
    """One batch of a label-only table -> float32 [N, K] label distributions.

    columns: {name: [N] or [N, K] array}; `first_row` numbers the rows of this batch in the table.
    Raises LabelOnlyError naming `source` and the (0-based) row of the first bad value.
    """
    soft_columns = [f"p{k}" for k in range(num_classes)]
    if "label" in columns:
        labels = np.asarray(columns["label"])
        if labels.dtype.kind not in "iu":
            raise LabelOnlyError(f"{source}: column 'label' must hold integer class ids, got {labels.dtype}")
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if len(bad):
            raise LabelOnlyError(f"{source}: row {first_row + bad[0]}: class id {labels[bad[0]]} is not in [0, {num_classes})")
        return np.eye(num_classes, dtype=np.float32)[labels]
    if "probs" in columns:
        try:
            probs = (
                np.stack([np.asarray(p, dtype=np.float32) for p in columns["probs"]])
                if len(columns["probs"])
                else np.zeros((0, num_classes), np.float32)
            )
        except ValueError as exc:
            raise LabelOnlyError(f"{source}: column 'probs' must hold {num_classes} numbers per row ({exc})") from None
    elif all(c in columns for c in soft_columns):
        probs = np.stack([np.asarray(columns[c], dtype=np.float32) for c in soft_columns], axis=1)
    else:
        raise LabelOnlyError(
            f"{source}: needs a column 'label', a list column 'probs' or columns p0..p{num_classes - 1}; found {sorted(columns)}"
        )
    if probs.ndim != 2 or probs.shape[1] != num_classes:
        raise LabelOnlyError(f"{source}: soft labels must have {num_classes} values per row, got shape {probs.shape[1:]}")
    bad = np.flatnonzero(~np.isfinite(probs).all(1) | (probs < 0).any(1) | (np.abs(probs.sum(1) - 1) > SUM_TOLERANCE))
    if len(bad):
        raise LabelOnlyError(
            f"{source}: row {first_row + bad[0]}: {probs[bad[0]].tolist()} is not a distribution over {num_classes} classes"
        )
    return probs


def read_label_only(uri: str, num_classes: int, storage_cfg: StorageConfig) -> np.ndarray:
    """All label-only records at `uri` as float32 [N, K], in file order, validated row by row."""
    fs, path = storage.resolve(uri, storage_cfg)
    if path.endswith((".csv", ".parquet")):
        paths = [path] if storage.exists(uri, storage_cfg) else []
    else:
        paths = [p for p in storage.list_files(uri, storage_cfg) if p.endswith((".csv", ".parquet"))]
    if not paths:
        raise LabelOnlyError(f"{uri}: no label-only records (expected a .parquet or .csv file, or a folder of them)")
    quiet_ray_data()
    context = ray.data.DataContext.get_current()
    preserve = context.execution_options.preserve_order
    context.execution_options.preserve_order = True  # rows numbered as in the files, for the error messages
    try:
        csv = [p for p in paths if p.endswith(".csv")]
        parquet = [p for p in paths if p.endswith(".parquet")]
        datasets = ([ray.data.read_csv(csv, filesystem=fs)] if csv else []) + (
            [ray.data.read_parquet(parquet, filesystem=fs)] if parquet else []
        )
        vectors, row = [], 0
        for ds in datasets:
            for batch in ds.iter_batches(batch_format="numpy", batch_size=65536):
                vectors.append(label_vectors(batch, num_classes, uri, row))
                row += len(vectors[-1])
    finally:
        context.execution_options.preserve_order = preserve
    if row == 0:
        raise LabelOnlyError(f"{uri}: no label-only records")
    return np.concatenate(vectors)


def export_labels(shards: str, split: str, out: str, storage_cfg: StorageConfig) -> int:
    """Write the labels of one split of a shard set, without the images, as a label-only parquet
    table (column `label`) at `out`; returns the number of records. Stands in for label-only data
    in benchmarks (e.g. the inverted VAE's MNIST protocol: every train label, no image)."""
    table = read_columns(DataConfig(shards=shards), split, ["label"], storage_cfg, pc.field("label").is_valid())
    sink = io.BytesIO()
    pq.write_table(pa.table({"label": table.column("label").cast(pa.int64())}), sink)
    storage.write_bytes(out, sink.getvalue(), storage_cfg)
    return len(table)
