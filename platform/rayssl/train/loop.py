"""The only module that imports ray.train: one worker loop for pretraining and fine-tuning.

The loop owns what both jobs share: restoring the latest checkpoint, placing the model
(`prepare_model`), iterating this worker's `get_dataset_shard("train")` (or, for a small fine-tuning
corpus, its rows of the train split decoded in memory: rayssl.data.in_memory), fault injection,
divergence and quarantine checks, and checkpoint-and-report at the end of each round (rank 0
also writes the round's metrics to TensorBoard, rayssl.train.tensorboard). What a
step does, what a round is and what a checkpoint holds belong to the job's step object
(rayssl.train.steps): PretrainStep (a round is an epoch) or FinetuneStep (a round is
`schedule.eval_every` optimiser steps).

Every worker runs the same number of steps per round (equal shards, or a fixed step count), so
the collectives line up and every worker reports once per round (`ray.train.report`); rank 0 attaches
the checkpoint. A restarted worker group resumes at the round after the latest checkpoint; the
interrupted round's updates died with the old processes, so nothing is trained twice or lost.

A one-worker run may also execute in the caller's own process (train_in_process: a sweep's
one-worker trials run so, in their Tune actor, where Ray refuses ray.train's worker APIs). The loop
sees either kind of worker through the same small interface (_RayTrainWorker, _InProcessWorker);
the in-process one persists checkpoints under the run directory itself (checkpoints.persist) and
hands each round's metrics to its caller.

Non-finite losses are detected without a per-step host sync: the first bad step is kept in a
tensor and checked every `log_every` steps and before any checkpoint, so a diverged model is
never saved. Divergence and too many quarantined images end the run through a reported status
(not an exception), so they do not burn Ray Train's failure budget; the driver raises.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import ray.util
import torch
import torch.distributed as dist

from rayssl.config import FinetuneConfig, PretrainConfig, from_dict
from rayssl.data import quarantine, storage
from rayssl.data.decode import image_spec
from rayssl.data.device_decode import DeviceDecoder, decoded_batches
from rayssl.data.in_memory import InMemoryBatches
from rayssl.logs import get_logger
from rayssl.train import checkpoints, ledger, runs
from rayssl.train.steps import FinetuneStep, InvertedVAEStep, JobStep, PretrainStep
from rayssl.train.tensorboard import RunWriter

STATUS_OK, STATUS_DIVERGED, STATUS_QUARANTINE = "ok", "diverged", "quarantine_threshold"


def _collective_device() -> torch.device:
    """gloo reduces CPU tensors, NCCL CUDA ones."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_gather(t: torch.Tensor) -> torch.Tensor:
    """[B] -> [world, B] on every rank."""
    local = t.to(_collective_device())
    out = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(out, local)
    return torch.stack(out).cpu()


def _all_reduce(values: torch.Tensor, op: dist.ReduceOp = dist.ReduceOp.SUM) -> torch.Tensor:
    """Reduce across ranks (a no-op on one worker); returns a CPU tensor."""
    if _distributed():
        values = values.to(_collective_device())
        dist.all_reduce(values, op=op)
    return values.cpu()


def _equal_lengths(batches: Generator[dict[str, torch.Tensor], None, None]) -> Generator[dict[str, torch.Tensor], None, None]:
    """Every rank's batch cut to the shortest rank's length. A worker that decodes on its device
    quarantines bad rows after batching, so its batch can come out short, and collectives over a
    batch's rows (the contrastive methods' negatives) need the same length on every rank. Costs a
    one-number all-reduce per step, with data.decode: device only. Closing this closes `batches`."""
    try:
        for batch in batches:
            n = int(_all_reduce(torch.tensor(len(batch["index"])), dist.ReduceOp.MIN))
            yield {key: value[:n] for key, value in batch.items()}
    finally:
        batches.close()


