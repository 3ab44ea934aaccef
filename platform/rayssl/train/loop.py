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

from rayssl.config import FinetuneConfig, PretrainConfig, from_dict
from rayssl.data import quarantine, storage
from rayssl.eval.reconstructions import ARTIFACTS
from rayssl.logs import get_logger
from rayssl.methods import StepContext, build_method
from rayssl.methods.inversion import inversion_reconstruction, semisupervised_loss
from rayssl.train import checkpoints
from rayssl.train.pretrained import build_classifier

STATUS_OK, STATUS_DIVERGED, STATUS_QUARANTINE = "ok", "diverged", "quarantine_threshold"
STATUS_FILE = "stopped.json"  # written only when a run stops early (diverged, too many bad images)


def build_optimizer(cfg: PretrainConfig | FinetuneConfig, params: Any) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def _collective_device() -> torch.device:
    """gloo reduces CPU tensors, NCCL CUDA ones."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _all_gather(t: torch.Tensor) -> torch.Tensor:
    """[B] -> [world, B] on every rank."""
    local = t.to(_collective_device())
    out = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(out, local)
    return torch.stack(out).cpu()


def _all_reduce(values: torch.Tensor, op: dist.ReduceOp = dist.ReduceOp.SUM) -> torch.Tensor:
    """Reduce across ranks (a no-op on one worker); returns a CPU tensor."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        values = values.to(_collective_device())
        dist.all_reduce(values, op=op)
    return values.cpu()


