"""The per-job half of the worker loop (pure torch, no Ray): what one step of pretraining or
fine-tuning does, what a round is, what a checkpoint holds. rayssl.train.loop runs either.

A *round* ends with a report (and a checkpoint): one epoch of the shard for pretraining,
`schedule.eval_every` optimiser steps for fine-tuning.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Generator, Iterable
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from rayssl.config import BLOCK_BACKBONES, ConfigError, FinetuneConfig, OptimConfig, PretrainConfig
from rayssl.data.balanced import LabelledBatchSampler
from rayssl.data.transforms import ImageTransform, normalise
from rayssl.methods import StepContext, build_method
from rayssl.methods.base import GatherFn
from rayssl.methods.inverted_vae import labelled_bound, reverse_terms, unlabelled_bound
from rayssl.methods.inversion import inversion_reconstruction, layerwise_reconstruction, multiscale_loss, reconstruction_loss
from rayssl.methods.semisup import entropy, fixmatch_loss, sigmoid_rampup
from rayssl.train.pretrained import build_classifier

# batches(batch_size, device) -> a fresh pass over this worker's shard of the stream (one epoch)
EpochFn = Callable[[int, torch.device], Iterable[dict[str, torch.Tensor]]]


class JobStep(Protocol):
    model: nn.Module  # what the optimiser trains
    optimizer: torch.optim.Optimizer
    num_rounds: int
    wrap_ddp: bool  # False: the loop all-reduces gradients itself (double backward does not go through DDP)
    keeps_ledger: bool  # True: a round is an epoch, and the loop records which samples it trained (rayssl.train.ledger)

    def round_batches(self, epoch: EpochFn, round_index: int, device: torch.device) -> Iterable[dict[str, torch.Tensor]]: ...

    def step(self, model: nn.Module, batch: dict[str, torch.Tensor], round_index: int, gather: GatherFn) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, {stat name: sum over the batch}); the loop does backward and calls after_step."""

    def after_step(self) -> None: ...

    def close(self) -> None:
        """Once, when the loop ends: release what round_batches kept open across rounds."""

    def round_metrics(self, device: torch.device) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]:
        """{"model": eval weights, "optimizer": ..., "method": the rest} for checkpoints.save_local."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def on_checkpoint(self, run_dir: str, round_index: int) -> dict[str, torch.Tensor]:
        """Rank 0, before each checkpoint: artifacts next to it; returns {tag: image [C, H, W] in [0, 1]} for TensorBoard."""


def build_optimizer(o: OptimConfig, params: Any, fused: bool = False) -> torch.optim.Optimizer:
    """params: parameters or param groups (each group may carry its own lr); fused: one kernel for
    the whole update (GPU workers), else torch's default implementation."""
    kind = {"fused": True} if fused else {}
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, **kind)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, **kind)


def fused_optimizer(cfg: PretrainConfig | FinetuneConfig) -> bool:
    """Whether this job's workers use fused optimiser kernels (GPU workers with train.fused_optimizer)."""
    return cfg.train.use_gpu and cfg.train.fused_optimizer


class PretrainStep:
    """Self-supervised pretraining with a registered method; one round = one epoch of the shard."""

    wrap_ddp = True
    keeps_ledger = True

    def __init__(self, cfg: PretrainConfig, num_samples: int) -> None:
        self.cfg = cfg
        self.method = build_method(cfg, num_samples)
        self.model = self.method.model
        self.optimizer = build_optimizer(cfg.optim, self.model.parameters(), fused_optimizer(cfg))
        self.num_rounds = cfg.train.epochs

    def round_batches(self, epoch: EpochFn, round_index: int, device: torch.device) -> Iterable[dict[str, torch.Tensor]]:
        return epoch(self.cfg.data.batch_size, device)

    def step(self, model: nn.Module, batch: dict[str, torch.Tensor], round_index: int, gather: GatherFn) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.method.step(model, batch, StepContext(epoch=round_index, gather=gather, batch_capacity=self.cfg.data.batch_size))

    def after_step(self) -> None:
        pass

    def close(self) -> None:
        pass  # each round's pass over the shard runs to its end

    def round_metrics(self, device: torch.device) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "method": self.method.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.method.load_state_dict(state["method"])

    def on_checkpoint(self, run_dir: str, round_index: int) -> dict[str, torch.Tensor]:
        return self.method.on_checkpoint(run_dir, round_index)


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """LR multiplier at step t: linear from 1/warmup to 1 over `warmup` steps, then cosine to 0 at `total`."""
    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (t - warmup) / max(1, total - warmup))))
    return factor


