"""Rank 0's TensorBoard writer (rayssl.train.tensorboard), read back with TensorBoard's own reader."""

from __future__ import annotations

import torch

from helpers import tensorboard_events
from rayssl.config import StorageConfig
from rayssl.train.tensorboard import RunWriter


def test_round_metrics_become_scalars_and_images(tmp_path):
    writer = RunWriter(str(tmp_path / "run"), StorageConfig())
    writer.scalars(
        {"epoch": 0, "global_step": 10, "loss": 1.5, "lr": 0.003, "quarantined": 2, "status": "ok", "run_dir": "/x", "done": True}, 10
    )
    writer.scalars({"loss": 0.5, "lr": 0.001, "quarantined": 2}, 20)
    writer.images({"reconstructions": torch.rand(3, 8, 12)}, 20)
    writer.close()
    events = tensorboard_events(tmp_path / "run" / "tensorboard")
    assert sorted(events.Tags()["scalars"]) == ["loss", "lr", "quarantined"]  # no positions, strings or flags
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(10, 1.5), (20, 0.5)]
    assert events.Tags()["images"] == ["reconstructions"]
    image = events.Images("reconstructions")[0]
    assert (image.step, image.width, image.height) == (20, 12, 8)
