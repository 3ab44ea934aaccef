"""Driver side of pretraining: config -> validated shards -> TorchTrainer -> result (+ eval)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar

import numpy as np
import ray
import ray.train
from ray.train.torch import TorchTrainer

from rayssl import console
from rayssl.config import ConfigError, FinetuneConfig, PretrainConfig, RayInitConfig, dump_yaml
from rayssl.data import quarantine, storage
from rayssl.data.in_memory import DecodedSplit, decode_split, decoded_mb, fits_in_memory
from rayssl.data.label_only import read_label_only
from rayssl.data.labelled import load_labelled_sets, select_labels
from rayssl.data.pipeline import image_dataset
from rayssl.data.shards import validate_shards
from rayssl.data.shardset import ShardSet
from rayssl.logs import get_logger
from rayssl.methods import registry
from rayssl.train import checkpoints, faults, placement, runs
from rayssl.train.loop import STATUS_DIVERGED, STATUS_QUARANTINE, train_in_process, train_loop_per_worker
from rayssl.train.progress import RunProgress
from rayssl.train.resume import refuse_incompatible_resume
from rayssl.train.spec import WorkerSpec
from rayssl.train.steps import FinetuneData, rounds_of

LABELS_REPORT = "labels.json"  # a fine-tuning run's label plan: sources, per-class counts, shortfalls (rayssl.data.labelled)


class TrainingDiverged(RuntimeError):
    pass


@dataclass(frozen=True)
class RunOutcome:
    run_dir: str
    checkpoint: str  # URI of the latest checkpoint directory
    metrics: dict[str, Any]


def run_dir_of(cfg: PretrainConfig | FinetuneConfig) -> str:
    return storage.join(cfg.run.storage_path, cfg.run.name)


C = TypeVar("C", PretrainConfig, FinetuneConfig)


def with_absolute_paths(cfg: C) -> C:
    """Local paths made absolute on the driver: Ray workers and Data tasks run in other directories."""

    def absolute(uri: str) -> str:
        return storage.absolute(uri, cfg.storage)

    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, shards=absolute(cfg.data.shards)),
        run=dataclasses.replace(cfg.run, storage_path=absolute(cfg.run.storage_path)),
    )
    if isinstance(cfg, FinetuneConfig) and cfg.init:
        cfg = dataclasses.replace(cfg, init=absolute(cfg.init))
    if isinstance(cfg, FinetuneConfig) and cfg.semisup.labels:
        cfg = dataclasses.replace(cfg, semisup=dataclasses.replace(cfg.semisup, labels=absolute(cfg.semisup.labels)))
    if isinstance(cfg, FinetuneConfig) and cfg.ivae.label_only_data:
        cfg = dataclasses.replace(cfg, ivae=dataclasses.replace(cfg.ivae, label_only_data=absolute(cfg.ivae.label_only_data)))
    return cfg


class _DriverLogging(TypedDict, total=False):
    """ray.init's keyword arguments for the driver's share of Ray's output (none: Ray's defaults)."""

    log_to_driver: bool
    logging_level: int


def init_ray(cfg: RayInitConfig) -> None:
    """Connect to a cluster (config address or RAY_ADDRESS, as under `ray job submit`) or start a local Ray."""
    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    # Quiet unless --verbose (rayssl.console): worker/actor output stays in Ray's session logs
    # (`ray logs`, the dashboard), and the driver's `ray` logger says only warnings and errors.
    quiet: _DriverLogging = {} if console.verbose() else {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **quiet)
    else:
        # "local": a new Ray of our own. A bare ray.init() would join whatever cluster
        # /tmp/ray/ray_current_cluster names (another user's, a test's) and then refuse num_cpus.
        ray.init(address="local", num_cpus=cfg.num_cpus, **quiet)
    # Tune and Train log through the `ray` logger's console handler at INFO whatever ray.init set
    # ("To visualize your results with TensorBoard ..." names Tune's own artifacts, not ours).
    console.quiet_console_handlers("ray")


def _torch_trainer(spec: WorkerSpec, dataset: Any, callbacks: Sequence[Any] = ()) -> TorchTrainer:
    """One TorchTrainer per run, named `<storage_path>/<name>` so that running it again resumes."""
    cfg = spec.cfg
    fs, storage_root = storage.resolve(cfg.run.storage_path, cfg.storage)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"spec": spec},  # Ray Train wants a dict (loop.train_loop_per_worker unwraps it)
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.train.num_workers,
            use_gpu=cfg.train.use_gpu,
            resources_per_worker={"CPU": cfg.train.cpus_per_worker},
            placement_strategy=cfg.train.placement_strategy,
        ),
        run_config=ray.train.RunConfig(
            name=cfg.run.name,
            storage_path=storage_root,
            storage_filesystem=fs,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.train.num_to_keep),
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            callbacks=list(callbacks),
            # Ray Train's per-report INFO lines ("Reporting training result ...") only with --verbose.
            # The ignore: mypy resolves ray.train.RunConfig to ray.air.config.RunConfig (the first of the two imports in
            # ray/train/__init__.py); at run time it is Train v2's (RAY_TRAIN_V2_ENABLED, on by default), which takes logging_config.
            logging_config=ray.train.LoggingConfig(log_level="INFO" if console.verbose() else "WARNING"),  # type: ignore[call-arg]
        ),
        datasets={"train": dataset} if dataset is not None else {},
    )


def _fit(
    spec: WorkerSpec,
    dataset: Any,
    callbacks: Sequence[Any] = (),
    progress: tuple[str, int] | None = None,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> RunOutcome:
    """Run (or resume) the worker loop; an early stop (divergence, too many bad images) raises here.

    progress: (what, total optimiser steps) for a live display on this console; None inside a sweep's trials.
    report: run the (one-worker) loop in this process, passing it every round's metrics (loop.train_in_process).
    """
    cfg, run_dir = spec.cfg, spec.run_dir
    status_uri = storage.join(run_dir, runs.STATUS_FILE)
    if storage.exists(status_uri, cfg.storage):  # from an earlier attempt under this name
        storage.delete(status_uri, cfg.storage)
    # A driver killed after a checkpoint was written but before Ray Train recorded it leaves a
    # complete checkpoint that Ray Train does not restore: the workers fall back to it (loop.py).
    earlier = checkpoints.latest_checkpoint(run_dir, cfg.storage)
    if earlier is not None:
        meta = checkpoints.read_meta(earlier, cfg.storage)
        get_logger().info("resuming %s from %s (round %d, step %d)", cfg.run.name, earlier, meta["epoch"], meta["global_step"])
    spec = dataclasses.replace(spec, resume_from=earlier)
    if report is not None:
        return _fit_in_process(spec, dataset, report)
    # A finished run (no Tune trial waiting for its reports): its result, without starting a worker.
    if earlier is not None and meta["epoch"] >= rounds_of(cfg) and not callbacks:
        get_logger().info("%s had finished all %d rounds: nothing to train", cfg.run.name, meta["epoch"])
        return _outcome(cfg, run_dir, meta.get("metrics", {}), spec.num_samples)
    # Ray Train may leave its workers' placement group behind, even with fit() waiting on it (rayssl.train.placement).
    with placement.released_around_fit(run_dir, cfg.storage, cfg.run.name):
        try:
            if progress is None:
                result = _torch_trainer(spec, dataset, callbacks).fit()
            else:
                with RunProgress(*progress) as board:
                    result = _torch_trainer(dataclasses.replace(spec, progress=board), dataset, callbacks).fit()
        except ray.train.TrainingFailedError as exc:
            _raise_if_store_unreachable(cfg, run_dir, exc)
            # For `rayssl runs`; the next attempt under this name deletes it (above).
            storage.write_bytes(status_uri, json.dumps({"status": "failed", "error": str(exc)[:2000]}).encode(), cfg.storage)
            raise
    return _outcome(cfg, run_dir, dict(result.metrics or {}), spec.num_samples)  # Ray Train: the metrics of the latest checkpoint


def _fit_in_process(spec: WorkerSpec, dataset: Any, report: Callable[[dict[str, Any]], None]) -> RunOutcome:
    """The one worker's loop in this process: no Train controller or worker actors to start (a
    sweep's one-worker trials, in their Tune actor), and so no worker restarts: a crash fails the
    call, and the next call under the same name resumes from the newest checkpoint on storage."""
    reported: list[dict[str, Any]] = []

    def keep_and_report(metrics: dict[str, Any]) -> None:
        reported.append(metrics)
        report(metrics)

    train_in_process(spec, dataset, keep_and_report)
    return _outcome(spec.cfg, spec.run_dir, reported[-1] if reported else {}, spec.num_samples)


def _outcome(cfg: PretrainConfig | FinetuneConfig, run_dir: str, metrics: dict[str, Any], num_samples: int) -> RunOutcome:
    """The finished run's outcome; a run the loop stopped early (status file) raises why."""
    status_uri = storage.join(run_dir, runs.STATUS_FILE)
    if storage.exists(status_uri, cfg.storage):
        metrics = json.loads(storage.read_bytes(status_uri, cfg.storage))
    status = metrics.get("status")
    if status == STATUS_DIVERGED:
        last = checkpoints.latest_checkpoint(run_dir, cfg.storage)
        raise TrainingDiverged(
            f"run {cfg.run.name!r} diverged: the loss was not finite at global step {metrics['diverged_at_step']} "
            f"({'epoch' if isinstance(cfg, PretrainConfig) else 'round'} {metrics['epoch']}); last good checkpoint: {last or 'none'}"
        )
    if status == STATUS_QUARANTINE:
        quarantine.check_threshold(metrics["quarantined"], num_samples, cfg.data.quarantine_threshold, run_dir)
    checkpoint = checkpoints.latest_checkpoint(run_dir, cfg.storage)
    if checkpoint is None:
        raise RuntimeError(f"run {cfg.run.name!r} finished without a checkpoint under {run_dir}")
    return RunOutcome(run_dir, checkpoint, metrics)


