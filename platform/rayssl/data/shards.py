"""Write, list and validate parquet image shards and their manifest.

Layout under a shard URI:

    <uri>/manifest.json             splits, per-shard row counts and sha256, class histogram
    <uri>/<split>/part-00000.parquet columns: sample_id (str), index (int64), image (binary), label (int64, null)

`index` is the dense position of a sample within its split (0..rows-1). It is fixed when the
shards are written, so it is a stable integer key (NAT keys its assignment table by it), while
`sample_id` stays the human-readable name used in quarantine reports.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rayssl.config import StorageConfig
from rayssl.data import storage
from rayssl.data.sources import RawSample, SourceData

MANIFEST = "manifest.json"
FORMAT = "rayssl-shards/1"
SCHEMA = pa.schema([("sample_id", pa.string()), ("index", pa.int64()), ("image", pa.binary()), ("label", pa.int64())])


class ShardError(RuntimeError):
    """Shards are missing, truncated or do not match the manifest; the message names the file."""


@dataclass(frozen=True)
class ShardInfo:
    uri: str  # full URI of the parquet file
    rows: int


def write_shards(
    data: SourceData, out_uri: str, rows_per_shard: int = 10_000, storage_cfg: StorageConfig = StorageConfig(), source_name: str = ""
) -> dict:
    """Write every split of `data` as parquet shards under `out_uri`; return the manifest.

    The manifest is written last, so a crashed build never looks complete.
    """
    manifest: dict = {"format": FORMAT, "source": source_name, "classes": data.classes, "splits": {}}
    for split, samples in data.splits.items():
        histogram: Counter[int] = Counter()
        shards, total = [], 0
        for k, chunk in enumerate(_chunks(samples, rows_per_shard)):
            payload = shard_bytes([s.sample_id for s in chunk], total, [s.image for s in chunk], [s.label for s in chunk])
            rel = f"{split}/part-{k:05d}.parquet"
            storage.write_bytes(storage.join(out_uri, rel), payload, storage_cfg)
            shards.append({"path": rel, "rows": len(chunk), "sha256": hashlib.sha256(payload).hexdigest()})
            histogram.update(s.label for s in chunk if s.label is not None)
            total += len(chunk)
        manifest["splits"][split] = {"rows": total, "class_histogram": {str(c): n for c, n in sorted(histogram.items())}, "shards": shards}
    storage.write_bytes(storage.join(out_uri, MANIFEST), json.dumps(manifest, indent=2).encode(), storage_cfg)
    return manifest


def shard_bytes(sample_ids: list[str], first_index: int, images: list[bytes], labels: list[int | None]) -> bytes:
    """One shard as parquet bytes: rows first_index, first_index + 1, ... of a split."""
    table = pa.table(
        {"sample_id": sample_ids, "index": list(range(first_index, first_index + len(sample_ids))), "image": images, "label": labels},
        schema=SCHEMA,
    )
    buf = io.BytesIO()
    # Small row groups let Ray Data split a shard into several blocks for parallelism.
    pq.write_table(table, buf, row_group_size=1024, compression="none")
    return buf.getvalue()


def _chunks(samples: Iterable[RawSample], size: int) -> Iterator[list[RawSample]]:
    chunk: list[RawSample] = []
    for s in samples:
        chunk.append(s)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def read_manifest(uri: str, storage_cfg: StorageConfig = StorageConfig()) -> dict:
    """Load `<uri>/manifest.json`; a missing or empty prefix is a ShardError, not a hang."""
    manifest_uri = storage.join(uri, MANIFEST)
    try:
        manifest = json.loads(storage.read_bytes(manifest_uri, storage_cfg))
    except FileNotFoundError:
        found = storage.list_files(uri, storage_cfg, suffix=".parquet")
        detail = f" ({len(found)} parquet files but no {MANIFEST}: rebuild with `rayssl shards build`)" if found else ""
        raise ShardError(f"no shards found under {uri}{detail}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ShardError(f"cannot read {manifest_uri}: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise ShardError(f"{manifest_uri}: unknown format {manifest.get('format')!r} (expected {FORMAT})")
    return manifest


def list_shards(uri: str, split: str, storage_cfg: StorageConfig = StorageConfig()) -> list[ShardInfo]:
    manifest = read_manifest(uri, storage_cfg)
    if split not in manifest["splits"] or not manifest["splits"][split]["shards"]:
        raise ShardError(f"no shards found under {uri} for split {split!r} (splits: {sorted(manifest['splits'])})")
    return [ShardInfo(storage.join(uri, s["path"]), s["rows"]) for s in manifest["splits"][split]["shards"]]


def validate_shards(
    uri: str, storage_cfg: StorageConfig = StorageConfig(), splits: Iterable[str] | None = None, checksums: bool = False
) -> dict:
    """Check every shard's footer, schema and row count (and sha256 if `checksums`).

    Reads only parquet footers unless `checksums`, so it is cheap enough to run before every
    training run. Raises ShardError naming each broken file; returns the manifest when clean.
    """
    manifest = read_manifest(uri, storage_cfg)
    fs, root = storage.resolve(uri, storage_cfg)  # one filesystem for every footer
    problems = []
    for split in splits or manifest["splits"]:
        if split not in manifest["splits"]:
            problems.append(f"split {split!r} is not in the manifest")
            continue
        for shard in manifest["splits"][split]["shards"]:
            shard_uri = storage.join(uri, shard["path"])
            problem = _check_shard(fs, f"{root}/{shard['path']}", shard, checksums)
            if problem:
                problems.append(f"{shard_uri}: {problem}")
    if problems:
        raise ShardError(f"{len(problems)} broken shard(s) under {uri}:\n  " + "\n  ".join(problems))
    return manifest


def _check_shard(fs: pafs.FileSystem, path: str, entry: dict, checksums: bool) -> str | None:
    try:
        if checksums:
            with fs.open_input_stream(path) as src:
                digest = hashlib.sha256(src.read()).hexdigest()
            if digest != entry["sha256"]:
                return f"sha256 {digest[:12]}... does not match the manifest ({entry['sha256'][:12]}...)"
        with fs.open_input_file(path) as src:
            meta = pq.ParquetFile(src)
            schema, rows = meta.schema_arrow, meta.metadata.num_rows
    except FileNotFoundError:
        return "missing"
    except (OSError, pa.ArrowInvalid) as exc:
        return f"unreadable parquet ({exc})"
    for name in SCHEMA.names:
        if name not in schema.names:
            return f"schema mismatch: missing column {name!r} (has {schema.names})"
        if schema.field(name).type != SCHEMA.field(name).type:
            return f"schema mismatch: column {name!r} is {schema.field(name).type}, expected {SCHEMA.field(name).type}"
    if rows != entry["rows"]:
        return f"{rows} rows, manifest says {entry['rows']}"
    return None
