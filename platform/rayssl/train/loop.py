"""The workers' side of Ray Train (the driver's side is rayssl.train.launch): one worker loop for
pretraining and fine-tuning, run from the WorkerSpec the driver hands every worker (rayssl.train.spec).

The loop owns what both jobs share: restoring the latest checkpoint, placing the model
(`prepare_model`), iterating this worker's `get_dataset_shard("train")` (or, for a small fine-tuning
corpus, its rows of the train split decoded in memory: rayssl.data.in_memory), fault injection,
divergence and quarantine checks, and checkpoint-and-report at the end of each round (rank 0 also
writes the round's metrics to TensorBoard). What a step does, what a round is and what a checkpoint
holds belong to the job's step object (rayssl.train.steps.build_job_step): PretrainStep (a round is
an epoch) or FinetuneStep (a round is `schedule.eval_every` optimiser steps).

Every worker runs the same number of steps per round (equal shards, or a fixed step count), so the
collectives (rayssl.train.collectives) line up and every worker reports once per round; rank 0
attaches the checkpoint. A restarted worker group resumes at the round after the latest checkpoint;
the interrupted round's updates died with the old processes, so nothing is trained twice or lost.

A one-worker run may also execute in the caller's own process (train_in_process: a sweep's trials, in
their Tune actor, where Ray refuses ray.train's worker APIs). The loop sees either kind of worker through
one small interface (rayssl.train.workers: RayTrainWorker, InProcessWorker); the in-process one persists
checkpoints under the run directory itself (checkpoints.persist) and hands each round's metrics to its caller.

Non-finite losses are detected without a per-step host sync: the first bad step is kept in a tensor and
checked every `log_every` steps and before any checkpoint, so a diverged model is never saved. Divergence
and too many quarantined images end the run through a reported status (not an exception), so they do
not burn Ray Train's failure budget; the driver raises.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import ray.train
import torch
import torch.distributed as dist

from rayssl.config import FinetuneConfig, PretrainConfig
from rayssl.data import quarantine, storage
from rayssl.data.decode import image_spec
from rayssl.data.device_decode import DeviceDecoder, decoded_batches
from rayssl.data.in_memory import InMemoryBatches
from rayssl.data.transforms import model_inputs
from rayssl.logs import get_logger
from rayssl.train import checkpoints, ledger, runs
from rayssl.train.collectives import all_gather, all_reduce, average_gradients, distributed, equal_lengths
from rayssl.train.spec import WorkerSpec
from rayssl.train.steps import EpochFn, JobStep, build_job_step, clip_gradients
from rayssl.train.tensorboard import RunWriter
from rayssl.train.workers import InProcessWorker, RayTrainWorker, Worker

STATUS_OK, STATUS_DIVERGED, STATUS_QUARANTINE = "ok", "diverged", "quarantine_threshold"


def _step_of(checkpoint: ray.train.Checkpoint) -> int:
    fs = checkpoint.filesystem
    assert fs is not None, "ray.train.Checkpoint resolves its filesystem from the path when given none"
    with fs.open_input_stream(f"{checkpoint.path}/{checkpoints.META}") as f:
        return json.loads(f.read())["global_step"]


def _newest_checkpoint(
    recorded: ray.train.Checkpoint | None, on_storage: str | None, cfg: PretrainConfig | FinetuneConfig
) -> ray.train.Checkpoint | None:
    """The checkpoint to resume from: Ray Train's (right after a worker-group restart inside one
    fit) or the newest complete one the driver found on storage, whichever is further on. A driver
    killed after a checkpoint was written but before Ray Train recorded it leaves Ray's record one
    checkpoint (or all of them) behind."""
    if not on_storage:
        return recorded
    fs, path = storage.resolve(on_storage, cfg.storage)
    found = ray.train.Checkpoint(path, filesystem=fs)
    return recorded if recorded is not None and _step_of(recorded) >= _step_of(found) else found


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker entry point for both jobs: config["spec"] is the run's WorkerSpec (Train wants a dict)."""
    _run(config["spec"], RayTrainWorker())


def train_in_process(spec: WorkerSpec, dataset: Any, report: Callable[[dict[str, Any]], None]) -> None:
    """Run a one-worker job's loop in this process. `dataset`: the train stream (a ray.data.Dataset,
    or None when the job reads none or reads it from memory); `report` receives every round's metrics."""
    _run(spec, InProcessWorker(spec.cfg, spec.run_dir, dataset, report))


