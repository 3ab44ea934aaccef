"""Fine-tuning and the Tune sweep on a local Ray with tiny generated data."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_config
from PIL import Image

from rayssl.config import FinetuneConfig, SweepConfig, load_config
from rayssl.eval.classifier import score_on_test_split
from rayssl.train.launch import run_finetune, run_pretrain
from rayssl.tune.sweep import run_sweep

pytestmark = pytest.mark.integration


FINETUNE = [
    "finetune.data.image_size=8", "finetune.data.batch_size=8", "finetune.model.width=8", "finetune.model.embed_dim=16",
    "finetune.semisup.num_classes=2", "finetune.semisup.val_per_class=4", "finetune.semisup.labelled_batch_size=4",
    "finetune.train.epochs=2", "finetune.train.num_workers=1", "finetune.train.max_failures=0",
]


def sweep_config(shards: str, storage: str, *overrides: str) -> SweepConfig:
    return load_config(
        SweepConfig, None,
        [f"storage_path={storage}", f"finetune.data.shards={shards}", "budgets=[1, 4]", "samples=1",
         "max_concurrent_trials=2", *FINETUNE, *overrides],
    )


def test_finetune_with_inversion_from_pretrained(ray_local, local_shards, tmp_path):
    pretrained = run_pretrain(tiny_config(local_shards, str(tmp_path / "runs"), "nat"))
    cfg = load_config(
        FinetuneConfig, None,
        [f"data.shards={local_shards}", f"run.storage_path={tmp_path / 'runs'}", f"init={pretrained.run_dir}",
         "semisup.alpha=0.1", *(o.removeprefix("finetune.") for o in FINETUNE)],
    )
    outcome = run_finetune(cfg)
    assert 0.0 <= outcome.metrics["val_acc"] <= 1.0 and outcome.metrics["epoch"] == 1
    assert 0.0 <= score_on_test_split(cfg, outcome.checkpoint, outcome.run_dir) <= 1.0


def test_sweep_writes_table_plot_and_retries_a_crashed_trial(ray_local, local_shards, tmp_path):
    marker = tmp_path / "crashed"
    cfg = sweep_config(local_shards, str(tmp_path / "runs"), "finetune.faults.crash_rank=0",
                       "finetune.faults.crash_at_step=1", f"finetune.faults.crash_marker={marker}")
    rows = run_sweep(cfg)
    assert marker.exists(), "the fault was never injected"
    # 2 budgets x 2 variants (no pretrained runs given) = 4 trials, all selected and scored.
    assert sorted((r["budget"], r["variant"]) for r in rows) == [
        (1, "+ inversion loss"), (1, "supervised only"), (4, "+ inversion loss"), (4, "supervised only")
    ]
    assert all(r["alpha"] == 0 for r in rows if r["variant"] == "supervised only")
    assert all(r["alpha"] > 0 for r in rows if r["variant"] != "supervised only")
    sweep_dir = tmp_path / "runs" / "sweep"
    report = json.loads((sweep_dir / "label_efficiency.json").read_text())
    assert len(report["rows"]) == 4
    assert "| labels / class | supervised only | + inversion loss |" in (sweep_dir / "label_efficiency.md").read_text()
    with Image.open(sweep_dir / "label_efficiency.png") as png:
        assert png.size[0] > 300

    # Running the same sweep again restores it: no trial is run a second time.
    trial_dirs = sorted(p.name for p in (sweep_dir / "trials").iterdir())
    again = run_sweep(cfg)
    assert sorted(p.name for p in (sweep_dir / "trials").iterdir()) == trial_dirs
    assert [r["checkpoint"] for r in again] == [r["checkpoint"] for r in rows]
