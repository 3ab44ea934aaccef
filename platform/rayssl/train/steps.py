"""The per-job half of the worker loop (pure torch, no Ray): what one step of pretraining or
fine-tuning does, what a round is, what a checkpoint holds. rayssl.train.loop runs either.

A *round* ends with a report (and a checkpoint): one epoch of the shard for pretraining,
`schedule.eval_every` optimiser steps for fine-tuning.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from rayssl.config import FinetuneConfig, OptimConfig, PretrainConfig
from rayssl.data.balanced import LabelledBatchSampler
from rayssl.data.labelled import LabelledSet
from rayssl.data.transforms import ImageTransform, normalise
from rayssl.methods import StepContext, build_method
from rayssl.methods.base import ClassifierForward, FinetuneBatch, GatherFn
from rayssl.methods.registry import build_objectives, label_only_batch_size, reads_unlabelled
from rayssl.train.pretrained import build_classifier

if TYPE_CHECKING:
    from rayssl.models.classifier import Classifier

# batches(batch_size, device) -> a fresh pass over this worker's shard of the stream (one epoch)
EpochFn = Callable[[int, torch.device], Iterable[dict[str, torch.Tensor]]]


class JobStep(Protocol):
    model: nn.Module  # what the optimiser trains
    optimizer: torch.optim.Optimizer
    num_rounds: int
    wrap_ddp: bool  # False: the loop all-reduces gradients itself (double backward does not go through DDP)
    keeps_ledger: bool  # True: a round is an epoch, and the loop records which samples it trained (rayssl.train.ledger)

    def round_batches(self, epoch: EpochFn, round_index: int, device: torch.device) -> Iterable[dict[str, torch.Tensor]]: ...

    def step(
        self, model: nn.Module, batch: dict[str, torch.Tensor], round_index: int, gather: GatherFn
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
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


def rounds_of(cfg: PretrainConfig | FinetuneConfig) -> int:
    """A run's rounds in all: epochs of pretraining, or fine-tuning's steps in rounds of schedule.eval_every."""
    if isinstance(cfg, PretrainConfig):
        return cfg.train.epochs
    return math.ceil(cfg.schedule.steps / cfg.schedule.eval_every)


def build_optimizer(o: OptimConfig, params: Any, fused: bool = False) -> torch.optim.Optimizer:
    """params: parameters or param groups (each group may carry its own lr); fused: one kernel for
    the whole update (GPU workers), else torch's default implementation."""
    one_kernel = True if fused else None  # None, not False: torch picks its default implementation, as when not passed
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay, fused=one_kernel)
    return torch.optim.AdamW(params, lr=o.lr, eps=o.eps, weight_decay=o.weight_decay, fused=one_kernel)


