"""The only module that imports ray.train: the per-worker pretraining loop.

Per epoch every worker iterates its `get_dataset_shard("train")` split (equal sizes, so every
worker runs the same number of steps and the collectives line up), runs the method step, and
at the end of the epoch all workers call `ray.train.report` once; rank 0 attaches the
checkpoint. A restarted worker group resumes at the epoch after the latest checkpoint; the
interrupted epoch's updates died with the old processes, so nothing is trained twice or lost.

Non-finite losses are detected without a per-step host sync: the first bad step is kept in a
tensor and checked every `log_every` steps and before any checkpoint, so a diverged model is
never saved. Divergence and too many quarantined images end the run through a reported status
(not an exception), so they do not burn Ray Train's failure budget; the driver raises.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from rayssl.config import PretrainConfig, from_dict
from rayssl.data import quarantine, storage
from rayssl.logs import get_logger
from rayssl.methods.nat import NATHead, NoiseAsTargets
from rayssl.models import build_backbone
from rayssl.train import checkpoints

STATUS_OK, STATUS_DIVERGED, STATUS_QUARANTINE = "ok", "diverged", "quarantine_threshold"
STATUS_FILE = "stopped.json"  # written only when a run stops early (diverged, too many bad images)


def build_optimizer(cfg: PretrainConfig, params: Any) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def _all_gather(t: torch.Tensor) -> torch.Tensor:
    """[B] -> [world, B] on every rank (gloo/NCCL need tensors on the process-group device)."""
    backend_device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    local = t.to(backend_device)
    out = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(out, local)
    return torch.stack(out).cpu()


def _all_reduce(values: torch.Tensor, op: dist.ReduceOp = dist.ReduceOp.SUM) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        values = values.to(device)
        dist.all_reduce(values, op=op)
    return values.cpu()


def _maybe_crash(cfg: PretrainConfig, rank: int, global_step: int) -> None:
    """Fault injection for the resume tests: this rank dies once, like a lost node would."""
    f = cfg.faults
    if rank == f.crash_rank and global_step == f.crash_at_step and f.crash_marker and not os.path.exists(f.crash_marker):
        Path(f.crash_marker).touch()
        get_logger(0).warning("fault injection: rank %d exits at step %d", rank, global_step)
        os._exit(1)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    cfg = from_dict(PretrainConfig, loop_config["config"])
    run_dir: str = loop_config["run_dir"]
    num_samples: int = loop_config["num_samples"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    log = get_logger(rank)

    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    net = NATHead(build_backbone(cfg.model, cfg.data.channels), cfg.model.embed_dim, cfg.nat.target_dim)
    nat = NoiseAsTargets(num_samples, cfg.nat.target_dim, cfg.nat.seed)
    optimizer = build_optimizer(cfg, net.parameters())
    start_epoch, global_step, last_metrics = 0, 0, {}

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            model_state, optim_state, method_state, meta = checkpoints.load_local(Path(d))
        net.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
        nat.load_state_dict(method_state)
        start_epoch, global_step, last_metrics = meta["epoch"], meta["global_step"], meta.get("metrics", {})
        log.info("resumed from checkpoint: epoch %d, step %d", start_epoch, global_step)

    model = ray.train.torch.prepare_model(net)  # device placement + DDP when world > 1
    device = ray.train.torch.get_device()
    gather = _all_gather if world > 1 else (lambda t: t[None])
    shard = ray.train.get_dataset_shard("train")

    if start_epoch >= cfg.train.epochs:  # re-running a finished run: report its result again
        ray.train.report({**last_metrics, "status": STATUS_OK})
        return

    for epoch in range(start_epoch, cfg.train.epochs):
        do_reassign = epoch % cfg.nat.reassign_every == 0
        model.train()
        # Running sums kept on device; host syncs only at log points: [loss sum, samples, changed]
        sums = torch.zeros(3, dtype=torch.float64)
        first_bad_step = torch.tensor(-1, dtype=torch.int64)
        started, images = time.perf_counter(), 0
        for batch in shard.iter_torch_batches(batch_size=cfg.data.batch_size, drop_last=True, prefetch_batches=2, device=device):
            _maybe_crash(cfg, rank, global_step)
            z = model(batch["image"])
            loss, changed = nat.step_loss(z, batch["index"], do_reassign, gather, cfg.data.batch_size)
            if global_step == cfg.faults.nan_at_step:
                loss = loss * float("nan")
            finite = torch.isfinite(loss.detach()).cpu()
            first_bad_step = torch.where(~finite & (first_bad_step < 0), torch.tensor(global_step), first_bad_step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n = len(batch["index"])
            sums += torch.stack([loss.detach().double().cpu() * n, torch.tensor(n, dtype=torch.float64), torch.tensor(changed, dtype=torch.float64)])
            images += n
            global_step += 1
            if global_step % cfg.train.log_every == 0:
                bad = int(_all_reduce(first_bad_step.clone(), dist.ReduceOp.MAX))
                if bad >= 0:
                    log.warning("loss is not finite at global step %d: stopping without a checkpoint", bad)
                    _stop({"status": STATUS_DIVERGED, "diverged_at_step": bad, "epoch": epoch}, run_dir, cfg, rank)
                    return
                log.info("epoch %d step %d loss %.4f", epoch, global_step, float(sums[0] / max(sums[1], 1)))

        totals = _all_reduce(sums.clone())
        bad = int(_all_reduce(first_bad_step.clone(), dist.ReduceOp.MAX))
        if bad >= 0:
            log.warning("loss is not finite at global step %d: stopping without a checkpoint", bad)
            _stop({"status": STATUS_DIVERGED, "diverged_at_step": bad, "epoch": epoch}, run_dir, cfg, rank)
            return
        quarantined = _quarantined_count(run_dir, cfg, rank)
        metrics = {
            "epoch": epoch,
            "global_step": global_step,
            "loss": float(totals[0] / max(totals[1], 1)),
            "reassigned_fraction": float(totals[2] / max(totals[1], 1)) if do_reassign else 0.0,
            "images_per_s": float(totals[1]) / (time.perf_counter() - started),
            "quarantined": quarantined,
            "status": STATUS_OK,
        }
        if num_samples and quarantined / num_samples > cfg.data.quarantine_threshold:
            _stop({**metrics, "status": STATUS_QUARANTINE}, run_dir, cfg, rank)
            return
        log.info(
            "epoch %d done: loss %.4f, %.0f img/s, reassigned %.1f%%, quarantined %d",
            epoch, metrics["loss"], metrics["images_per_s"], 100 * metrics["reassigned_fraction"], quarantined,
        )
        last_epoch = epoch == cfg.train.epochs - 1
        if rank == 0 and (last_epoch or (epoch + 1) % cfg.train.checkpoint_every == 0):
            with tempfile.TemporaryDirectory() as tmp:
                checkpoints.save_local(
                    Path(tmp), net.state_dict(), optimizer.state_dict(), nat.state_dict(),
                    {"epoch": epoch + 1, "global_step": global_step, "metrics": metrics},
                )
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)


def _quarantined_count(run_dir: str, cfg: PretrainConfig, rank: int) -> int:
    """Distinct quarantined training samples so far; rank 0 reads, every rank gets the same count."""
    count = torch.tensor(len(quarantine.read_records(run_dir, cfg.storage, split="train")) if rank == 0 else 0)
    return int(_all_reduce(count))


def _stop(status: dict[str, Any], run_dir: str, cfg: PretrainConfig, rank: int) -> None:
    """End the run early without a checkpoint. Ray Train's Result only carries the metrics of the
    latest checkpoint, so rank 0 also leaves the status where the driver reads it."""
    if rank == 0:
        storage.write_bytes(storage.join(run_dir, STATUS_FILE), json.dumps(status).encode(), cfg.storage)
    ray.train.report(status)
