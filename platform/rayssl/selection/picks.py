"""A selection written for annotators: one CSV row per picked image, in pick order (no Ray).

The CSV is also an image list for fine-tuning (`semisup.labelled_ids`), and, once annotators add a
`label` column, a label table (`semisup.labels`, `rayssl shards build --labels`).
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from rayssl.config import StorageConfig
from rayssl.data import storage


def picks_table(sample_ids: np.ndarray, indices: np.ndarray, clusters: np.ndarray, strategy: str) -> pa.Table:
    """sample_ids: object [N] id of every train row by embedding row; indices, clusters: int64 [B] the
    picks (embedding rows) and the cluster each stands for (-1: none). Columns: rank (1 = picked first),
    sample_id, cluster, strategy."""
    return pa.table(
        {
            "rank": pa.array(np.arange(1, len(indices) + 1), pa.int64()),
            "sample_id": pa.array([str(s) for s in sample_ids[indices]], pa.string()),
            "cluster": pa.array(clusters.astype(np.int64), pa.int64()),
            "strategy": pa.array([strategy] * len(indices), pa.string()),
        }
    )


def write_picks(uri: str, table: pa.Table, storage_cfg: StorageConfig = StorageConfig()) -> None:
    """The picks as CSV at any URI the shards accept."""
    buf = io.BytesIO()
    pacsv.write_csv(table, buf)
    storage.write_bytes(uri, buf.getvalue(), storage_cfg)
