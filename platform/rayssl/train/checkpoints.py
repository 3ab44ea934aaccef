"""Checkpoint files (plain torch, no Ray): what a pretraining checkpoint directory holds.

model.pt      backbone + head state dict (unwrapped from DDP)
optimizer.pt  optimiser state dict
method.pt     method state (NAT: the assignment table)
meta.json     {"epoch": next epoch to run, "global_step": ..., "metrics": {...}}
"""

from __future__ import annotations

import datetime
import io
import json
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch

from rayssl.config import StorageConfig
from rayssl.data import storage

META = "meta.json"
FILES = ("model.pt", "optimizer.pt", "method.pt", META)  # a checkpoint is complete when all are there


def save_local(directory: Path, model: dict, optimizer: dict, method: dict, meta: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model, directory / "model.pt")
    torch.save(optimizer, directory / "optimizer.pt")
    torch.save(method, directory / "method.pt")
    (directory / META).write_text(json.dumps(meta))


def load_local(directory: Path) -> tuple[dict, dict, dict, dict]:
    """(model, optimizer, method, meta) state from a local checkpoint directory."""
    load = lambda name: torch.load(directory / name, map_location="cpu", weights_only=True)  # noqa: E731
    return load("model.pt"), load("optimizer.pt"), load("method.pt"), json.loads((directory / META).read_text())


def latest_checkpoint(run_dir: str, storage_cfg: StorageConfig) -> str | None:
    """URI of the checkpoint with the highest global step under `run_dir`, or None."""
    fs, path = storage.resolve(run_dir, storage_cfg)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    best: tuple[int, str] | None = None
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=False)):
        if info.type != pafs.FileType.Directory or not info.base_name.startswith("checkpoint_"):
            continue
        if not all(storage.exists(storage.join(run_dir, info.base_name, name), storage_cfg) for name in FILES):
            continue  # a checkpoint still being uploaded, or one Ray is deleting
        step = read_meta(storage.join(run_dir, info.base_name), storage_cfg)["global_step"]
        if best is None or step > best[0]:
            best = (step, storage.join(run_dir, info.base_name))
    return best[1] if best else None


def persist(directory: Path, run_dir: str, storage_cfg: StorageConfig, num_to_keep: int) -> str:
    """Copy a local checkpoint directory to `<run_dir>/checkpoint_<time>` and delete all but the
    `num_to_keep` highest-step checkpoints there: what Ray Train does with a reported checkpoint, for
    a worker loop that runs without Ray Train (loop.train_in_process). Returns the new URI.

    meta.json goes last, so latest_checkpoint never takes a half-written directory for a checkpoint.
    """
    uri = storage.join(run_dir, f"checkpoint_{datetime.datetime.now():%Y-%m-%d_%H-%M-%S.%f}")
    for name in sorted(FILES, key=lambda n: n == META):
        storage.write_bytes(storage.join(uri, name), (directory / name).read_bytes(), storage_cfg)
    fs, path = storage.resolve(run_dir, storage_cfg)
    complete = []
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=False)):
        if (
            info.type == pafs.FileType.Directory
            and info.base_name.startswith("checkpoint_")
            and storage.exists(storage.join(run_dir, info.base_name, META), storage_cfg)
        ):
            complete.append((read_meta(storage.join(run_dir, info.base_name), storage_cfg)["global_step"], info.base_name))
    for _, name in sorted(complete, reverse=True)[num_to_keep:]:
        fs.delete_dir(storage.resolve(storage.join(run_dir, name), storage_cfg)[1])
    return uri


def load_model_state(checkpoint_uri: str, storage_cfg: StorageConfig) -> tuple[dict, dict]:
    """(model state dict, meta) from a checkpoint directory on any URI."""
    model = torch.load(
        io.BytesIO(storage.read_bytes(storage.join(checkpoint_uri, "model.pt"), storage_cfg)), map_location="cpu", weights_only=True
    )
    return model, read_meta(checkpoint_uri, storage_cfg)


def read_meta(checkpoint_uri: str, storage_cfg: StorageConfig) -> dict[str, Any]:
    """A checkpoint's meta.json: epoch (the next round to run), global_step, metrics, ledger."""
    return json.loads(storage.read_bytes(storage.join(checkpoint_uri, META), storage_cfg))