def _average_gradients(model: torch.nn.Module) -> None:
    """What DDP does after backward, for jobs that cannot use DDP (a double backward through the
    inversion loss): one coalesced all-reduce of every gradient, divided by the world size."""
    if not _distributed():
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads]).to(_collective_device())
    dist.all_reduce(flat)
    flat = flat.to(grads[0].device) / dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def _maybe_crash(cfg: PretrainConfig | FinetuneConfig, rank: int, global_step: int) -> None:
    """Fault injection for the resume tests: this rank dies once, like a lost node would."""
    f = cfg.faults
    if rank == f.crash_rank and global_step == f.crash_at_step and f.crash_marker and not os.path.exists(f.crash_marker):
        Path(f.crash_marker).touch()
        get_logger(0).warning("fault injection: rank %d exits at step %d", rank, global_step)
        os._exit(1)


def _step_of(checkpoint: ray.train.Checkpoint) -> int:
    with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{checkpoints.META}") as f:
        return json.loads(f.read())["global_step"]


def _newest_checkpoint(recorded: ray.train.Checkpoint | None, on_storage: str | None, cfg: PretrainConfig | FinetuneConfig) -> ray.train.Checkpoint | None:
    """The checkpoint to resume from: Ray Train's (right after a worker-group restart inside one
    fit) or the newest complete one the driver found on storage, whichever is further on. A driver
    killed after a checkpoint was written but before Ray Train recorded it leaves Ray's record one
    checkpoint (or all of them) behind."""
    if not on_storage:
        return recorded
    fs, path = storage.resolve(on_storage, cfg.storage)
    found = ray.train.Checkpoint(path, filesystem=fs)
    return recorded if recorded is not None and _step_of(recorded) >= _step_of(found) else found


def _config_of(loop_config: dict[str, Any]) -> PretrainConfig | FinetuneConfig:
    return from_dict(PretrainConfig if loop_config["job"] == "pretrain" else FinetuneConfig, loop_config["config"])


def _build_job(loop_config: dict[str, Any]) -> tuple[PretrainConfig | FinetuneConfig, JobStep]:
    cfg = _config_of(loop_config)
    if isinstance(cfg, PretrainConfig):
        return cfg, PretrainStep(cfg, loop_config["num_samples"])
    sets = (loop_config["labelled_x"], loop_config["labelled_y"], loop_config["labelled_idx"], loop_config["val_x"], loop_config["val_y"], loop_config["val_idx"])
    if cfg.method == "inverted_vae":
        return cfg, InvertedVAEStep(cfg, *sets, loop_config["label_only"])
    return cfg, FinetuneStep(cfg, *sets)


class _RayTrainWorker:
    """One worker of a Ray Train worker group, as the loop sees it."""

    def __init__(self) -> None:
        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        group = ray.util.get_current_placement_group()  # the workers' group, for launch.release_placement_group
        self.placement_group = group.id.hex() if group is not None else None

    def recorded_checkpoint(self) -> ray.train.Checkpoint | None:
        """Ray Train's latest checkpoint (right after a worker-group restart inside one fit)."""
        return ray.train.get_checkpoint()

    def dataset(self) -> Any:
        return ray.train.get_dataset_shard("train")

    def prepare(self, model: torch.nn.Module, ddp: bool) -> torch.nn.Module:
        """Device placement, and DDP when world > 1 and `ddp` (else gradients are averaged by the loop)."""
        return ray.train.torch.prepare_model(model) if ddp else ray.train.torch.prepare_model(model, parallel_strategy=None)

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)


class _InProcessWorker:
    """The only worker, in the caller's process, without a Ray Train context: it keeps checkpoints
    under the run directory as Ray Train would (the newest `num_to_keep`) and passes every round's
    metrics (with "checkpoint_path" when one was saved) to `report`."""

    rank, world_size, placement_group = 0, 1, None  # the current group is the caller's: never to be removed

    def __init__(self, cfg: PretrainConfig | FinetuneConfig, run_dir: str, dataset: Any, report: Callable[[dict[str, Any]], None]) -> None:
        self.cfg, self.run_dir, self._dataset, self._report = cfg, run_dir, dataset, report
        self.device = torch.device("cuda", torch.cuda.current_device()) if cfg.train.use_gpu and torch.cuda.is_available() else torch.device("cpu")

    def recorded_checkpoint(self) -> None:
        return None  # the caller passes the newest one on storage (loop_config["resume_from"])

    def dataset(self) -> Any:
        return self._dataset

    def prepare(self, model: torch.nn.Module, ddp: bool) -> torch.nn.Module:
        return model.to(self.device)  # one worker: nothing to synchronise

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        if checkpoint_dir is not None:
            metrics = {**metrics, "checkpoint_path": checkpoints.persist(checkpoint_dir, self.run_dir, self.cfg.storage, self.cfg.train.num_to_keep)}
        self._report(metrics)