def _run(spec: WorkerSpec, worker: Worker) -> None:
    cfg, log = spec.cfg, get_logger(worker.rank)
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    job = build_job_step(cfg, spec.num_samples, spec.finetune_data)
    pos = _restore(worker, job, spec, log)
    # From here on: per-rank randomness (MAE masks, labelled draws, augmentation on the worker).
    torch.manual_seed(cfg.train.seed + 1000 * (worker.rank + 1) + pos.global_step)
    runner = _RoundRunner(job, worker, spec, log)
    epoch = _epochs(spec, worker)
    if pos.round >= job.num_rounds:  # re-running a finished run: report its result again
        worker.report({**pos.metrics, "status": STATUS_OK})
        return
    reporter = _Reporter(spec, worker, log)
    failed, round_index = False, pos.round
    try:
        reporter.heartbeat(pos.global_step, pos.round, force=True)
        for round_index in range(pos.round, job.num_rounds):
            sums = runner.run(round_index, epoch, pos, reporter)
            if sums is None or _diverged(sums.first_bad_step, round_index, spec, worker, log):
                return
            metrics = _round_metrics(sums, round_index, pos, job, spec, worker, log)
            if spec.num_samples and metrics["quarantined"] / spec.num_samples > cfg.data.quarantine_threshold:
                _stop({**metrics, "status": STATUS_QUARANTINE}, spec, worker)
                return
            reporter.round_done(round_index, pos.global_step, metrics)
            _checkpoint_and_report(round_index, pos, metrics, job, spec, worker, reporter.tensorboard)
            reporter.flush()
    except BaseException:
        failed = True  # Ray Train restarts the workers (or fails the run): the loop is not done
        raise
    finally:
        if not failed:  # finished, or stopped early after reporting why (placement.release_if_fit_hangs)
            reporter.heartbeat(pos.global_step, round_index, force=True, loop_done=True)
        job.close()
        reporter.close()


@dataclass
class _Position:
    """Where a run stands: next round, optimiser steps so far, latest metrics, the committed epochs' ledger."""

    round: int = 0
    global_step: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    ledger: list[Any] = field(default_factory=list)


def _restore(worker: Worker, job: JobStep, spec: WorkerSpec, log: Any) -> _Position:
    """Load the newest checkpoint (if any) into `job`; where it left off."""
    checkpoint = _newest_checkpoint(worker.recorded_checkpoint(), spec.resume_from, spec.cfg)
    if checkpoint is None:
        return _Position()
    with checkpoint.as_directory() as d:
        model_state, optim_state, method_state, meta = checkpoints.load_local(Path(d))
    job.load_state_dict({"model": model_state, "optimizer": optim_state, "method": method_state})
    log.info("resumed from checkpoint: round %d, step %d", meta["epoch"], meta["global_step"])  # a redone epoch: counted afresh
    return _Position(meta["epoch"], meta["global_step"], meta.get("metrics", {}), meta.get("ledger", []))


