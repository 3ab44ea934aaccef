"""MAE pretraining on a local Ray with tiny generated data and 2 Train workers."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from helpers import tensorboard_events, tiny_config
from rayssl.eval.run import run_eval
from rayssl.train.launch import run_pretrain

pytestmark = pytest.mark.integration


MAE = (
    "method=mae",
    "model.name=vit",
    "model.vit.patch_size=4",
    "model.vit.width=16",
    "model.vit.depth=1",
    "model.vit.heads=2",
    "mae.decoder_width=8",
    "mae.decoder_depth=1",
    "mae.decoder_heads=2",
    "mae.recon_images=4",
)


def test_mae_pretrain_reconstructions_resume_and_eval(ray_local, local_shards, tmp_path):
    cfg = tiny_config(local_shards, str(tmp_path / "runs"), "mae", *MAE)
    outcome = run_pretrain(cfg)
    assert outcome.metrics["global_step"] == 6 and outcome.metrics["loss"] > 0

    grid = Path(outcome.run_dir) / "reconstructions" / "latest.png"
    with Image.open(grid) as img:
        img.load()
        # 3 rows (original, masked, reconstruction) x 4 images of 8x8 with 2-px padding
        assert img.size == (4 * 10 + 2, 3 * 10 + 2)
    assert (Path(outcome.run_dir) / "reconstructions" / "epoch_0001.png").exists()
    events = tensorboard_events(Path(outcome.run_dir) / "tensorboard")
    assert [e.step for e in events.Images("reconstructions")] == [3, 6] and [e.step for e in events.Scalars("loss")] == [3, 6]

    longer = tiny_config(local_shards, str(tmp_path / "runs"), "mae", *MAE, "train.epochs=3")
    resumed = run_pretrain(longer)
    assert resumed.metrics["epoch"] == 2 and resumed.metrics["global_step"] == 9  # continued, not restarted

    result = run_eval(longer, resumed.checkpoint)
    assert [r["features"] for r in result["results"]] == ["random init", "MAE (epoch 3)"]
