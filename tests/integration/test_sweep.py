"""Fine-tuning and the Tune sweep on a local Ray with tiny generated data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from heads import BIN, kill_leftovers
from helpers import tiny_config
from PIL import Image

from rayssl.config import FinetuneConfig, SweepConfig, load_config, to_dict
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
         "max_concurrent_trials=2", *FINETUNE, "finetune.train.epochs=1", *overrides],  # 1 epoch: trials stay short
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


def terminated_trials(sweep_dir: Path) -> set[str]:
    """Trial ids that Tune's saved experiment state (what Tuner.restore reads) records as TERMINATED."""
    states = sorted(sweep_dir.glob("experiment_state-*.json"))
    try:
        rows = json.loads(states[-1].read_text())["trial_data"] if states else []
    except json.JSONDecodeError:
        return set()  # read while Tune was writing it
    return {trial["trial_id"] for trial in (json.loads(row[0]) for row in rows) if trial["status"] == "TERMINATED"}


def checkpoint_epochs(trial_dir: Path) -> dict[str, int]:
    """Checkpoint dir name -> the epoch it resumes at (meta.json "epoch" is the next epoch to run)."""
    return {meta.parent.name: json.loads(meta.read_text())["epoch"] for meta in trial_dir.glob("checkpoint_*/meta.json")}


def test_killed_sweep_restores_without_rerunning_finished_trials(ray_local, local_shards, tmp_path):
    # One trial at a time, so that the kill lands after the first trial and before the last.
    cfg = sweep_config(local_shards, str(tmp_path / "runs"), "budgets=[2]", "max_concurrent_trials=1")
    config_file = tmp_path / "sweep.yaml"
    config_file.write_text(yaml.safe_dump(to_dict(cfg)))
    ray_tmp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # the killed sweep's own Ray, found by path below
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)
    sweep_dir = tmp_path / "runs" / "sweep"
    epochs = cfg.finetune.train.epochs
    log = tmp_path / "killed_sweep.log"
    with log.open("wb") as out:  # the child keeps its own copy of the file descriptor
        proc = subprocess.Popen(
            [str(BIN / "rayssl"), "sweep", "--config", str(config_file)], env=env, start_new_session=True,
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        # Kill as soon as the saved experiment state records the first trial as finished.
        deadline = time.monotonic() + 600
        while not terminated_trials(sweep_dir) and time.monotonic() < deadline:
            assert proc.poll() is None, f"the sweep ended before it could be killed:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kill_leftovers(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    finished = terminated_trials(sweep_dir)
    assert len(finished) == 1, f"expected exactly one finished trial at the kill, got {finished}"
    (trial_id,) = finished
    before = checkpoint_epochs(sweep_dir / "trials" / f"trial_{trial_id}")
    assert max(before.values()) == epochs, f"trial {trial_id} is recorded finished without its last checkpoint"

    rows = run_sweep(cfg)  # same name: Tuner.restore
    assert sorted(r["variant"] for r in rows) == ["+ inversion loss", "supervised only"]
    trial_dirs = sorted((sweep_dir / "trials").glob("trial_*"))
    assert len(trial_dirs) == 2 and all(max(checkpoint_epochs(d).values()) == epochs for d in trial_dirs)
    after = checkpoint_epochs(sweep_dir / "trials" / f"trial_{trial_id}")
    assert after == before, f"trial {trial_id} was trained again after the restore"
