"""What predict and embed share: INPUT -> decoded image batches on Ray Data, the actor pool, the output.

    shard set (manifest.json)  read_parquet(every shard of the splits)  ┐
    folder / s3:// prefix      read_binary_files(png/jpg/jpeg files)    ┴─► map_batches(workers.DecodeImages)
      ─► {key, split, label, image uint8 [N, H, W, C]} ─► map_batches(model, actor pool) ─► driver ─► parquet parts

(Without GPUs Ray Data fuses the decode into the model actors; with GPUs the decode runs as CPU tasks.)

Decoding happens in our own map_batches function, so one broken image is quarantined alone (Ray
Data's own error handling fails the job or drops whole blocks). Images travel to the model actors
as uint8 (a quarter of float32's bytes) and are normalised there.

The driver writes the output itself rather than `Dataset.write_parquet`: it is small per row (ids,
top-k, or one vector), it gets an explicit arrow schema (lists and fixed_size_list<float32>[D], none
of Ray's tensor extension types, so plain pyarrow reads it), exact row counts and a progress display.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

from rayssl.config import ConfigError, StorageConfig
from rayssl.console import ProgressDisplay
from rayssl.data import quarantine, storage
from rayssl.data.decode import ImageSpec
from rayssl.data.ray_data import quiet_ray_data
from rayssl.data.shards import MANIFEST, read_manifest
from rayssl.inference.workers import QUARANTINE_RUN, DecodeImages
from rayssl.logs import get_logger

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DECODE_BATCH_ROWS = 256  # rows per decode call, as the training pipeline
ROWS_PER_FILE = 1_000_000


@dataclass(frozen=True)
class InferenceInput:
    """A resolved INPUT: a shard set (some of its splits) or a list of image files."""

    uri: str
    kind: Literal["shards", "images"]
    files: tuple[str, ...]  # filesystem paths: parquet shards or image files
    split_of: tuple[str, ...]  # shards: the split of each file; images: "images"
    rows: int  # images to predict (the manifest's row count, or the number of files)
    classes: tuple[str, ...] | None  # shards: the manifest's class names, for the true-label column

    @property
    def key_column(self) -> str:
        return "sample_id" if self.kind == "shards" else "path"


def open_input(uri: str, split: str | None, storage_cfg: StorageConfig) -> InferenceInput:
    """A shard set if `uri` holds manifest.json (every split, or `split`), else every .png/.jpg/.jpeg
    file under it, recursively (local folder, file://, s3:// or gs:// prefix)."""
    uri = storage.absolute(uri.rstrip("/"), storage_cfg)
    fs, _ = storage.resolve(uri, storage_cfg)
    if storage.exists(storage.join(uri, MANIFEST), storage_cfg):
        manifest = read_manifest(uri, storage_cfg)
        splits = [split] if split else sorted(manifest["splits"])
        if split and split not in manifest["splits"]:
            raise FileNotFoundError(f"{uri} has no split {split!r} (splits: {', '.join(sorted(manifest['splits']))})")
        entries = [(s, e) for s in splits for e in manifest["splits"][s]["shards"]]
        files = tuple(storage.resolve(storage.join(uri, e["path"]), storage_cfg)[1] for _, e in entries)
        classes = tuple(str(c) for c in manifest["classes"]) if manifest.get("classes") else None
        return InferenceInput(uri, "shards", files, tuple(s for s, _ in entries), sum(e["rows"] for _, e in entries), classes)
    if split:
        raise FileNotFoundError(f"--split {split} needs a shard set, but {uri} has no {MANIFEST}")
    files = tuple(p for p in storage.list_files(uri, storage_cfg) if p.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"no shard set ({MANIFEST}) and no {'/'.join(IMAGE_SUFFIXES)} images under {uri}")
    return InferenceInput(uri, "images", files, ("images",) * len(files), len(files), None)


def decoded_dataset(inp: InferenceInput, spec: ImageSpec, out_uri: str, storage_cfg: StorageConfig) -> ray.data.Dataset:
    """The lazily executed stream of decoded images of `inp` (DecodeImages' columns)."""
    quiet_ray_data()
    fs, _ = storage.resolve(inp.uri, storage_cfg)
    if inp.kind == "shards":
        ds = ray.data.read_parquet(list(inp.files), filesystem=fs, include_paths=True)
    else:
        ds = ray.data.read_binary_files(list(inp.files), filesystem=fs, include_paths=True)
    return ds.map_batches(DecodeImages(inp, spec, out_uri, storage_cfg), batch_format="pyarrow", batch_size=DECODE_BATCH_ROWS)


def actor_pool(actors: int | None) -> tuple[ray.data.ActorPoolStrategy, float]:
    """(the model's actor pool, GPUs per actor). With GPUs: one GPU per actor, one actor per GPU by
    default; the decode tasks stay on CPUs (their resources differ, so Ray Data does not fuse them
    into the actors). CPU only: the decode fuses into the actors (no uint8 copy through the object
    store) and each actor keeps one CPU busy; the default is a quarter of the cluster's logical
    CPUs, as rayssl's local Ray declares 4 logical CPUs per core (RayInitConfig.num_cpus)."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    size = actors or (gpus or max(1, int(resources.get("CPU", 1)) // 4))
    if gpus and size > gpus:
        raise ConfigError(f"--actors {size} needs {size} GPUs, the cluster has {gpus}")
    return ray.data.ActorPoolStrategy(size=size), (1.0 if gpus else 0.0)


def prepare_output(out_uri: str, storage_cfg: StorageConfig) -> str:
    """`out_uri` made absolute, with the part files and quarantine of an earlier run there removed
    (a rerun must not mix its rows or count with the last one's). Only our own file names are touched."""
    out_uri = storage.absolute(out_uri.rstrip("/"), storage_cfg)
    fs, root = storage.resolve(out_uri, storage_cfg)
    for path in storage.list_files(out_uri, storage_cfg, suffix=".parquet"):
        if posixpath.dirname(path) == root and posixpath.basename(path).startswith("part-"):  # ours: never a subfolder's
            fs.delete_file(path)
    quarantine.clear(storage.join(out_uri, QUARANTINE_RUN), storage_cfg)
    return out_uri


def quarantined(out_uri: str, storage_cfg: StorageConfig) -> int:
    """How many images this run's decode tasks quarantined under `out_uri`."""
    return len(quarantine.read_records(storage.join(out_uri, QUARANTINE_RUN), storage_cfg))


def write_parts(
    tables: Iterator[pa.Table],
    out_uri: str,
    schema: pa.Schema,
    storage_cfg: StorageConfig,
    on_rows: Callable[[int], Any] = lambda rows: None,
) -> int:
    """Stream `tables` into out_uri/part-00000.parquet, part-00001.parquet, ... (ROWS_PER_FILE rows
    each); `on_rows(total so far)` after every table. Returns the rows written (0: one empty part,
    so the output always has the schema)."""
    fs, root = storage.resolve(out_uri, storage_cfg)
    fs.create_dir(root, recursive=True)
    total, in_file, part = 0, 0, 0
    writer: pq.ParquetWriter | None = None
    stream: pa.NativeFile | None = None
    try:
        for table in tables:
            if writer is None or in_file >= ROWS_PER_FILE:
                if writer is not None:
                    writer.close()
                    assert stream is not None  # opened with the writer
                    stream.close()
                stream = fs.open_output_stream(posixpath.join(root, f"part-{part:05d}.parquet"))
                writer, in_file, part = pq.ParquetWriter(stream, schema), 0, part + 1
            writer.write_table(table.cast(schema))
            total, in_file = total + table.num_rows, in_file + table.num_rows
            on_rows(total)
        if writer is None:
            stream = fs.open_output_stream(posixpath.join(root, "part-00000.parquet"))
            writer = pq.ParquetWriter(stream, schema)
    finally:
        if writer is not None:
            writer.close()
            assert stream is not None  # opened with the writer
            stream.close()
    return total


@dataclass(frozen=True)
class StreamResult:
    out: str
    rows: int  # rows written
    quarantined: int  # images that could not be decoded (records under <out>/_rayssl/quarantine)
    seconds: float  # from building the dataset to the last row written
    images_per_s: float  # (rows + quarantined) / seconds: every image read counts


def stream_to_parquet(
    ds: ray.data.Dataset,
    inp: InferenceInput,
    out_uri: str,
    schema: pa.Schema,
    to_table: Callable[[dict[str, np.ndarray]], pa.Table],
    job: str,
    storage_cfg: StorageConfig,
    started: float,
    show_progress: bool = True,
) -> StreamResult:
    """Run `ds` (its batches: numpy dicts from the model actors), write them through `to_table` as
    parquet parts under `out_uri` with a live progress display, then print a one-line summary."""
    display = ProgressDisplay(job, inp.rows, "image") if show_progress else None

    def on_rows(done: int) -> None:
        if display is not None:
            display.update(done, images_per_s=done / max(time.monotonic() - started, 1e-9))

    batches = (to_table(b) for b in ds.iter_batches(batch_size=None, batch_format="numpy"))
    try:
        rows = write_parts(batches, out_uri, schema, storage_cfg, on_rows)
    finally:
        if display is not None:
            display.close()
    seconds = time.monotonic() - started
    bad = quarantined(out_uri, storage_cfg)
    result = StreamResult(out_uri, rows, bad, seconds, (rows + bad) / max(seconds, 1e-9))
    where = f" (see {storage.join(out_uri, QUARANTINE_RUN, quarantine.QUARANTINE_DIR)})" if bad else ""
    print(
        f"{job}: {rows:,} rows -> {out_uri}, {bad:,} quarantined{where}, {result.images_per_s:,.0f} images/s over {seconds:.1f} s",
        flush=True,
    )
    return result


@dataclass(frozen=True)
class StreamOptions:
    """The options predict and embed share: where INPUT and OUT are, and how the job runs."""

    input_uri: str
    out_uri: str
    split: str | None  # of a shard set; None: every split
    batch_size: int  # images per model call
    actors: int | None  # model actors; None: actor_pool's default
    storage_cfg: StorageConfig
    show_progress: bool


def run_model_actors(
    opts: StreamOptions,
    job: str,
    doing: str,
    model: str,
    spec: ImageSpec,
    actor: type,
    actor_args: tuple[Any, ...],
    schema: Callable[[InferenceInput], pa.Schema],
    to_table: Callable[[dict[str, np.ndarray], InferenceInput], pa.Table],
) -> StreamResult:
    """The whole job once the model is known: open INPUT, clear OUT, decode with `spec`, run
    `actor(*actor_args)` on the actor pool, and write its batches through `to_table` as parquet parts
    of `schema` (both given the opened input). `doing` and `model` name the job in the log line
    ("predicting ... with <model>"), `job` in the progress display and the summary.

    Needs a running Ray (train.launch.init_ray). Returns rows written, images quarantined, images/s."""
    inp = open_input(opts.input_uri, opts.split, opts.storage_cfg)
    out_uri = prepare_output(opts.out_uri, opts.storage_cfg)
    pool, gpus = actor_pool(opts.actors)
    get_logger().info(
        "%s %d images of %s with %s on %d actor(s)%s -> %s",
        doing,
        inp.rows,
        inp.uri,
        model,
        pool.max_size,
        " with a GPU each" if gpus else "",
        out_uri,
    )
    started = time.monotonic()
    ds = decoded_dataset(inp, spec, out_uri, opts.storage_cfg).map_batches(
        actor, fn_constructor_args=actor_args, batch_size=opts.batch_size, batch_format="numpy", compute=pool, num_gpus=gpus
    )
    return stream_to_parquet(ds, inp, out_uri, schema(inp), lambda b: to_table(b, inp), job, opts.storage_cfg, started, opts.show_progress)


def key_columns(inp: InferenceInput, batch: dict[str, np.ndarray]) -> dict[str, pa.Array]:
    """The identifying columns of an output table: sample_id + split (shards) or path (images)."""
    columns = {inp.key_column: pa.array(batch["key"].tolist(), pa.string())}
    if inp.kind == "shards":
        columns["split"] = pa.array(batch["split"].tolist(), pa.string())
    return columns


def key_fields(inp: InferenceInput) -> list[pa.Field]:
    return [pa.field(inp.key_column, pa.string())] + ([pa.field("split", pa.string())] if inp.kind == "shards" else [])