def _raise_if_store_unreachable(cfg: PretrainConfig | FinetuneConfig, run_dir: str, failure: Exception) -> None:
    """After a failed run: if its object store no longer answers, say that (endpoint and object,
    rayssl.data.storage.ObjectStoreError) instead of the workers' tracebacks it caused."""
    for uri in (storage.join(run_dir, "config.yaml"), storage.join(cfg.data.shards, "manifest.json")):
        if storage.is_remote(uri):
            try:
                storage.exists(uri, cfg.storage)
            except storage.ObjectStoreError as unreachable:
                raise unreachable from failure


def run_pretrain(cfg: PretrainConfig) -> RunOutcome:
    """Pretrain (or resume pretraining) a backbone with the configured method."""
    log = get_logger()
    cfg = with_absolute_paths(cfg)
    run_dir = run_dir_of(cfg)
    # Cheap footer/schema checks on the driver: a broken shard fails here, by name, not deep in Ray.
    manifest = validate_shards(cfg.data.shards, cfg.storage, splits=["train"])
    num_samples = manifest["splits"]["train"]["rows"]
    refuse_incompatible_resume(cfg, run_dir, cfg.storage)
    storage.write_bytes(storage.join(run_dir, "config.yaml"), dump_yaml(cfg).encode(), cfg.storage)
    init_ray(cfg.ray)

    log.info("pretraining %s on %d images from %s -> %s", cfg.method, num_samples, cfg.data.shards, run_dir)
    # Each worker reads an equal share of the stream in full batches (drop_last).
    steps_per_epoch = num_samples // cfg.train.num_workers // cfg.data.batch_size
    second_view = cfg.data.augment if registry.two_views(cfg) else None
    outcome = _fit(
        WorkerSpec(cfg, run_dir, num_samples, second_view=second_view, faults=faults.from_environment()),
        image_dataset(cfg.data, "train", run_dir, cfg.storage, augment=True, second_view=second_view, encoded=cfg.data.decode == "device"),
        progress=(f"pretrain {cfg.method}", cfg.train.epochs * steps_per_epoch),
    )
    log.info("pretraining done: %s", {k: v for k, v in outcome.metrics.items() if k not in ("status", "run_dir")})
    return outcome


