"""SimCLR and the masked contrastive objective on a local Ray: two views from Ray Data, 2 Train
workers sharing negatives, fine-tuning from SimCLR's backbone, frozen-feature eval of the masked one's."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from test_sweep import FINETUNE

from helpers import tensorboard_events, tiny_config
from rayssl.config import FinetuneConfig, load_config
from rayssl.eval.run import run_eval
from rayssl.train.launch import run_finetune, run_pretrain

pytestmark = pytest.mark.integration

VIEWS = (
    "data.augment.crop_scale_min=0.5",
    "data.augment.color_jitter=0.4",
    "data.augment.blur_p=0.5",
    "contrastive.projection_hidden=16",
    "contrastive.projection_dim=8",
)


def test_simclr_pretrain_eval_and_finetune(ray_local, local_shards, tmp_path):
    # Resuming is method-agnostic (SimCLR's state is its weights): test_pretrain, test_driver_kill and
    # test_multinode resume; this run goes 3 epochs in one go.
    runs = str(tmp_path / "runs")
    cfg = tiny_config(local_shards, runs, "simclr", "method=simclr", *VIEWS, "train.epochs=3")
    outcome = run_pretrain(cfg)
    # 48 images / 2 workers / batch 8 = 3 steps per epoch
    assert outcome.metrics["epoch"] == 2 and outcome.metrics["global_step"] == 9
    # NT-Xent of unit-norm projections over a global batch of 2 x 8 pairs (32 rows, 31 candidates each) lies
    # between log(1 + 30 e^(-2/t)) (every positive at similarity 1, every negative at -1) and 2/t + log(31).
    t = cfg.contrastive.temperature
    losses = [e.value for e in tensorboard_events(Path(outcome.run_dir) / "tensorboard").Scalars("loss")]
    assert len(losses) == 3 and losses[-1] == pytest.approx(outcome.metrics["loss"])  # one per epoch
    assert all(math.log(1 + 30 * math.exp(-2 / t)) < v < 2 / t + math.log(31) for v in losses), losses

    finetune = load_config(
        FinetuneConfig,
        None,
        [
            f"data.shards={local_shards}",
            f"run.storage_path={runs}",
            f"init={outcome.run_dir}",
            "optim.lr=0.01",
            "schedule.head_warmup_steps=5",
            "schedule.backbone_lr_scale=0.3",
            *(o.removeprefix("finetune.") for o in FINETUNE if "model." not in o),
        ],
    )
    tuned = run_finetune(finetune, report=lambda metrics: None)  # in this process, as a sweep trial runs: no Train actors to start
    assert tuned.metrics["global_step"] == 40 and tuned.metrics["val_acc"] >= 0.85  # separable blobs; chance is 50%


def test_masked_contrastive_pretrain_and_eval(ray_local, local_shards, tmp_path):
    cfg = tiny_config(
        local_shards,
        str(tmp_path / "runs"),
        "mc",
        "method=masked_contrastive",
        *VIEWS,
        "train.epochs=1",
        "model.name=vit",
        "model.vit.patch_size=4",
        "model.vit.width=16",
        "model.vit.depth=1",
        "model.vit.heads=2",
        "mae.mask_ratio=0.5",
        "mae.decoder_width=8",
        "mae.decoder_depth=1",
        "mae.decoder_heads=2",
    )
    outcome = run_pretrain(cfg)
    assert outcome.metrics["global_step"] == 3
    t = cfg.contrastive.temperature  # NT-Xent bounds of a global batch of 16 pairs, as for SimCLR above
    assert math.log(1 + 30 * math.exp(-2 / t)) < outcome.metrics["contrastive"] < 2 / t + math.log(31)
    mixed = 0.1 * outcome.metrics["contrastive"] + 0.9 * outcome.metrics["reconstruction"]
    assert outcome.metrics["loss"] == pytest.approx(mixed, rel=1e-4)  # the weight sets the mix
    result = run_eval(cfg, outcome.checkpoint)
    assert result["results"][1]["features"] == "MASKED_CONTRASTIVE (epoch 1)"
