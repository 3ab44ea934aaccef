"""Checkpoint files (rayssl.train.checkpoints) without Ray: what an in-process run keeps on storage."""

from __future__ import annotations

from pathlib import Path

import torch

from rayssl.config import StorageConfig
from rayssl.train import checkpoints


def local_checkpoint(directory: Path, step: int) -> Path:
    checkpoints.save_local(directory, {"w": torch.full((2,), float(step))}, {}, {}, {"epoch": step // 10, "global_step": step})
    return directory


def test_persist_copies_the_checkpoint_and_keeps_the_newest_by_step(tmp_path):
    run_dir = tmp_path / "run"
    uris = [
        checkpoints.persist(local_checkpoint(tmp_path / f"local_{step}", step), str(run_dir), StorageConfig(), num_to_keep=2)
        for step in (10, 20, 30)
    ]
    kept = sorted(p.name for p in run_dir.glob("checkpoint_*"))
    assert kept == sorted(Path(u).name for u in uris[1:]), "the step-10 checkpoint should be the one deleted"
    newest = checkpoints.latest_checkpoint(str(run_dir), StorageConfig())
    assert newest == uris[-1]
    model, meta = checkpoints.load_model_state(newest, StorageConfig())
    assert meta == {"epoch": 3, "global_step": 30} and torch.equal(model["w"], torch.full((2,), 30.0))