def _log_label_plan(report: dict[str, Any]) -> None:
    """Say where the labels came from and what a budget could not get, on the console."""
    log = get_logger()
    if "table" in report:
        log.info(
            "labels: %d rows of %s (%d keys listed twice with the same label; %d naming test images, skipped: test labels come from the shards)",
            report["table_rows"],
            report["table"],
            report["repeated_keys"],
            report["test_keys_skipped"],
        )
    log.info(
        "labels per class: %s; training %d, validation %d; test: %s",
        report["labels_available"],
        sum(report["labelled"].values()),
        sum(report["validation"].values()),
        report["test"],
    )
    if report["short_of_budget"]:
        log.warning(
            "labels_per_class %s: these classes have fewer labels and train on what they have: %s",
            report["budget"],
            report["short_of_budget"],
        )
    if report["classes_without_labels"]:
        log.warning("classes with no label at all (the model cannot learn them): %s", report["classes_without_labels"])


def _decode_unlabelled_if_small(cfg: FinetuneConfig, shards: ShardSet, run_dir: str) -> DecodedSplit | None:
    """The train split decoded into memory when an objective reads unlabelled images and it fits
    (data.in_memory_max_mb); None: stream it through Ray Data (or read none)."""
    train_rows = shards.rows("train")
    if not (registry.reads_unlabelled(cfg) and fits_in_memory(cfg.data, train_rows)):
        return None
    started = time.perf_counter()
    decoded = decode_split(cfg.data, "train", run_dir, cfg.storage, shards)
    quarantine.check_threshold(decoded.quarantined, train_rows, cfg.data.quarantine_threshold, run_dir)
    get_logger().info(
        "unlabelled images: the %d train images decoded into memory in %.1f s (%.1f MB, data.in_memory_max_mb %.0f); %d quarantined",
        len(decoded.indices),
        time.perf_counter() - started,
        decoded_mb(cfg.data, train_rows),
        cfg.data.in_memory_max_mb,
        decoded.quarantined,
    )
    return decoded


