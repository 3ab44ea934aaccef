"""`rayssl runs`: the runs under a storage path (local or s3://), read from the files they write.

A run directory is any directory holding `config.yaml` (pretraining and fine-tuning runs, and the
trials of a sweep under `<sweep>/trials/`). Its status, from those files:

    diverged     stopped.json says the loss was not finite
    failed       stopped.json says the run gave up (workers kept failing, too many bad images)
    finished     the latest checkpoint is the last round's
    running      rank 0's heartbeat.json was written within `stale_after_s`
    interrupted  none of the above: the process went away (a killed driver, a lost cluster);
                 the same command resumes it from the latest checkpoint
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs
import yaml

from rayssl.config import ConfigError, FinetuneConfig, StorageConfig, from_dict
from rayssl.data import storage
from rayssl.methods import registry
from rayssl.train import checkpoints

STATUS_FILE = "stopped.json"  # written only when a run stops early (rank 0, or the driver for "failed")
HEARTBEAT_FILE = "heartbeat.json"  # rank 0, at most every HEARTBEAT_EVERY_S and at every round's end
HEARTBEAT_EVERY_S = 30.0
EVAL_FILE = "eval.json"  # the frozen-feature evaluation after pretraining (rayssl.eval.run)
CONFIG_FILE = "config.yaml"
MAX_DEPTH = 4  # storage root / sweep / trials / trial_x


@dataclass(frozen=True)
class RunSummary:
    name: str  # the run directory relative to the listed root
    uri: str
    kind: str  # "nat", "mae" (pretraining) or "finetune: supervised | + inversion | + FixMatch"
    status: str  # finished | running | diverged | failed | interrupted
    rounds_done: int  # epochs (pretraining) or evaluation rounds (fine-tuning) in the latest checkpoint
    rounds_total: int
    latest_checkpoint: str | None  # directory name inside the run
    headline: str  # kNN accuracy of the features, validation accuracy, or the loss


def write_heartbeat(
    run_dir: str,
    storage_cfg: StorageConfig,
    global_step: int,
    round_index: int,
    placement_group: str | None = None,
    loop_done: bool = False,
) -> None:
    """placement_group: hex id of the Ray Train workers' placement group (rayssl.train.placement releases it if Ray Train leaves it);
    loop_done: the worker loop has returned (finished or stopped early), so nothing of the run needs the workers any more."""
    beat: dict[str, Any] = {"updated": time.time(), "global_step": global_step, "round": round_index}
    beat |= ({"placement_group": placement_group} if placement_group else {}) | ({"loop_done": True} if loop_done else {})
    storage.write_bytes(storage.join(run_dir, HEARTBEAT_FILE), json.dumps(beat).encode(), storage_cfg)


def read_heartbeat(run_dir: str, storage_cfg: StorageConfig) -> dict[str, Any] | None:
    return _read_json(storage.join(run_dir, HEARTBEAT_FILE), storage_cfg)


def find_run_dirs(root: str, storage_cfg: StorageConfig, max_depth: int = MAX_DEPTH) -> list[str]:
    """URIs of the run directories under `root`, breadth first, not descending into a run."""
    fs, path = storage.resolve(root, storage_cfg)
    found, level = [], [(root, path)]
    with storage.reaching(root, storage_cfg):
        if fs.get_file_info(path).type != pafs.FileType.Directory:
            raise FileNotFoundError(f"no runs directory at {root}")
        for _ in range(max_depth):
            deeper = []
            for uri, p in level:
                children = fs.get_file_info(pafs.FileSelector(p, recursive=False))
                if any(c.base_name == CONFIG_FILE and c.type == pafs.FileType.File for c in children):
                    found.append(uri)
                    continue
                deeper += [
                    (storage.join(uri, c.base_name), c.path)
                    for c in children
                    if c.type == pafs.FileType.Directory and not c.base_name.startswith(("checkpoint_", "."))
                ]
            level = deeper
    return sorted(found)


def _read_json(uri: str, storage_cfg: StorageConfig) -> dict[str, Any] | None:
    return json.loads(storage.read_bytes(uri, storage_cfg)) if storage.exists(uri, storage_cfg) else None


def _kind_and_rounds(config: dict[str, Any]) -> tuple[str, int]:
    """What the run trains and how many rounds it has in all, from its resolved config.yaml."""
    if "semisup" not in config:  # PretrainConfig
        return config["method"], int(config["train"]["epochs"])
    try:
        variant = " + ".join(o.title for o in registry.active_objectives(from_dict(FinetuneConfig, config)))
    except ConfigError:  # written by an older version: keys have moved since
        variant = "?"
    if config.get("init"):
        variant += ", pretrained"
    schedule = config["schedule"]
    return f"finetune: {variant}", math.ceil(schedule["steps"] / schedule["eval_every"])


def _headline(metrics: dict[str, Any], evaluation: dict[str, Any] | None) -> str:
    if evaluation and evaluation.get("results"):
        best = evaluation["results"][-1]  # the run's own features (the first row is the random-init baseline)
        return f"kNN {100 * best['knn_acc']:.1f}%, linear {100 * best['linear_acc']:.1f}%"
    if "val_acc" in metrics:
        return f"val_acc {100 * metrics['val_acc']:.1f}%"
    return f"loss {metrics['loss']:.4g}" if "loss" in metrics else "–"


def summarise_run(run_dir: str, root: str, storage_cfg: StorageConfig, stale_after_s: float, now: float | None = None) -> RunSummary:
    config = yaml.safe_load(storage.read_bytes(storage.join(run_dir, CONFIG_FILE), storage_cfg)) or {}
    kind, rounds_total = _kind_and_rounds(config)
    latest = checkpoints.latest_checkpoint(run_dir, storage_cfg)
    meta = _read_json(storage.join(latest, checkpoints.META), storage_cfg) if latest else None
    rounds_done = int(meta["epoch"]) if meta else 0
    stopped = _read_json(storage.join(run_dir, STATUS_FILE), storage_cfg)
    heartbeat = read_heartbeat(run_dir, storage_cfg)
    now = time.time() if now is None else now
    if stopped is not None:
        status = "diverged" if stopped.get("status") == "diverged" else "failed"
    elif rounds_done >= rounds_total:
        status = "finished"
    elif heartbeat is not None and now - heartbeat["updated"] <= stale_after_s:
        status = "running"
    else:
        status = "interrupted"
    metrics = (meta or {}).get("metrics", {})
    if stopped is not None and status == "diverged":
        headline = f"loss not finite at step {stopped['diverged_at_step']}"
    else:
        headline = _headline(metrics, _read_json(storage.join(run_dir, EVAL_FILE), storage_cfg))
    return RunSummary(
        name=storage.relative_to(run_dir, root) or run_dir,
        uri=run_dir,
        kind=kind,
        status=status,
        rounds_done=rounds_done,
        rounds_total=rounds_total,
        latest_checkpoint=latest.rstrip("/").rsplit("/", 1)[-1] if latest else None,
        headline=headline,
    )


def list_runs(root: str, storage_cfg: StorageConfig = StorageConfig(), stale_after_s: float = 600.0) -> list[RunSummary]:
    return [summarise_run(d, root, storage_cfg, stale_after_s) for d in find_run_dirs(root, storage_cfg)]


def runs_table(runs: list[RunSummary]) -> str:
    """A markdown table, one row per run."""
    lines = ["| run | method | status | rounds | latest checkpoint | headline |", "|---|---|---|---:|---|---|"]
    lines += [
        f"| {r.name} | {r.kind} | {r.status} | {r.rounds_done}/{r.rounds_total} | {r.latest_checkpoint or '–'} | {r.headline} |"
        for r in runs
    ]
    return "\n".join(lines)


def show_run(run_dir: str, root: str, storage_cfg: StorageConfig = StorageConfig(), stale_after_s: float = 600.0) -> str:
    """One run: its summary, resolved config and the metrics of its latest checkpoint (and evaluation)."""
    if not storage.exists(storage.join(run_dir, CONFIG_FILE), storage_cfg):
        raise FileNotFoundError(f"no run at {run_dir} (no {CONFIG_FILE})")
    summary = summarise_run(run_dir, root, storage_cfg, stale_after_s)
    latest = storage.join(run_dir, summary.latest_checkpoint) if summary.latest_checkpoint else None
    meta = _read_json(storage.join(latest, checkpoints.META), storage_cfg) if latest else None
    parts = [
        runs_table([summary]),
        f"\nconfig ({storage.join(run_dir, CONFIG_FILE)}):\n"
        + storage.read_bytes(storage.join(run_dir, CONFIG_FILE), storage_cfg).decode(),
        "metrics of the latest checkpoint:\n" + json.dumps((meta or {}).get("metrics", {}), indent=2, sort_keys=True),
    ]
    for name in (STATUS_FILE, EVAL_FILE):
        extra = _read_json(storage.join(run_dir, name), storage_cfg)
        if extra is not None:
            parts.append(f"{name}:\n" + json.dumps(extra, indent=2))
    return "\n".join(parts)