def _endless(epoch: EpochFn, batch_size: int, device: torch.device) -> Generator[dict[str, torch.Tensor], None, None]:
    """Pass after pass over the shard; close() closes the pass in progress too (yield from)."""
    while True:
        yield from epoch(batch_size, device)


class FinetuneStep:
    """Few-label fine-tuning. Each step: a labelled batch drawn with replacement from the small
    in-memory labelled set, augmented here per sample, plus an unlabelled batch from the Ray Data
    stream (validation images removed) when a loss term reads one (`FinetuneConfig.uses_unlabelled`;
    supervised only never touches the stream). Loss = CE(labelled) + alpha * reconstruction(all)
    + beta * entropy(unlabelled) + consistency * FixMatch(unlabelled weak -> strong view).

    Runs schedule.steps optimiser steps under warmup + cosine; the stream is re-read as often as
    needed. One round = schedule.eval_every steps, ending with validation accuracy (of the EMA
    weights when schedule.ema_decay > 0).
    """

    wrap_ddp = False
    keeps_ledger = False  # a round is a number of steps, not a pass over the corpus

    def __init__(self, cfg: FinetuneConfig, labelled_images: np.ndarray, labelled_labels: np.ndarray, labelled_indices: np.ndarray,
                 val_images: np.ndarray, val_labels: np.ndarray, val_indices: np.ndarray) -> None:
        self.cfg = cfg
        s, sched = cfg.semisup, cfg.schedule
        self.net = self.model = build_classifier(cfg)
        self.layers = self.net.layers() if s.alpha > 0 and s.inversion == "multiscale" else None
        if s.alpha > 0 and s.inversion == "multiscale" and self.layers is None:
            raise ConfigError(f"semisup.inversion: multiscale needs a backbone made of blocks {BLOCK_BACKBONES}, got model.name {cfg.model.name!r}")
        backbone_lr = cfg.optim.lr * (sched.backbone_lr_scale if cfg.init else 1.0)
        backbone = {id(p) for p in self.net.backbone.parameters()}
        self.optimizer = build_optimizer(cfg.optim, [
            {"params": self.net.backbone.parameters(), "lr": backbone_lr},
            # the head (and the inverted VAE's encoder and decoder)
            {"params": [p for p in self.net.parameters() if id(p) not in backbone], "lr": cfg.optim.lr},
        ], fused_optimizer(cfg))
        schedule = warmup_cosine(sched.warmup_steps, sched.steps)
        head_only = sched.head_warmup_steps if cfg.init else 0
        # Backbone frozen (lr 0) while a fresh head warms up on a pretrained backbone.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, [
            lambda t: schedule(t) if t >= head_only else 0.0,
            schedule,
        ])
        self.ema = AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(sched.ema_decay), use_buffers=True) if sched.ema_decay > 0 else None
        self.num_rounds = math.ceil(sched.steps / sched.eval_every)
        # uint8 [N, C, H, W]: augmented per sample at every step, like the unlabelled stream.
        self.labelled_images = torch.from_numpy(np.ascontiguousarray(labelled_images.transpose(0, 3, 1, 2)))
        self.labelled_labels = torch.as_tensor(labelled_labels, dtype=torch.int64)
        self.labelled_indices = torch.as_tensor(labelled_indices, dtype=torch.int64)
        self.sampler = LabelledBatchSampler(self.labelled_labels, s.labelled_batch_size, s.balanced_batches)
        labelled_view = s.labelled_augment if s.labelled_augment is not None else cfg.data.augment
        self.labelled_transform = ImageTransform(cfg.data.image_size, labelled_view, cfg.data.channels)
        self.val_images = normalise(torch.from_numpy(np.ascontiguousarray(val_images.transpose(0, 3, 1, 2))))
        self.val_labels = torch.as_tensor(val_labels, dtype=torch.int64)
        self.held_out = torch.as_tensor(val_indices, dtype=torch.int64)
        self._stream: Generator[dict[str, torch.Tensor], None, None] | None = None

    def round_batches(self, epoch: EpochFn, round_index: int, device: torch.device) -> Iterable[dict[str, torch.Tensor]]:
        """This round's batches: stream rows (index, image[, image_view2]) plus `labelled_pick`, the
        rows of the labelled set drawn for the step. Without the stream, "index" holds the picked
        labelled images' sample indices, so the loop counts labelled images."""
        sched, s = self.cfg.schedule, self.cfg.semisup
        first = round_index * sched.eval_every
        steps = max(0, min(sched.eval_every, sched.steps - first))
        if self.cfg.uses_unlabelled:
            if self._stream is None:
                self._stream = _endless(epoch, self.cfg.data.batch_size, device)
            stream: Iterable[dict[str, torch.Tensor]] = itertools.islice(self._stream, steps)
        else:
            stream = ({} for _ in range(steps))
        for batch in stream:
            pick = self.sampler.draw()
            yield {"index": self.labelled_indices[pick], **batch, "labelled_pick": pick}

    def _inputs(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(augmented labelled images [L, C, H, W], their labels [L], unlabelled images [U, C, H, W]
        with validation images removed, the stream rows kept [B] bool or None without a stream)."""
        device = next(model.parameters()).device
        pick = batch["labelled_pick"]
        x_l = self.labelled_transform.tensor(self.labelled_images[pick].to(device))
        y_l = self.labelled_labels[pick].to(device)
        if not self.cfg.uses_unlabelled:
            return x_l, y_l, x_l[:0], None
        keep = ~torch.isin(batch["index"], self.held_out.to(device))  # validation images stay unseen
        return x_l, y_l, batch["image"][keep], keep

    def step(self, model: nn.Module, batch: dict[str, torch.Tensor], round_index: int, gather: GatherFn) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.cfg.semisup
        x_l, y_l, unlabelled, keep = self._inputs(model, batch)
        x = torch.cat([x_l, unlabelled])
        n_l, n = len(x_l), len(batch["index"])
        stats: dict[str, torch.Tensor] = {}  # sums over the batch's rows: the loop divides by its image count
        if s.alpha > 0 and self.layers is not None:
            logits, pairs = layerwise_reconstruction(self.layers, x)
            reconstruction = multiscale_loss(pairs)
        elif s.alpha > 0:
            logits, x_hat = inversion_reconstruction(model, x)
            reconstruction = reconstruction_loss(x, x_hat)
        else:
            logits, reconstruction = model(x), None
        ce = F.cross_entropy(logits[:n_l], y_l)
        loss = ce
        stats["ce"] = ce.detach() * n
        if reconstruction is not None:
            loss = loss + s.alpha * reconstruction
            stats["reconstruction"] = reconstruction.detach() * n
        if s.beta > 0:
            # the scheduler has stepped once per optimiser step so far: last_epoch is this step's index
            beta = s.beta * sigmoid_rampup(self.scheduler.last_epoch, s.beta_rampup_steps)
            loss = loss + beta * entropy(logits[n_l:])
        if s.consistency > 0:
            strong_logits = model(batch["image_view2"][keep])
            consistency, confident = fixmatch_loss(logits[n_l:], strong_logits, s.confidence)
            loss = loss + s.consistency * consistency
            stats["pseudo_labelled_fraction"] = confident * n / max(len(unlabelled), 1)
        return loss, stats

    def after_step(self) -> None:
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.net)

    def close(self) -> None:
        # The stream stops mid-epoch. Closed here, its Ray Data iterator reports its stats while Ray
        # is up; left to the garbage collector, it does so after ray.shutdown and logs a traceback.
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def eval_net(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.net

    @torch.no_grad()
    def round_metrics(self, device: torch.device) -> dict[str, float]:
        net, batch = self.eval_net(), 512
        was_training = net.training
        net.eval()
        correct = sum(
            int((net(self.val_images[i : i + batch].to(device)).argmax(1).cpu() == self.val_labels[i : i + batch]).sum())
            for i in range(0, len(self.val_labels), batch)
        )
        net.train(was_training)
        return {"val_acc": correct / max(len(self.val_labels), 1), "lr": self.scheduler.get_last_lr()[-1]}

    def state_dict(self) -> dict[str, Any]:
        method: dict[str, Any] = {"scheduler": self.scheduler.state_dict()}
        if self.ema is not None:
            method["train_weights"] = self.net.state_dict()
            method["ema_n_averaged"] = self.ema.n_averaged.clone()
        return {"model": self.eval_net().state_dict(), "optimizer": self.optimizer.state_dict(), "method": method}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        method = state["method"]
        if self.ema is not None:
            self.ema.module.load_state_dict(state["model"])
            self.ema.n_averaged.copy_(method["ema_n_averaged"])
            self.net.load_state_dict(method["train_weights"])
        else:
            self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(method["scheduler"])

    def on_checkpoint(self, run_dir: str, round_index: int) -> dict[str, torch.Tensor]:
        return {}


class InvertedVAEStep(FinetuneStep):
    """Fine-tuning of the inverted VAE (rayssl.methods.inverted_vae): per step, the labelled bound
    and classification loss on a labelled batch, the forward bound on the unlabelled stream's batch,
    and the reverse bound on a batch of label-only records (float [M, K] label distributions,
    in memory like the labelled set: a label vector is K numbers)."""

    def __init__(self, cfg: FinetuneConfig, labelled_images: np.ndarray, labelled_labels: np.ndarray, labelled_indices: np.ndarray,
                 val_images: np.ndarray, val_labels: np.ndarray, val_indices: np.ndarray, label_only: np.ndarray) -> None:
        super().__init__(cfg, labelled_images, labelled_labels, labelled_indices, val_images, val_labels, val_indices)
        self.label_only = torch.as_tensor(label_only, dtype=torch.float32)

    def round_batches(self, epoch: EpochFn, round_index: int, device: torch.device) -> Iterable[dict[str, torch.Tensor]]:
        for batch in super().round_batches(epoch, round_index, device):
            if len(self.label_only) and self.cfg.ivae.label_only > 0:
                batch["label_only_pick"] = torch.randint(len(self.label_only), (self.cfg.ivae.label_only_batch_size,))
            yield batch

    def step(self, model: nn.Module, batch: dict[str, torch.Tensor], round_index: int, gather: GatherFn) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        v = self.cfg.ivae
        x_l, y_l, unlabelled, _ = self._inputs(model, batch)
        n = len(batch["index"])
        one_hot = F.one_hot(y_l, self.cfg.semisup.num_classes).float()
        labelled = labelled_bound(model, x_l, one_hot).mean()
        ce = F.cross_entropy(model(x_l), y_l)
        loss = v.labelled * labelled + v.classification * ce
        stats = {"ce": ce.detach() * n, "labelled_bound": labelled.detach() * n}  # sums over the batch's rows
        if len(unlabelled) and v.unlabelled > 0:
            forward = unlabelled_bound(model, unlabelled, v.temperature).mean()
            loss = loss + v.unlabelled * forward
            stats["unlabelled_bound"] = forward.detach() * n
        if "label_only_pick" in batch:
            class_nll, log_q_x = reverse_terms(model, self.label_only[batch["label_only_pick"]].to(x_l.device), v.temperature)
            # The loss holds what is optimised; the bound (with its gradient-free entropy term) is reported.
            loss = loss + v.label_only * class_nll.mean()
            stats["reverse_bound"] = (class_nll + log_q_x).mean().detach() * n
            stats["reverse_class_nll"] = class_nll.mean().detach() * n
        return loss, stats

    def round_metrics(self, device: torch.device) -> dict[str, float]:
        return {**super().round_metrics(device), "label_only_records": float(len(self.label_only))}
