"""The small labelled sets of few-label fine-tuning, read straight from the shards (no Ray).

Labelled and validation sets hold at most a few thousand images, so they are decoded once on
the driver and shipped to the workers with the train-loop config; the unlabelled corpus
streams through Ray Data as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rayssl.config import DataConfig, StorageConfig
from rayssl.data import storage
from rayssl.data.decode import decode_batch, image_spec
from rayssl.data.labels import LabelSplit, balanced_subsets, check_no_leakage
from rayssl.data.shards import list_shards


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


def select_labels(data: DataConfig, per_class: int, val_per_class: int, seed: int, storage_cfg: StorageConfig, classes: list[int] | None = None) -> LabelSplit:
    """Seeded class-balanced labelled + validation indices from the train split (from `classes`
    only, if given); test never leaks in."""
    train = read_columns(data, "train", ["sample_id", "index", "label"], storage_cfg)
    labels = np.full(len(train), -1, dtype=np.int64)
    labels[train.column("index").to_numpy()] = train.column("label").fill_null(-1).to_numpy()
    split = balanced_subsets(labels, per_class, val_per_class, seed, classes)
    ids = np.asarray(train.column("sample_id").to_pylist(), dtype=object)[np.argsort(train.column("index").to_numpy())]
    test_ids = set(read_columns(data, "test", ["sample_id"], storage_cfg).column("sample_id").to_pylist())
    check_no_leakage({"labelled": set(ids[split.labelled]), "validation": set(ids[split.validation]), "test": test_ids})
    return split


def load_labelled(data: DataConfig, indices: np.ndarray, storage_cfg: StorageConfig) -> LabelledSet:
    """Decode the train-split rows with these indices (uint8; augmentation and normalisation happen
    on the worker, per step, with rayssl.data.transforms)."""
    table = read_columns(data, "train", ["sample_id", "index", "image", "label"], storage_cfg, pc.field("index").isin(pa.array(indices)))
    spec = image_spec(data, train=False)  # decoded once; the worker augments them per step
    ok, decoded, bad = decode_batch(table.column("sample_id").to_pylist(), table.column("index").to_numpy(), table.column("image").to_pylist(), spec)
    if bad:
        raise ValueError(f"labelled images are undecodable: {[(r.sample_id, r.reason) for r in bad]}")
    return LabelledSet(decoded, table.column("label").to_numpy()[ok], table.column("index").to_numpy()[ok])
