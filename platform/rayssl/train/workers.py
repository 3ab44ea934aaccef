"""The two kinds of worker the loop (rayssl.train.loop) runs on, behind one small interface (Worker):
a worker of a Ray Train worker group (RayTrainWorker), or the only worker of a one-worker run in the
caller's own process (InProcessWorker: a sweep's trials, in their Tune actor, where Ray refuses
ray.train's worker APIs), which persists checkpoints under the run directory itself
(checkpoints.persist) and hands each round's metrics to its caller."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import ray.util
import torch

from rayssl.config import FinetuneConfig, PretrainConfig
from rayssl.train import checkpoints


class RayTrainWorker:
    """One worker of a Ray Train worker group, as the loop sees it."""

    def __init__(self) -> None:
        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        group = ray.util.get_current_placement_group()  # the workers' group, for placement.release_placement_group
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


class InProcessWorker:
    """The only worker, in the caller's process, without a Ray Train context: it keeps checkpoints
    under the run directory as Ray Train would (the newest `num_to_keep`) and passes every round's
    metrics (with "checkpoint_path" when one was saved) to `report`."""

    rank, world_size, placement_group = 0, 1, None  # the current group is the caller's: never to be removed

    def __init__(self, cfg: PretrainConfig | FinetuneConfig, run_dir: str, dataset: Any, report: Callable[[dict[str, Any]], None]) -> None:
        self.cfg, self.run_dir, self._dataset, self._report = cfg, run_dir, dataset, report
        self.device = (
            torch.device("cuda", torch.cuda.current_device()) if cfg.train.use_gpu and torch.cuda.is_available() else torch.device("cpu")
        )

    def recorded_checkpoint(self) -> None:
        return None  # the caller passes the newest one on storage (WorkerSpec.resume_from)

    def dataset(self) -> Any:
        return self._dataset

    def prepare(self, model: torch.nn.Module, ddp: bool) -> torch.nn.Module:
        return model.to(self.device)  # one worker: nothing to synchronise

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        if checkpoint_dir is not None:
            metrics = {
                **metrics,
                "checkpoint_path": checkpoints.persist(checkpoint_dir, self.run_dir, self.cfg.storage, self.cfg.train.num_to_keep),
            }
        self._report(metrics)


Worker = RayTrainWorker | InProcessWorker
