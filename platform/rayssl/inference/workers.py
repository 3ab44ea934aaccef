"""What runs inside Ray Data's workers for predict (and the decode for embed): kept light on imports.

A Ray Data actor imports the module of its class before it can start; on a 2-core machine that
import is most of a small predict job's wall time. This module therefore imports only torch, the
decoder and storage: not the methods, models, kornia or the shard builders' dependencies (sklearn)
that rayssl.inference.predict pulls in on the driver.
"""

from __future__ import annotations

import io
import json
import posixpath
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from rayssl.config import StorageConfig
from rayssl.data import quarantine, storage
from rayssl.data.decode import ImageSpec, QuarantineRecord, decode_batch

if TYPE_CHECKING:
    from rayssl.inference.inputs import InferenceInput

MODEL, PREPROCESS = "model.pt2", "preprocess.json"  # the files of an export directory (rayssl.inference.export)
QUARANTINE_RUN = "_rayssl"  # <out>/_rayssl/quarantine/*.jsonl: a leading "_" keeps pyarrow and Ray from reading it as data


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float32 in [-1, 1]: x / 127.5 - 1, the very ops of rayssl.data.transforms.normalise
    (training's evaluation images), repeated here so the workers need not import kornia with it."""
    return pixels.float().div_(127.5).sub_(1.0)


def load_exported(export_uri: str, storage_cfg: StorageConfig, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(the exported program as a callable module on `device`, preprocess.json) from an export directory."""
    program = torch.export.load(io.BytesIO(storage.read_bytes(storage.join(export_uri, MODEL), storage_cfg)))
    if device != "cpu":
        from torch.export.passes import move_to_device_pass

        # The supported way to move an exported program: it rewrites device constants in the graph too.
        program = move_to_device_pass(program, device)
    return program.module(), json.loads(storage.read_bytes(storage.join(export_uri, PREPROCESS), storage_cfg))


class DecodeImages:
    """Ray Data batch function (pyarrow): raw rows -> decoded images; the undecodable quarantined alone.

    Output columns: key (sample_id or path relative to INPUT) [N_ok], split [N_ok], label int64 [N_ok]
    (-1 where the row has none), image uint8 [N_ok, H, W, C]."""

    def __init__(self, inp: InferenceInput, spec: ImageSpec, out_uri: str, storage_cfg: StorageConfig) -> None:
        self.kind, self.spec, self.out_uri, self.storage_cfg = inp.kind, spec, out_uri, storage_cfg
        self.split_by_file = dict(zip(inp.files, inp.split_of))
        self.root = storage.resolve(inp.uri, storage_cfg)[1]

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        n = batch.num_rows
        if self.kind == "shards":
            keys, images = batch.column("sample_id").to_pylist(), batch.column("image").to_pylist()
            indices, labels = batch.column("index").to_numpy(), batch.column("label").fill_null(-1).to_numpy()
            splits = [self.split_by_file.get(p, "?") for p in batch.column("path").to_pylist()]
        else:
            keys = [posixpath.relpath(p, self.root) for p in batch.column("path").to_pylist()]
            images, indices, labels, splits = batch.column("bytes").to_pylist(), np.full(n, -1), np.full(n, -1), ["images"] * n
        ok, pixels, bad = decode_batch(keys, indices, images, self.spec)
        self._quarantine([splits[i] for i in np.flatnonzero(~ok)], bad)
        return {
            "key": np.array(keys, dtype=object)[ok],
            "split": np.array(splits, dtype=object)[ok],
            "label": np.asarray(labels, dtype=np.int64)[ok],
            "image": pixels,
        }

    def _quarantine(self, splits: list[str], bad: list[QuarantineRecord]) -> None:
        """The bad rows (in decode_batch's order, `splits` theirs), one file per split: quarantine.write_records
        names a file by its ids, so a retried task overwrites it instead of counting its rows twice."""
        for split in sorted(set(splits)):
            quarantine.write_records(
                storage.join(self.out_uri, QUARANTINE_RUN), split, [r for r, s in zip(bad, splits) if s == split], self.storage_cfg
            )


class ClassifyBatch:
    """Ray Data actor: decoded images -> softmax top-k with the exported program.

    In: key, split, label, image uint8 [N, H, W, C]. Out: key, split, label, top_k_index int64 [N, k],
    top_k_probs float32 [N, k] (column 0 is the prediction)."""

    def __init__(self, export_uri: str, storage_cfg: StorageConfig, top_k: int) -> None:
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, pre = load_exported(export_uri, storage_cfg, self.device)
        self.top_k = min(top_k, len(pre["classes"]))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {k: batch[k] for k in ("key", "split", "label")}
        if not len(batch["key"]):  # every image of the block was quarantined; the program wants a batch >= 1
            return {**out, "top_k_index": np.zeros((0, self.top_k), np.int64), "top_k_probs": np.zeros((0, self.top_k), np.float32)}
        pixels = torch.from_numpy(batch["image"]).to(self.device).permute(0, 3, 1, 2)
        with torch.inference_mode():
            probs = torch.softmax(self.model(normalise(pixels)).float(), dim=1)
            top_p, top_i = probs.topk(self.top_k, dim=1)
        return {**out, "top_k_index": top_i.cpu().numpy(), "top_k_probs": top_p.cpu().numpy()}