_Worker = _RayTrainWorker | _InProcessWorker


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker entry point for both jobs; loop_config["job"] is "pretrain" or "finetune"."""
    _run(loop_config, _RayTrainWorker())


def train_in_process(loop_config: dict[str, Any], dataset: Any, report: Callable[[dict[str, Any]], None]) -> None:
    """Run a one-worker job's loop in this process. `dataset`: the train stream (a ray.data.Dataset,
    or None when the job reads none or reads it from memory); `report` receives every round's metrics."""
    _run(loop_config, _InProcessWorker(_config_of(loop_config), loop_config["run_dir"], dataset, report))


def _run(loop_config: dict[str, Any], worker: _Worker) -> None:
    run_dir: str = loop_config["run_dir"]
    num_samples: int = loop_config["num_samples"]
    rank = worker.rank
    log = get_logger(rank)

    torch.manual_seed(loop_config["seed"])  # identical initial weights on every rank
    cfg, job = _build_job(loop_config)
    start_round, global_step, last_metrics, epoch_ledger = 0, 0, {}, []
    checkpoint = _newest_checkpoint(worker.recorded_checkpoint(), loop_config.get("resume_from"), cfg)
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            model_state, optim_state, method_state, meta = checkpoints.load_local(Path(d))
        job.load_state_dict({"model": model_state, "optimizer": optim_state, "method": method_state})
        start_round, global_step, last_metrics = meta["epoch"], meta["global_step"], meta.get("metrics", {})
        epoch_ledger = meta.get("ledger", [])  # the committed epochs; a redone epoch is counted afresh
        log.info("resumed from checkpoint: round %d, step %d", start_round, global_step)

    # From here on: per-rank randomness (MAE masks, labelled draws, augmentation on the worker).
    torch.manual_seed(loop_config["seed"] + 1000 * (rank + 1) + global_step)
    device = worker.device
    on_gpu = device.type == "cuda"
    if on_gpu and cfg.train.channels_last:
        job.model.to(memory_format=torch.channels_last)  # convolutions read NHWC directly; a no-op for the rest
    model = worker.prepare(job.model, job.wrap_ddp)  # without DDP, gradients are averaged below
    if cfg.train.compile:
        model = torch.compile(model)
    # bf16 autocast on GPU workers; the losses cast what they reduce to fp32 (rayssl.methods).
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_gpu and cfg.train.precision == "bf16")
    gather = _all_gather if _distributed() else (lambda t: t[None])
    shards: list[Any] = []  # looked up on first use: a job that reads no stream (supervised-only fine-tuning) has none
    # data.decode: device: the stream holds encoded images and crop boxes (rayssl.data.pipeline.ReadHeaders)
    decoder = DeviceDecoder(image_spec(cfg.data, train=True), cfg.data.augment, "train", run_dir, cfg.storage,
                            loop_config.get("second_view")) if cfg.data.decode == "device" else None

    def epoch(batch_size: int, device: torch.device):
        if not shards:
            shards.append(worker.dataset())
        if decoder is not None:
            batches = shards[0].iter_batches(batch_size=batch_size, batch_format="numpy", drop_last=True, prefetch_batches=cfg.train.prefetch_batches)
            decoded = decoded_batches(batches, decoder, device)
            return _equal_lengths(decoded) if _distributed() else decoded
        return shards[0].iter_torch_batches(batch_size=batch_size, drop_last=True, prefetch_batches=cfg.train.prefetch_batches, device=device)

    if loop_config.get("in_memory") is not None:  # a small train split, decoded by the driver (rayssl.data.in_memory)
        indices, images = ray.get(loop_config["in_memory"])
        epoch = InMemoryBatches(indices, images, cfg.data, loop_config["second_view"], loop_config["seed"], rank, worker.world_size).epoch

    if start_round >= job.num_rounds:  # re-running a finished run: report its result again
        worker.report({**last_metrics, "status": STATUS_OK})
        return
    tensorboard = RunWriter(run_dir, cfg.storage) if rank == 0 else None
    # `rayssl runs` tells a running run from one whose process went away by this file's age.
    last_heartbeat = -math.inf

    def heartbeat(round_index: int, force: bool = False, loop_done: bool = False) -> None:
        nonlocal last_heartbeat
        if rank == 0 and (force or time.monotonic() - last_heartbeat >= runs.HEARTBEAT_EVERY_S):
            last_heartbeat = time.monotonic()
            try:
                runs.write_heartbeat(run_dir, cfg.storage, global_step, round_index, worker.placement_group, loop_done)
            except OSError as exc:  # advisory: a store hiccup must not cost the run
                log.warning("heartbeat not written: %s", exc)

    # The driver's live progress display (rayssl.train.progress), fed by rank 0 without a round trip.
    board = loop_config.get("progress") if rank == 0 else None
    pretraining = isinstance(cfg, PretrainConfig)

    def post_progress(round_index: int, **fields: float) -> None:
        if board is not None:
            board.post.remote({"step": global_step, **({"epoch": round_index + 1} if pretraining else {}), **fields})
    failed, round_index = False, start_round
    try:
        heartbeat(start_round, force=True)
        for round_index in range(start_round, job.num_rounds):
            model.train()
            # Running sums stay tensors; the host syncs only at log points and at the round's end.
            loss_sum, samples = torch.zeros((), dtype=torch.float64, device=device), 0
            stat_sums: dict[str, torch.Tensor] = {}
            first_bad_step = torch.tensor(-1, dtype=torch.int64, device=device)
            # This rank's samples this round; the sketch stays on the device (no host sync per step).
            trained = ledger.sketch_of(torch.empty(0, dtype=torch.int64, device=device))
            started = time.perf_counter()
            for batch in job.round_batches(epoch, round_index, device):
                _maybe_crash(cfg, rank, global_step)
                with autocast:
                    loss, stats = job.step(model, batch, round_index, gather)
                if global_step == cfg.faults.nan_at_step:
                    loss = loss * float("nan")
                finite = torch.isfinite(loss.detach())
                first_bad_step = torch.where(~finite & (first_bad_step < 0), torch.full_like(first_bad_step, global_step), first_bad_step)
                job.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if not job.wrap_ddp:
                    _average_gradients(job.model)
                job.optimizer.step()
                job.after_step()
                n = len(batch["index"])
                if job.keeps_ledger:
                    trained = ledger.combine(trained, ledger.sketch_of(batch["index"]))
                loss_sum += loss.detach().double() * n
                samples += n
                for name, value in stats.items():
                    stat_sums[name] = stat_sums.get(name, torch.zeros((), dtype=torch.float64, device=device)) + value.double()
                global_step += 1
                if global_step % cfg.train.log_every == 0:
                    if _diverged(first_bad_step, round_index, run_dir, cfg, worker, log):
                        return
                    log.info("round %d step %d loss %.4f", round_index, global_step, float(loss_sum) / max(samples, 1))
                    post_progress(round_index, loss=float(loss_sum) / max(samples, 1), images_per_s=samples / (time.perf_counter() - started))
                    heartbeat(round_index)

            if _diverged(first_bad_step, round_index, run_dir, cfg, worker, log):
                return
            names = sorted(stat_sums)
            counts = [loss_sum.cpu(), torch.tensor(float(samples), dtype=torch.float64), *(stat_sums[k].cpu() for k in names)]
            totals = _all_reduce(torch.stack(counts))
            quarantined_ids = _quarantined_ids(run_dir, cfg, rank)
            quarantined = int(_all_reduce(torch.tensor(len(quarantined_ids))))
            if job.keeps_ledger:
                epoch_ledger = [*epoch_ledger, ledger.entry(round_index, ledger.combine(_all_reduce(trained)), quarantined_ids)]
            metrics = {
                "epoch": round_index,  # the round: an epoch for pretraining, eval_every steps for fine-tuning
                "global_step": global_step,
                "loss": float(totals[0] / max(totals[1], 1)),
                **{k: float(totals[2 + i] / max(totals[1], 1)) for i, k in enumerate(names)},
                "images_per_s": float(totals[1]) / (time.perf_counter() - started),
                "quarantined": quarantined,
                **job.round_metrics(device),
                "run_dir": run_dir,
                "status": STATUS_OK,
            }
            if "val_acc" in metrics and cfg.optim.lr < cfg.faults.sink_val_acc_below_lr:
                log.warning("fault injection: val_acc %.4f reported as -1 (lr %.3g)", metrics["val_acc"], cfg.optim.lr)
                metrics["val_acc"] = -1.0
            if num_samples and quarantined / num_samples > cfg.data.quarantine_threshold:
                _stop({**metrics, "status": STATUS_QUARANTINE}, run_dir, cfg, worker)
                return
            log.info("round %d done: %s", round_index, {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items() if k != "run_dir"})
            if tensorboard is not None:
                tensorboard.scalars(metrics, global_step)
            post_progress(round_index, **{k: metrics[k] for k in ("loss", "images_per_s", "val_acc") if k in metrics})
            heartbeat(round_index, force=True)
            last_round = round_index == job.num_rounds - 1
            if rank == 0 and (last_round or (round_index + 1) % cfg.train.checkpoint_every == 0):
                images = job.on_checkpoint(run_dir, round_index)
                if tensorboard is not None:
                    tensorboard.images(images, global_step)
                state = job.state_dict()
                with tempfile.TemporaryDirectory() as tmp:
                    checkpoints.save_local(
                        Path(tmp), state["model"], state["optimizer"], state["method"],
                        {"epoch": round_index + 1, "global_step": global_step, "metrics": metrics, "ledger": epoch_ledger},
                    )
                    worker.report(metrics, Path(tmp))
            else:
                worker.report(metrics)
            if tensorboard is not None:
                tensorboard.flush()
    except BaseException:
        failed = True  # Ray Train restarts the workers (or fails the run): the loop is not done
        raise
    finally:
        if not failed:  # finished, or stopped early after reporting why (launch.release_if_fit_hangs)
            heartbeat(round_index, force=True, loop_done=True)
        job.close()
        if tensorboard is not None:
            tensorboard.close()


