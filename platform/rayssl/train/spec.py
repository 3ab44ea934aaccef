"""What the driver (rayssl.train.launch) hands every worker of a run (rayssl.train.loop): typed
objects, pickled once per worker. No Ray Train import here: the driver builds a spec before any
Train controller exists, and a sweep's in-process trials never start one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rayssl.config import AugmentConfig, FinetuneConfig, PretrainConfig
from rayssl.train.faults import FaultPlan

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.actor import ActorHandle

    from rayssl.train.steps import FinetuneData


@dataclass(frozen=True)
class WorkerSpec:
    """One run's job for its workers; the seed is cfg.train.seed."""

    cfg: PretrainConfig | FinetuneConfig  # the job: a PretrainConfig pretrains, a FinetuneConfig fine-tunes
    run_dir: str
    num_samples: int  # rows of the train split (the quarantine threshold's denominator; NAT's table)
    finetune_data: FinetuneData | None = None  # fine-tuning's labelled, validation and label-only sets
    # (indices int64 [N], uint8 images [N, H, W, C]) of a train split the driver decoded into memory
    # (rayssl.data.in_memory), read zero-copy by the workers on its node; None: the workers read the stream
    in_memory: ObjectRef | None = None
    second_view: AugmentConfig | None = None  # a second, independently augmented view of each unlabelled image
    resume_from: str | None = None  # the newest complete checkpoint on storage (the driver's look), if any
    faults: FaultPlan = FaultPlan()  # fault drills (rayssl.train.faults), from the driver's environment
    progress: ActorHandle | None = None  # the driver's live display's board (rayssl.train.progress.ProgressBoard), fed by rank 0