def _maybe_crash(cfg: PretrainConfig | FinetuneConfig, rank: int, global_step: int) -> None:
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
    method = build_method(cfg, num_samples)
    optimizer = build_optimizer(cfg, method.model.parameters())
    start_epoch, global_step, last_metrics = 0, 0, {}

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            model_state, optim_state, method_state, meta = checkpoints.load_local(Path(d))
        method.model.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
        method.load_state_dict(method_state)
        start_epoch, global_step, last_metrics = meta["epoch"], meta["global_step"], meta.get("metrics", {})
        log.info("resumed from checkpoint: epoch %d, step %d", start_epoch, global_step)

    torch.manual_seed(cfg.train.seed + 1000 * (rank + 1))  # from here on: per-rank randomness (MAE masks)
    model = ray.train.torch.prepare_model(method.model)  # device placement + DDP when world > 1
    device = ray.train.torch.get_device()
    gather = _all_gather if world > 1 else (lambda t: t[None])
    shard = ray.train.get_dataset_shard("train")

    if start_epoch >= cfg.train.epochs:  # re-running a finished run: report its result again
        ray.train.report({**last_metrics, "status": STATUS_OK})
        return

    for epoch in range(start_epoch, cfg.train.epochs):
        step_ctx = StepContext(epoch=epoch, gather=gather, batch_capacity=cfg.data.batch_size)
        model.train()
        # Running sums stay tensors; the host syncs only at log points and at the epoch end.
        loss_sum, samples = torch.zeros((), dtype=torch.float64, device=device), 0
        stat_sums: dict[str, torch.Tensor] = {}
        first_bad_step = torch.tensor(-1, dtype=torch.int64, device=device)
        started = time.perf_counter()
        for batch in shard.iter_torch_batches(batch_size=cfg.data.batch_size, drop_last=True, prefetch_batches=2, device=device):
            _maybe_crash(cfg, rank, global_step)
            loss, stats = method.step(model, batch, step_ctx)
            if global_step == cfg.faults.nan_at_step:
                loss = loss * float("nan")
            finite = torch.isfinite(loss.detach())
            first_bad_step = torch.where(~finite & (first_bad_step < 0), torch.full_like(first_bad_step, global_step), first_bad_step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n = len(batch["index"])
            loss_sum += loss.detach().double() * n
            samples += n
            for name, value in stats.items():
                stat_sums[name] = stat_sums.get(name, torch.zeros((), dtype=torch.float64)) + value.double()
            global_step += 1
            if global_step % cfg.train.log_every == 0:
                if _diverged(first_bad_step, epoch, run_dir, cfg, rank, log):
                    return
                log.info("epoch %d step %d loss %.4f", epoch, global_step, float(loss_sum) / max(samples, 1))

        if _diverged(first_bad_step, epoch, run_dir, cfg, rank, log):
            return
        names = sorted(stat_sums)
        counts = [loss_sum.cpu(), torch.tensor(float(samples), dtype=torch.float64), *(stat_sums[k].cpu() for k in names)]
        totals = _all_reduce(torch.stack(counts))
        quarantined = _quarantined_count(run_dir, cfg, rank)
        metrics = {
            "epoch": epoch,
            "global_step": global_step,
            "loss": float(totals[0] / max(totals[1], 1)),
            **{f"{k}_fraction": float(totals[2 + i] / max(totals[1], 1)) for i, k in enumerate(names)},
            "images_per_s": float(totals[1]) / (time.perf_counter() - started),
            "quarantined": quarantined,
            "status": STATUS_OK,
        }
        if num_samples and quarantined / num_samples > cfg.data.quarantine_threshold:
            _stop({**metrics, "status": STATUS_QUARANTINE}, run_dir, cfg, rank)
            return
        log.info("epoch %d done: %s", epoch, {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
        last_epoch = epoch == cfg.train.epochs - 1
        if rank == 0 and (last_epoch or (epoch + 1) % cfg.train.checkpoint_every == 0):
            if cfg.method in ARTIFACTS:
                ARTIFACTS[cfg.method](method, cfg, run_dir, epoch)
            with tempfile.TemporaryDirectory() as tmp:
                checkpoints.save_local(
                    Path(tmp), method.model.state_dict(), optimizer.state_dict(), method.state_dict(),
                    {"epoch": epoch + 1, "global_step": global_step, "metrics": metrics},
                )
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)


def _diverged(first_bad_step: torch.Tensor, epoch: int, run_dir: str, cfg: PretrainConfig, rank: int, log: Any) -> bool:
    """True (after reporting) when any rank saw a non-finite loss; every rank agrees."""
    bad = int(_all_reduce(first_bad_step.clone(), dist.ReduceOp.MAX))
    if bad < 0:
        return False
    log.warning("loss is not finite at global step %d: stopping without a checkpoint", bad)
    _stop({"status": STATUS_DIVERGED, "diverged_at_step": bad, "epoch": epoch}, run_dir, cfg, rank)
    return True


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


def finetune_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Few-label fine-tuning: each step = a labelled batch drawn from the small in-memory labelled
    set + an unlabelled batch from the Ray Data stream; loss = CE + alpha * inversion
    reconstruction (+ beta * entropy). Reports validation accuracy every epoch."""
    cfg = from_dict(FinetuneConfig, loop_config["config"])
    rank = ray.train.get_context().get_world_rank()
    log = get_logger(rank)
    s = cfg.semisup
    torch.manual_seed(cfg.train.seed)
    net = build_classifier(cfg)
    optimizer = build_optimizer(cfg, net.parameters())
    start_epoch = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            model_state, optim_state, _, meta = checkpoints.load_local(Path(d))
        net.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
        start_epoch = meta["epoch"]
    model = ray.train.torch.prepare_model(net)
    device = ray.train.torch.get_device()
    # torch.tensor copies: the arrays arrive read-only from the object store.
    labelled_x, labelled_y = (torch.tensor(loop_config[k]).to(device) for k in ("labelled_x", "labelled_y"))
    val_x, val_y = (torch.tensor(loop_config[k]) for k in ("val_x", "val_y"))
    held_out = torch.tensor(loop_config["val_idx"])
    sampler = torch.Generator().manual_seed(cfg.train.seed + rank)
    shard = ray.train.get_dataset_shard("train")

    for epoch in range(start_epoch, cfg.train.epochs):
        model.train()
        loss_sum, steps = torch.zeros((), device=device), 0
        for batch in shard.iter_torch_batches(batch_size=cfg.data.batch_size, drop_last=True, prefetch_batches=2, device=device):
            _maybe_crash(cfg, rank, steps)
            unlabelled = batch["image"][~torch.isin(batch["index"].cpu(), held_out).to(device)]  # validation stays unseen
            pick = torch.randint(len(labelled_y), (s.labelled_batch_size,), generator=sampler).to(device)
            x = torch.cat([labelled_x[pick], unlabelled])
            y = torch.cat([labelled_y[pick], torch.full((len(unlabelled),), -1, device=device, dtype=torch.int64)])
            if s.alpha > 0:
                logits, x_hat = inversion_reconstruction(model, x)
            else:
                logits, x_hat = model(x), x
            loss = semisupervised_loss(logits, y, x, x_hat, s.alpha, s.beta)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            steps += 1
        val_acc = _accuracy(net, val_x, val_y, device)
        mean_loss = float(_all_reduce(loss_sum.cpu() / max(steps, 1))) / _world_size()
        metrics = {"epoch": epoch, "loss": mean_loss, "val_acc": val_acc, "run_dir": loop_config["run_dir"]}
        log.info("epoch %d: loss %.4f, validation accuracy %.4f", epoch, metrics["loss"], val_acc)
        if rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                checkpoints.save_local(Path(tmp), net.state_dict(), optimizer.state_dict(), {}, {"epoch": epoch + 1, "global_step": epoch + 1, "metrics": metrics})
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.no_grad()
def _accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch: int = 512) -> float:
    """Top-1 accuracy of `net` on an in-memory set; x [N, C, H, W], y [N]."""
    net.eval()
    correct = sum(int((net(x[i : i + batch].to(device)).argmax(1).cpu() == y[i : i + batch]).sum()) for i in range(0, len(y), batch))
    net.train()
    return correct / max(len(y), 1)