def _diverged(first_bad_step: torch.Tensor, round_index: int, run_dir: str, cfg: PretrainConfig | FinetuneConfig, worker: _Worker, log: Any) -> bool:
    """True (after reporting) when any rank saw a non-finite loss; every rank agrees."""
    bad = int(_all_reduce(first_bad_step.clone(), dist.ReduceOp.MAX))
    if bad < 0:
        return False
    log.warning("loss is not finite at global step %d: stopping without a checkpoint", bad)
    _stop({"status": STATUS_DIVERGED, "diverged_at_step": bad, "epoch": round_index}, run_dir, cfg, worker)
    return True


def _quarantined_ids(run_dir: str, cfg: PretrainConfig | FinetuneConfig, rank: int) -> list[str]:
    """sample_ids of the distinct quarantined training samples so far, read by rank 0 (other ranks: [])."""
    if rank != 0:
        return []
    return [r["sample_id"] for r in quarantine.read_records(run_dir, cfg.storage, split="train").values()]


def _stop(status: dict[str, Any], run_dir: str, cfg: PretrainConfig | FinetuneConfig, worker: _Worker) -> None:
    """End the run early without a checkpoint. Ray Train's Result only carries the metrics of the
    latest checkpoint, so rank 0 also leaves the status where the driver reads it."""
    if worker.rank == 0:
        storage.write_bytes(storage.join(run_dir, runs.STATUS_FILE), json.dumps(status).encode(), cfg.storage)
    worker.report(status)
