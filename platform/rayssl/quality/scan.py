"""The quality scan's one streaming pass: shards of every split -> signatures on Ray Data workers.

    read_parquet(split shards) -> map_batches(SignBatch) -> iter_batches on the driver

The driver keeps only the signature columns (about 1,700 bytes per image: the 28 px grey analysis image
and the 16 px colour thumbnail),
never the encoded images; undecodable rows go to the report's quarantine like training's.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import ray.data

from rayssl.config import StorageConfig
from rayssl.data import quarantine, storage
from rayssl.data.decode import DecodeError, QuarantineRecord
from rayssl.data.ray_data import quiet_ray_data
from rayssl.data.shards import list_shards, read_manifest
from rayssl.quality.photos import THUMB_SIZE
from rayssl.quality.signatures import ANALYSIS_SIZE, Signatures, signature

BATCH_ROWS = 256


class SignBatch:
    """Ray Data batch function: shard rows -> one signature row per decodable image.

    Output columns: index int64, sample_id str, label int64 (-1 unlabelled), pixel_sha str,
    height/width int64, mode str, mean/std/entropy float64, analysis uint8 [N, S, S], thumb uint8 [N, 3, 16, 16].
    """

    def __init__(self, split: str, out_uri: str, storage_cfg: StorageConfig) -> None:
        self.split, self.out_uri, self.storage_cfg = split, out_uri, storage_cfg

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        columns: dict[str, list] = {
            k: []
            for k in ("index", "sample_id", "label", "pixel_sha", "height", "width", "mode", "mean", "std", "entropy", "analysis", "thumb")
        }
        bad = []
        labels = batch.column("label").fill_null(-1).to_pylist()
        for index, sample_id, label, data in zip(
            batch.column("index").to_pylist(), batch.column("sample_id").to_pylist(), labels, batch.column("image").to_pylist()
        ):
            try:
                sig = signature(data)
            except DecodeError as exc:
                bad.append(QuarantineRecord(sample_id, index, str(exc)))
                continue
            for key, value in (
                ("index", index),
                ("sample_id", sample_id),
                ("label", label),
                ("pixel_sha", sig.pixel_sha),
                ("height", sig.height),
                ("width", sig.width),
                ("mode", sig.mode),
                ("mean", sig.mean),
                ("std", sig.std),
                ("entropy", sig.entropy),
                ("analysis", sig.analysis),
                ("thumb", sig.thumb),
            ):
                columns[key].append(value)
        quarantine.write_records(self.out_uri, self.split, bad, self.storage_cfg)
        out = {k: np.asarray(v) for k, v in columns.items() if k not in ("analysis", "thumb")}
        out["analysis"] = np.stack(columns["analysis"]) if columns["analysis"] else np.zeros((0, ANALYSIS_SIZE, ANALYSIS_SIZE), np.uint8)
        out["thumb"] = np.stack(columns["thumb"]) if columns["thumb"] else np.zeros((0, 3, THUMB_SIZE, THUMB_SIZE), np.uint8)
        return out


def scan(shards_uri: str, out_uri: str, storage_cfg: StorageConfig) -> Signatures:
    """One streaming pass over every split of the shard set; the quarantine goes under `out_uri`."""
    manifest = read_manifest(shards_uri, storage_cfg)
    fs, _ = storage.resolve(shards_uri, storage_cfg)
    quiet_ray_data()
    parts: dict[str, list] = {
        k: []
        for k in (
            "split",
            "index",
            "sample_id",
            "label",
            "pixel_sha",
            "height",
            "width",
            "mode",
            "mean",
            "std",
            "entropy",
            "analysis",
            "thumb",
        )
    }
    rows_read = {}
    for split in manifest["splits"]:
        shards = list_shards(shards_uri, split, storage_cfg)
        rows_read[split] = sum(s.rows for s in shards)
        ds = ray.data.read_parquet([storage.resolve(s.uri, storage_cfg)[1] for s in shards], filesystem=fs)
        ds = ds.map_batches(SignBatch(split, out_uri, storage_cfg), batch_format="pyarrow", batch_size=BATCH_ROWS)
        for batch in ds.iter_batches(batch_size=4096, batch_format="numpy"):
            for key in parts:
                if key == "split":
                    parts[key].append(np.full(len(batch["index"]), split))
                else:
                    parts[key].append(batch[key])
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    return Signatures(
        split=[str(s) for s in cat["split"]],
        index=cat["index"].astype(np.int64),
        sample_id=[str(s) for s in cat["sample_id"]],
        label=cat["label"].astype(np.int64),
        pixel_sha=[str(s) for s in cat["pixel_sha"]],
        height=cat["height"].astype(np.int64),
        width=cat["width"].astype(np.int64),
        mode=[str(s) for s in cat["mode"]],
        mean=cat["mean"].astype(np.float64),
        std=cat["std"].astype(np.float64),
        entropy=cat["entropy"].astype(np.float64),
        analysis=cat["analysis"].astype(np.uint8).reshape(-1, ANALYSIS_SIZE, ANALYSIS_SIZE),
        thumb=cat["thumb"].astype(np.uint8).reshape(-1, 3, THUMB_SIZE, THUMB_SIZE),
        rows_read=rows_read,
    )