def _epochs(spec: WorkerSpec, worker: Worker) -> EpochFn:
    """This worker's passes over the train split: from memory (a small split the driver decoded), or its
    shard of the stream (data.decode: device: encoded images and crop boxes, rayssl.data.pipeline.ReadHeaders)."""
    cfg = spec.cfg
    if spec.in_memory is not None:
        indices, images = ray.get(spec.in_memory)
        return InMemoryBatches(indices, images, cfg.data, spec.second_view, cfg.train.seed, worker.rank, worker.world_size).epoch
    decoder = (
        DeviceDecoder(image_spec(cfg.data, train=True), cfg.data.augment, "train", spec.run_dir, cfg.storage, spec.second_view)
        if cfg.data.decode == "device"
        else None
    )
    shards: list[Any] = []  # looked up on first use: a job that reads no stream (supervised-only fine-tuning) has none

    def epoch(batch_size: int, device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
        if not shards:
            shards.append(worker.dataset())
        if decoder is None:
            # The CPU stage ships uint8 images where exact (rayssl.data.transforms): normalised here, on the device.
            moved = shards[0].iter_torch_batches(
                batch_size=batch_size, drop_last=True, prefetch_batches=cfg.train.prefetch_batches, device=device
            )
            return decoded_batches(iter(moved), lambda batch, _: model_inputs(batch), device)
        batches = shards[0].iter_batches(
            batch_size=batch_size, batch_format="numpy", drop_last=True, prefetch_batches=cfg.train.prefetch_batches
        )
        decoded = decoded_batches(batches, decoder, device)
        return equal_lengths(decoded) if distributed() else decoded

    return epoch


class _RoundSums:
    """One rank's running sums over a round, tensors on the device: the host syncs at log points and the round's end."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=device)  # sum of loss * batch size
        self.stats: dict[str, torch.Tensor] = {}  # the job's stats, summed
        self.first_bad_step = torch.tensor(-1, dtype=torch.int64, device=device)  # the first non-finite step; -1: none
        self.trained = ledger.sketch_of(torch.empty(0, dtype=torch.int64, device=device))  # this rank's samples, for the ledger
        self.samples, self.started = 0, time.perf_counter()


class _RoundRunner:
    """The job's model placed for training (device, channels_last, DDP, compile, autocast); a round of steps on it."""

    def __init__(self, job: JobStep, worker: Worker, spec: WorkerSpec, log: Any) -> None:
        self.job, self.worker, self.spec, self.cfg, self.log, self.device = job, worker, spec, spec.cfg, log, worker.device
        on_gpu = self.device.type == "cuda"
        if on_gpu and self.cfg.train.channels_last:
            job.model.to(memory_format=torch.channels_last)  # convolutions read NHWC directly; a no-op for the rest
        model = worker.prepare(job.model, job.wrap_ddp)  # without DDP, _step averages the gradients
        self.model = cast(torch.nn.Module, torch.compile(model)) if self.cfg.train.compile else model
        # bf16 autocast on GPU workers; the losses cast what they reduce to fp32 (rayssl.methods).
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_gpu and self.cfg.train.precision == "bf16")
        self.gather = all_gather if distributed() else (lambda t: t[None])

    def run(self, round_index: int, epoch: EpochFn, pos: _Position, reporter: _Reporter) -> _RoundSums | None:
        """One round's steps (advancing pos.global_step); None: a non-finite loss stopped the run (reported)."""
        self.model.train()
        sums = _RoundSums(self.device)
        for batch in self.job.round_batches(epoch, round_index, self.device):
            self._step(batch, round_index, pos.global_step, sums)
            pos.global_step += 1
            if pos.global_step % self.cfg.train.log_every == 0:
                if _diverged(sums.first_bad_step, round_index, self.spec, self.worker, self.log):
                    return None
                reporter.log_point(round_index, pos.global_step, sums)
        return sums

    def _step(self, batch: dict[str, torch.Tensor], round_index: int, global_step: int, sums: _RoundSums) -> None:
        job = self.job
        self.spec.faults.crash_if_due(self.worker.rank, global_step)
        with self.autocast:
            loss, stats = job.step(self.model, batch, round_index, self.gather)
        if global_step == self.spec.faults.nan_at_step:
            loss = loss * float("nan")
        bad = ~torch.isfinite(loss.detach()) & (sums.first_bad_step < 0)
        sums.first_bad_step = torch.where(bad, torch.full_like(sums.first_bad_step, global_step), sums.first_bad_step)
        job.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if not job.wrap_ddp:
            average_gradients(job.model)
        clip_gradients(job.model, self.cfg.optim)  # after the average (DDP's happens in backward): every rank clips the same gradient
        job.optimizer.step()
        job.after_step()
        n = len(batch["index"])
        if job.keeps_ledger:
            sums.trained = ledger.combine(sums.trained, ledger.sketch_of(batch["index"]))
        sums.loss += loss.detach().double() * n
        sums.samples += n
        for name, value in stats.items():
            sums.stats[name] = sums.stats.get(name, torch.zeros((), dtype=torch.float64, device=self.device)) + value.double()


def _round_metrics(
    sums: _RoundSums, round_index: int, pos: _Position, job: JobStep, spec: WorkerSpec, worker: Worker, log: Any
) -> dict[str, Any]:
    """The round's metrics over every rank, in the order reported; the round's ledger entry joins pos.ledger."""
    cfg, names = spec.cfg, sorted(sums.stats)
    counts = [sums.loss.cpu(), torch.tensor(float(sums.samples), dtype=torch.float64), *(sums.stats[k].cpu() for k in names)]
    totals = all_reduce(torch.stack(counts))
    divisor = totals[1].clamp(min=1)  # the round's images on every rank (1 when there were none)
    quarantined_ids = (
        [r["sample_id"] for r in quarantine.read_records(spec.run_dir, cfg.storage, split="train").values()] if worker.rank == 0 else []
    )
    quarantined = int(all_reduce(torch.tensor(len(quarantined_ids))))
    if job.keeps_ledger:
        pos.ledger = [*pos.ledger, ledger.entry(round_index, ledger.combine(all_reduce(sums.trained)), quarantined_ids)]
    metrics = {
        "epoch": round_index,  # the round: an epoch for pretraining, eval_every steps for fine-tuning
        "global_step": pos.global_step,
        "loss": float(totals[0] / divisor),
        **{k: float(totals[2 + i] / divisor) for i, k in enumerate(names)},
        "images_per_s": float(totals[1]) / (time.perf_counter() - sums.started),
        "quarantined": quarantined,
        **job.round_metrics(worker.device),
        "run_dir": spec.run_dir,
        "status": STATUS_OK,
    }
    if "val_acc" in metrics and cfg.optim.lr < spec.faults.sink_val_acc_below_lr:
        log.warning("fault injection: val_acc %.4f reported as -1 (lr %.3g)", metrics["val_acc"], cfg.optim.lr)
        metrics["val_acc"] = -1.0
    return metrics


