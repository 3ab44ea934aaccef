"""`rayssl runs` (rayssl.train.runs) on a directory of runs laid out as the platform writes them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rayssl.cli import main
from rayssl.config import FinetuneConfig, PretrainConfig, StorageConfig, dump_yaml, load_config
from rayssl.train import runs
from rayssl.train.checkpoints import save_local


def make_run(root: Path, name: str, cfg, rounds_done: int, metrics: dict | None = None) -> Path:
    """A run directory: config.yaml and (if rounds_done) one checkpoint whose meta says rounds_done."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    if rounds_done:
        save_local(
            run_dir / "checkpoint_2026-01-01_00-00-00.000000",
            {},
            {},
            {},
            {"epoch": rounds_done, "global_step": 10 * rounds_done, "metrics": metrics or {}},
        )
    return run_dir


@pytest.fixture
def runs_root(tmp_path) -> Path:
    root = tmp_path / "runs"
    nat = load_config(PretrainConfig, None, ["train.epochs=3"])
    finished = make_run(root, "nat_finished", nat, 3, {"loss": 1.2})
    (finished / "eval.json").write_text(
        json.dumps({"results": [{"knn_acc": 0.5, "linear_acc": 0.6}, {"knn_acc": 0.9, "linear_acc": 0.95}]})
    )
    diverged = make_run(root, "nat_diverged", nat, 1, {"loss": 3.0})
    (diverged / runs.STATUS_FILE).write_text(json.dumps({"status": "diverged", "diverged_at_step": 17, "epoch": 1}))
    running = make_run(root, "nat_running", nat, 1, {"loss": 2.0})
    runs.write_heartbeat(str(running), StorageConfig(), global_step=15, round_index=1)
    interrupted = make_run(root, "nat_interrupted", nat, 2, {"loss": 1.5})
    (interrupted / runs.HEARTBEAT_FILE).write_text(json.dumps({"updated": time.time() - 3600, "global_step": 20, "round": 2}))
    fixmatch = load_config(FinetuneConfig, None, ["fixmatch.weight=1.0", "schedule.steps=100", "schedule.eval_every=50"])
    make_run(root / "sweep" / "trials", "trial_1", fixmatch, 2, {"val_acc": 0.875, "loss": 0.1})
    (root / "sweep" / "label_efficiency.json").write_text("{}")  # a sweep directory is not a run
    return root


def test_lists_each_run_with_its_status_rounds_and_headline(runs_root):
    found = {r.name: r for r in runs.list_runs(str(runs_root), stale_after_s=600)}
    assert sorted(found) == ["nat_diverged", "nat_finished", "nat_interrupted", "nat_running", "sweep/trials/trial_1"]
    assert {n: r.status for n, r in found.items()} == {
        "nat_diverged": "diverged",
        "nat_finished": "finished",
        "nat_interrupted": "interrupted",
        "nat_running": "running",
        "sweep/trials/trial_1": "finished",
    }
    assert (found["nat_finished"].rounds_done, found["nat_finished"].rounds_total) == (3, 3)
    assert found["nat_finished"].headline == "kNN 90.0%, linear 95.0%"  # the run's features, not the random-init row
    assert found["nat_diverged"].headline == "loss not finite at step 17"
    assert (found["nat_running"].rounds_done, found["nat_running"].headline) == (1, "loss 2")
    trial = found["sweep/trials/trial_1"]
    assert (trial.kind, trial.rounds_total, trial.headline) == ("finetune: supervised + FixMatch", 2, "val_acc 87.5%")
    assert trial.latest_checkpoint == "checkpoint_2026-01-01_00-00-00.000000"


def test_a_heartbeat_goes_stale(runs_root):
    summary = runs.summarise_run(str(runs_root / "nat_running"), str(runs_root), StorageConfig(), stale_after_s=600, now=time.time() + 601)
    assert summary.status == "interrupted"


def test_cli_lists_and_shows(runs_root, capsys):
    assert main(["runs", str(runs_root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"5 runs under {runs_root}:") and "| nat_diverged | nat | diverged | 1/3 |" in out
    assert main(["runs", "show", "nat_finished", "--path", str(runs_root)]) == 0
    out = capsys.readouterr().out
    assert "method: nat" in out and '"loss": 1.2' in out and "eval.json" in out
    assert main(["runs", "show", "no_such_run", "--path", str(runs_root)]) == 2
    assert "no run at" in capsys.readouterr().err
