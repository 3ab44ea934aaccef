"""TensorBoard event files of a run, written by rank 0 at the end of every round.

    <run dir>/tensorboard/events.out.tfevents.*   scalars (loss, lr, images_per_s, quarantined,
                                                 val_acc, reassigned_fraction, ...) and images
                                                 (MAE reconstruction grids), against global step

`tensorboard --logdir runs` (or `make tensorboard`) shows every run and sweep trial under runs/.
Event files are appended locally; for a run directory in object storage they are written to a
local staging directory and copied up after each round, so a remote run's curves survive it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter

from rayssl.config import StorageConfig
from rayssl.data import storage

# Round metrics that are positions, not measurements: the x axis already shows them.
NOT_SCALARS = frozenset({"epoch", "global_step"})


class RunWriter:
    def __init__(self, run_dir: str, storage_cfg: StorageConfig) -> None:
        self.target = storage.join(run_dir, "tensorboard")
        self.storage_cfg = storage_cfg
        self.remote = storage.is_remote(run_dir)
        self.local = tempfile.mkdtemp(prefix="rayssl-tensorboard-") if self.remote else storage.resolve(self.target, storage_cfg)[1]
        self.writer = SummaryWriter(self.local)

    def scalars(self, metrics: dict[str, Any], step: int) -> None:
        """Every numeric metric (bools and strings skipped) as a scalar at `step`."""
        for name, value in metrics.items():
            if name not in NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(name, value, step)

    def images(self, images: dict[str, torch.Tensor], step: int) -> None:
        """{tag: image [C, H, W] in [0, 1]}."""
        for tag, image in images.items():
            self.writer.add_image(tag, image, step)

    def flush(self) -> None:
        self.writer.flush()
        if self.remote:  # small files (kilobytes per round): copy them whole
            for path in Path(self.local).iterdir():
                storage.write_bytes(storage.join(self.target, path.name), path.read_bytes(), self.storage_cfg)

    def close(self) -> None:
        self.flush()
        self.writer.close()