def clip_gradients(model: nn.Module, o: OptimConfig) -> None:
    """Clip the gradients the next optimiser step applies, as optim.clip_grad_norm / clip_grad_value say
    (0: off): first all of them together to a total L2 norm, then each element to +-clip_grad_value
    (Gemp et al.'s order: lasagne.updates.total_norm_constraint, then T.clip). Call after the workers'
    gradients are averaged, so every worker clips the same gradient the same way."""
    params = [p for p in model.parameters() if p.grad is not None]
    if o.clip_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, o.clip_grad_norm)
    if o.clip_grad_value > 0:
        torch.nn.utils.clip_grad_value_(params, o.clip_grad_value)


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
        self.num_rounds = rounds_of(cfg)

    def round_batches(self, epoch: EpochFn, round_index: int, device: torch.device) -> Iterable[dict[str, torch.Tensor]]:
        return epoch(self.cfg.data.batch_size, device)

    def step(
        self, model: nn.Module, batch: dict[str, torch.Tensor], round_index: int, gather: GatherFn
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
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


def warmup_cosine(warmup: int, total: int, decay: str = "cosine") -> Callable[[int], float]:
    """LR multiplier at step t: linear from 1/warmup to 1 over `warmup` steps, then over the steps left
    (progress p from 0 to 1) cosine: (1 + cos(pi p)) / 2, to 0 at `total`; or cosine_7_16:
    cos(7 pi p / 16), FixMatch's, to 0.195 at `total`."""

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        progress = min(1.0, (t - warmup) / max(1, total - warmup))
        if decay == "cosine_7_16":
            return math.cos(7 * math.pi * progress / 16)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _endless(epoch: EpochFn, batch_size: int, device: torch.device) -> Generator[dict[str, torch.Tensor], None, None]:
    """Pass after pass over the shard; close() closes the pass in progress too (yield from)."""
    while True:
        yield from epoch(batch_size, device)


@dataclass(frozen=True)
class FinetuneData:
    """What the driver hands every fine-tuning worker (small, in memory; pickled once per worker)."""

    labelled_images: np.ndarray  # uint8 [L, H, W, C]
    labelled_labels: np.ndarray  # int [L]
    labelled_indices: np.ndarray  # int64 [L]: the labelled images' sample indices
    val_images: np.ndarray  # uint8 [V, H, W, C]
    val_labels: np.ndarray  # int [V]
    held_out: np.ndarray  # int64: sample indices (validation and test) that never enter an unlabelled batch
    label_only: np.ndarray  # float32 [M, K]: label-only records (the inverted VAE's reverse bound), often M = 0

    @classmethod
    def of(cls, labelled: LabelledSet, validation: LabelledSet, held_out: np.ndarray, label_only: np.ndarray) -> FinetuneData:
        return cls(labelled.images, labelled.labels, labelled.indices, validation.images, validation.labels, held_out, label_only)


class FinetuneStep:
    """Few-label fine-tuning with the objectives the config makes active (rayssl.methods.registry).
    Each step: a labelled batch drawn with replacement from the small in-memory labelled set,
    augmented here per sample, plus an unlabelled batch from the Ray Data stream (validation and
    test images removed) when an objective reads one (supervised only never touches the stream),
    plus a batch of label-only records when an objective reads those.

    Runs schedule.steps optimiser steps under warmup + cosine; the stream is re-read as often as
    needed. One round = schedule.eval_every steps, ending with validation accuracy (of the EMA
    weights when schedule.ema_decay > 0).
    """

    wrap_ddp = False
    keeps_ledger = False  # a round is a number of steps, not a pass over the corpus

    def __init__(self, cfg: FinetuneConfig, data: FinetuneData) -> None:
        self.cfg = cfg
        self.net = build_classifier(cfg)
        self.model: nn.Module = self.net  # JobStep.model: what the optimiser trains
        self.objectives = build_objectives(cfg, self.net)
        self.reads_unlabelled = reads_unlabelled(cfg)
        self.label_only_batch = label_only_batch_size(cfg)
        self.optimizer, self.scheduler = _optimizer_and_schedule(cfg, self.net)
        sched = cfg.schedule
        self.ema = (
            AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(sched.ema_decay), use_buffers=True) if sched.ema_decay > 0 else None
        )
        self.num_rounds = rounds_of(cfg)
        # uint8 [N, C, H, W]: augmented per sample at every step, like the unlabelled stream.
        self.labelled_images = torch.from_numpy(np.ascontiguousarray(data.labelled_images.transpose(0, 3, 1, 2)))
        self.labelled_labels = torch.as_tensor(data.labelled_labels, dtype=torch.int64)
        self.labelled_indices = torch.as_tensor(data.labelled_indices, dtype=torch.int64)
        self.sampler = LabelledBatchSampler(self.labelled_labels, cfg.semisup.labelled_batch_size, cfg.semisup.balanced_batches)
        labelled_view = cfg.semisup.labelled_augment if cfg.semisup.labelled_augment is not None else cfg.data.augment
        self.labelled_transform = ImageTransform(cfg.data.image_size, labelled_view, cfg.data.channels)
        self.val_images = normalise(torch.from_numpy(np.ascontiguousarray(data.val_images.transpose(0, 3, 1, 2))))
        self.val_labels = torch.as_tensor(data.val_labels, dtype=torch.int64)
        self.held_out = torch.as_tensor(data.held_out, dtype=torch.int64)
        self.label_only = torch.as_tensor(data.label_only, dtype=torch.float32)
        self._stream: Generator[dict[str, torch.Tensor], None, None] | None = None

    def round_batches(self, epoch: EpochFn, round_index: int, device: torch.device) -> Iterable[dict[str, torch.Tensor]]:
        """This round's batches: stream rows (index, image[, image_view2]) plus `labelled_pick`, the
        rows of the labelled set drawn for the step. Without the stream, "index" holds the picked
        labelled images' sample indices, so the loop counts labelled images."""
        sched = self.cfg.schedule
        first = round_index * sched.eval_every
        steps = max(0, min(sched.eval_every, sched.steps - first))
        if self.reads_unlabelled:
            if self._stream is None:
                self._stream = _endless(epoch, self.cfg.data.batch_size, device)
            stream: Iterable[dict[str, torch.Tensor]] = itertools.islice(self._stream, steps)
        else:
            stream = ({} for _ in range(steps))
        for batch in stream:
            pick = self.sampler.draw()
            batch = {"index": self.labelled_indices[pick], **batch, "labelled_pick": pick}
            if len(self.label_only) and self.label_only_batch:
                batch["label_only_pick"] = torch.randint(len(self.label_only), (self.label_only_batch,))
            yield batch

    def _inputs(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> FinetuneBatch:
        """The step's labelled images (augmented here), unlabelled images with validation and test
        images removed (and their strong views), and label-only records, on the model's device."""
        device = next(model.parameters()).device
        pick = batch["labelled_pick"]
        x_l = self.labelled_transform.tensor(self.labelled_images[pick].to(device))
        y_l = self.labelled_labels[pick].to(device)
        unlabelled, strong = x_l[:0], None
        if self.reads_unlabelled:
            keep = ~torch.isin(batch["index"], self.held_out.to(device))  # validation images stay unseen
            unlabelled = batch["image"][keep]
            strong = batch["image_view2"][keep] if "image_view2" in batch else None
        label_only = self.label_only[batch["label_only_pick"]].to(device) if "label_only_pick" in batch else None
        # the scheduler has stepped once per optimiser step so far: last_epoch is this step's index
        return FinetuneBatch(x_l, y_l, unlabelled, strong, label_only, len(batch["index"]), self.scheduler.last_epoch)

    def step(
        self, model: nn.Module, batch: dict[str, torch.Tensor], round_index: int, gather: GatherFn
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inputs = self._inputs(model, batch)
        shared = None
        if not any(o.standalone for o in self.objectives):  # the classifier's terms share one forward
            x = torch.cat([inputs.labelled, inputs.unlabelled])
            n_labelled = len(inputs.labelled)
            shared = next((out for o in self.objectives if (out := o.forward(model, x, n_labelled)) is not None), None)
            shared = shared or ClassifierForward(model(x), n_labelled)
        loss: torch.Tensor | None = None
        stats: dict[str, torch.Tensor] = {}  # sums over the batch's rows: the loop divides by its image count
        for objective in self.objectives:
            parts, objective_stats = objective.loss_terms(model, inputs, shared)
            for part in parts:  # added one by one, in registry order
                loss = part if loss is None else loss + part
            stats |= objective_stats
        assert loss is not None, "a fine-tuning run has at least one active objective"
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
        metrics = {"val_acc": correct / max(len(self.val_labels), 1), "lr": float(self.scheduler.get_last_lr()[-1])}
        return metrics | ({"label_only_records": float(len(self.label_only))} if self.label_only_batch else {})

    def state_dict(self) -> dict[str, Any]:
        method: dict[str, Any] = {"scheduler": self.scheduler.state_dict()}
        objectives = {o.section: state for o in self.objectives if (state := o.state_dict())}
        if objectives:
            method["objectives"] = objectives
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
        for objective in self.objectives:
            objective.load_state_dict(method.get("objectives", {}).get(objective.section, {}))

    def on_checkpoint(self, run_dir: str, round_index: int) -> dict[str, torch.Tensor]:
        return {}


def _optimizer_and_schedule(cfg: FinetuneConfig, net: Classifier) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW/SGD with the backbone in its own group, under warmup + cosine; from a pretrained
    backbone, the backbone is frozen (lr 0) while a fresh head warms up, then joins at lr * backbone_lr_scale."""
    sched = cfg.schedule
    backbone_lr = cfg.optim.lr * (sched.backbone_lr_scale if cfg.init else 1.0)
    backbone = {id(p) for p in net.backbone.parameters()}
    optimizer = build_optimizer(
        cfg.optim,
        [
            {"params": net.backbone.parameters(), "lr": backbone_lr},
            # the head (and the inverted VAE's encoder and decoder)
            {"params": [p for p in net.parameters() if id(p) not in backbone], "lr": cfg.optim.lr},
        ],
        fused_optimizer(cfg),
    )
    schedule = warmup_cosine(sched.warmup_steps, sched.steps, sched.lr_decay)
    head_only = sched.head_warmup_steps if cfg.init else 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [lambda t: schedule(t) if t >= head_only else 0.0, schedule])
    return optimizer, scheduler


def build_job_step(cfg: PretrainConfig | FinetuneConfig, num_samples: int, data: FinetuneData | None) -> JobStep:
    """The step object of a job: pretraining (num_samples: train rows, for NAT's table) or the
    fine-tuning method cfg.method names (data: its labelled, validation and label-only sets)."""
    if isinstance(cfg, PretrainConfig):
        return PretrainStep(cfg, num_samples)
    if data is None:
        raise ValueError("a fine-tuning job needs its FinetuneData")
    return FinetuneStep(cfg, data)
