"""A shard set resolved once on the driver: its manifest, the filesystem that reads it, its splits.

A fine-tuning run reads the same shard set for its label plan, its labelled and validation images
and (for a small corpus) the whole train split. Each of those used to re-read the manifest and
build a new (S3) filesystem per read; the job now opens one ShardSet and hands it down.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rayssl.config import StorageConfig
from rayssl.data import storage
from rayssl.data.shards import ShardError, read_manifest, validate_shards


@dataclass(frozen=True)
class ShardSet:
    uri: str
    manifest: dict[str, Any]
    storage: StorageConfig
    filesystem: pafs.FileSystem
    root: str  # the shard set's path inside `filesystem`

    @classmethod
    def open(cls, uri: str, storage_cfg: StorageConfig, validate: Iterable[str] | None = None, check: bool = True) -> ShardSet:
        """Read the manifest once and resolve the filesystem once. check: validate every shard's footer
        of the splits in `validate` (None: every split) first, raising ShardError naming broken files."""
        manifest = validate_shards(uri, storage_cfg, splits=validate) if check else read_manifest(uri, storage_cfg)
        fs, root = storage.resolve(uri, storage_cfg)
        return cls(uri, manifest, storage_cfg, fs, root)

    def has(self, split: str) -> bool:
        """Whether the split exists and holds rows."""
        return split in self.manifest["splits"] and self.manifest["splits"][split]["rows"] > 0

    def rows(self, split: str) -> int:
        return int(self.manifest["splits"][split]["rows"])

    def _paths(self, split: str) -> list[str]:
        splits = self.manifest["splits"]
        if split not in splits or not splits[split]["shards"]:
            raise ShardError(f"no shards found under {self.uri} for split {split!r} (splits: {sorted(splits)})")
        return [f"{self.root}/{shard['path']}" for shard in splits[split]["shards"]]

    def read_columns(self, split: str, columns: list[str], filter_expr: pc.Expression | None = None) -> pa.Table:
        """These columns of every shard of `split` (rows matching filter_expr), in shard order."""
        return pa.concat_tables(
            [pq.read_table(path, filesystem=self.filesystem, columns=columns, filters=filter_expr) for path in self._paths(split)]
        )

    def sample_ids(self, split: str) -> np.ndarray:
        """object [N]: the sample id of each row of `split` by its index (position = index)."""
        table = self.read_columns(split, ["sample_id", "index"])
        ids = np.empty(len(table), dtype=object)
        ids[table.column("index").to_numpy()] = table.column("sample_id").to_pylist()
        return ids