class _Reporter:
    """Log lines (every rank); from rank 0 the heartbeat (`rayssl runs` tells a live run by its age), the
    driver's live progress display (rayssl.train.progress, fed without a round trip) and TensorBoard."""

    def __init__(self, spec: WorkerSpec, worker: Worker, log: Any) -> None:
        self.spec, self.worker, self.log = spec, worker, log
        self.tensorboard = RunWriter(spec.run_dir, spec.cfg.storage) if worker.rank == 0 else None
        self.board = spec.progress if worker.rank == 0 else None
        self.last_heartbeat = -math.inf

    def heartbeat(self, global_step: int, round_index: int, force: bool = False, loop_done: bool = False) -> None:
        if self.worker.rank == 0 and (force or time.monotonic() - self.last_heartbeat >= runs.HEARTBEAT_EVERY_S):
            self.last_heartbeat = time.monotonic()
            try:
                runs.write_heartbeat(
                    self.spec.run_dir, self.spec.cfg.storage, global_step, round_index, self.worker.placement_group, loop_done
                )
            except OSError as exc:  # advisory: a store hiccup must not cost the run
                self.log.warning("heartbeat not written: %s", exc)

    def log_point(self, round_index: int, global_step: int, sums: _RoundSums) -> None:  # every train.log_every steps
        loss = float(sums.loss) / max(sums.samples, 1)
        self.log.info("round %d step %d loss %.4f", round_index, global_step, loss)
        self._progress(global_step, round_index, loss=loss, images_per_s=sums.samples / (time.perf_counter() - sums.started))
        self.heartbeat(global_step, round_index)

    def round_done(self, round_index: int, global_step: int, metrics: dict[str, Any]) -> None:
        self.log.info(
            "round %d done: %s", round_index, {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items() if k != "run_dir"}
        )
        if self.tensorboard is not None:
            self.tensorboard.scalars(metrics, global_step)
        self._progress(global_step, round_index, **{k: metrics[k] for k in ("loss", "images_per_s", "val_acc") if k in metrics})
        self.heartbeat(global_step, round_index, force=True)

    def _progress(self, global_step: int, round_index: int, **fields: float) -> None:
        if self.board is not None:
            self.board.post.remote(
                {"step": global_step, **({"epoch": round_index + 1} if isinstance(self.spec.cfg, PretrainConfig) else {}), **fields}
            )

    def flush(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def _checkpoint_and_report(
    round_index: int, pos: _Position, metrics: dict[str, Any], job: JobStep, spec: WorkerSpec, worker: Worker, tensorboard: RunWriter | None
) -> None:
    """Report the round's metrics; rank 0 attaches a checkpoint every train.checkpoint_every rounds and after the last."""
    last_round = round_index == job.num_rounds - 1
    if worker.rank != 0 or not (last_round or (round_index + 1) % spec.cfg.train.checkpoint_every == 0):
        worker.report(metrics)
        return
    images = job.on_checkpoint(spec.run_dir, round_index)
    if tensorboard is not None:
        tensorboard.images(images, pos.global_step)
    state = job.state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints.save_local(
            Path(tmp),
            state["model"],
            state["optimizer"],
            state["method"],
            {"epoch": round_index + 1, "global_step": pos.global_step, "metrics": metrics, "ledger": pos.ledger},
        )
        worker.report(metrics, Path(tmp))


def _diverged(first_bad_step: torch.Tensor, round_index: int, spec: WorkerSpec, worker: Worker, log: Any) -> bool:
    """True (after reporting) when any rank saw a non-finite loss; every rank agrees."""
    bad = int(all_reduce(first_bad_step.clone(), dist.ReduceOp.MAX))
    if bad < 0:
        return False
    log.warning("loss is not finite at global step %d: stopping without a checkpoint", bad)
    _stop({"status": STATUS_DIVERGED, "diverged_at_step": bad, "epoch": round_index}, spec, worker)
    return True


def _stop(status: dict[str, Any], spec: WorkerSpec, worker: Worker) -> None:
    """End the run early without a checkpoint. Ray Train's Result only carries the metrics of the
    latest checkpoint, so rank 0 also leaves the status where the driver reads it."""
    if worker.rank == 0:
        storage.write_bytes(storage.join(spec.run_dir, runs.STATUS_FILE), json.dumps(status).encode(), spec.cfg.storage)
    worker.report(status)