def _label_only_records(cfg: FinetuneConfig) -> np.ndarray:
    """float32 [M, K]: the label-only records an active objective reads (M = 0 for none), validated here."""
    source = registry.label_only_source(cfg)
    if not source:
        return np.zeros((0, cfg.semisup.num_classes), np.float32)
    records = read_label_only(source, cfg.semisup.num_classes, cfg.storage)
    get_logger().info("%d label-only records from %s", len(records), source)
    return records


def run_finetune(
    cfg: FinetuneConfig,
    callbacks: Sequence[Any] = (),
    show_progress: bool = True,
    report: Callable[[dict[str, Any]], None] | None = None,
    fault_plan: faults.FaultPlan | None = None,
) -> RunOutcome:
    """Fine-tune a (pretrained or fresh) backbone on a seeded few-label subset plus the unlabelled stream.

    `callbacks` are Ray Train user callbacks (the Tune sweep passes TuneReportCallback, and no
    progress display: its trials run off the console). With `report`, a one-worker run trains in
    this process instead (no Train controller or worker actors to start, no worker restarts) and
    every round's metrics go to `report` (a sweep's ray.tune.report). fault_plan: fault drills
    (rayssl.train.faults; a sweep passes its driver's to every trial), else RAYSSL_FAULTS here.
    """
    if report is not None and cfg.train.num_workers != 1:
        raise ConfigError(f"train.num_workers: a run in the caller's process has one worker, got {cfg.train.num_workers}")
    log = get_logger()
    cfg = with_absolute_paths(cfg)
    run_dir = run_dir_of(cfg)
    # The shard set, opened and checked once (every split: train, and test where the shards have one) and handed down.
    shards = ShardSet.open(cfg.data.shards, cfg.storage)
    plan = select_labels(cfg.data, cfg.semisup, cfg.storage, shards)
    sets = load_labelled_sets(
        cfg.data, {"labelled": plan.split.labelled, "validation": plan.split.validation}, plan.labels, cfg.storage, shards
    )
    refuse_incompatible_resume(cfg, run_dir, cfg.storage)
    init_ray(cfg.ray)
    label_only = _label_only_records(cfg)
    # What the objectives derive from the data (the inverted VAE's class prior) goes into the run's config.yaml,
    # which evaluation and prediction rebuild the network from.
    cfg = registry.resolved(cfg, sets["labelled"].labels, label_only)
    storage.write_bytes(storage.join(run_dir, "config.yaml"), dump_yaml(cfg).encode(), cfg.storage)
    storage.write_bytes(storage.join(run_dir, LABELS_REPORT), json.dumps(plan.report, indent=2).encode(), cfg.storage)
    _log_label_plan(plan.report)
    decoded = _decode_unlabelled_if_small(cfg, shards, run_dir)
    s = cfg.semisup
    log.info(
        "fine-tuning on %d labelled images (%s per class, draw %d) for %d steps: %s; init %s",
        *(len(sets["labelled"].labels), s.labels_per_class, s.label_seed, cfg.schedule.steps, registry.describe(cfg), cfg.init or "random"),
    )
    # Validation and held-out test images never enter the unlabelled batches either.
    held_out = np.concatenate([plan.split.validation, plan.split.test])
    data = FinetuneData.of(sets["labelled"], sets["validation"], held_out, label_only)
    strong = registry.strong_view(cfg)
    # (indices [N], uint8 images [N, H, W, C]) in the object store, read zero-copy by the workers on this node
    in_memory = ray.put((decoded.indices, decoded.images)) if decoded is not None else None
    drills = fault_plan if fault_plan is not None else faults.from_environment()
    spec = WorkerSpec(cfg, run_dir, shards.rows("train"), finetune_data=data, in_memory=in_memory, second_view=strong, faults=drills)
    # Supervised only reads no unlabelled image: no stream at all; a small corpus is read from memory.
    stream = None
    if registry.reads_unlabelled(cfg) and decoded is None:
        stream = image_dataset(
            cfg.data, "train", run_dir, cfg.storage, augment=True, second_view=strong, encoded=cfg.data.decode == "device"
        )
    return _fit(spec, stream, callbacks, progress=("fine-tune", cfg.schedule.steps) if show_progress else None, report=report)
