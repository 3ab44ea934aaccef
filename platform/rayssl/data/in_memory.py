"""A small train split decoded once into memory, and the worker-side batches drawn from it.

Fine-tuning reads the unlabelled train split for thousands of steps. On a corpus whose decoded
pixels fit in a few hundred MB (MNIST: 45 MB, CIFAR-10: 154 MB), streaming it through Ray Data
costs more than it saves: the stream's actors and decode tasks start again in every run (every
sweep trial), and on a small machine its tasks decode and augment again on the trainer's own cores.
bench/finetune_input.py, FixMatch on MNIST, 2 cores: start-up + first 250 steps 72 s streamed vs
36 s from memory, 103 vs 91 ms per step (medians). So the driver decodes such a
split once (`decode_split`, quarantining what does not decode), and each worker augments
batches of its own rows from memory (`InMemoryBatches`), as the stream's DecodeAndTransform would.
Larger corpora, and photos decoded by random crop, always stream (rayssl.data.pipeline).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from rayssl.config import AugmentConfig, DataConfig, StorageConfig
from rayssl.data import quarantine
from rayssl.data.decode import decode_batch, image_spec
from rayssl.data.shardset import ShardSet
from rayssl.data.transforms import ImageTransform


def decoded_mb(data: DataConfig, rows: int) -> float:
    """Size in MB of `rows` images decoded to uint8 at data.image_size and data.channels."""
    return rows * data.image_size * data.image_size * data.channels / 2**20


def fits_in_memory(data: DataConfig, rows: int) -> bool:
    """Whether fine-tuning holds this many train images in memory instead of streaming them:
    whole-image resizing only (a random-crop decode differs every epoch) and at most
    data.in_memory_max_mb of decoded pixels."""
    return data.crop == "resize" and decoded_mb(data, rows) <= data.in_memory_max_mb


@dataclass(frozen=True)
class DecodedSplit:
    """A decoded split: indices int64 [N], images uint8 [N, H, W, C], labels int64 [N] (-1 unlabelled),
    and how many rows were quarantined as undecodable."""

    indices: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    quarantined: int


def decode_split(data: DataConfig, split: str, run_dir: str, storage_cfg: StorageConfig, shards: ShardSet | None = None) -> DecodedSplit:
    """Decode every row of one split (whole images, no augmentation). Undecodable rows are written
    to the run's quarantine (as the stream would) and left out; the caller checks the threshold.
    shards: data.shards already opened (else opened here, unchecked)."""
    shards = shards or ShardSet.open(data.shards, storage_cfg, check=False)
    table = shards.read_columns(split, ["sample_id", "index", "image", "label"])
    indices = table.column("index").to_numpy()
    ok, images, bad = decode_batch(
        table.column("sample_id").to_pylist(), indices, table.column("image").to_pylist(), image_spec(data, train=False)
    )
    quarantine.write_records(run_dir, split, bad, storage_cfg)
    labels = table.column("label").fill_null(-1).to_numpy()
    return DecodedSplit(indices[ok].astype(np.int64), images, labels[ok].astype(np.int64), len(bad))


class InMemoryBatches:
    """One worker's batches from a decoded split held in memory, shaped like the stream's:
    {"index": int64 [B], "image": float32 [B, C, H, W]} plus "image_view2" (a second, independently
    augmented view) when `second_view` is given.

    Worker `rank` of `world_size` owns rows rank, rank + world_size, ...; every epoch reshuffles
    them (numpy generator seeded with `seed` and the rank) and drops the last partial batch, like
    the stream's drop_last. Augmentation draws from torch's global generator, which the worker
    loop seeds per rank, and runs on the device the batch is asked for.
    """

    def __init__(
        self,
        indices: np.ndarray,
        images: np.ndarray,
        data: DataConfig,
        second_view: AugmentConfig | None,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        own = slice(rank, None, world_size)
        self.indices = torch.from_numpy(np.ascontiguousarray(indices[own]))
        self.images = torch.from_numpy(np.ascontiguousarray(images[own].transpose(0, 3, 1, 2)))  # uint8 [N, C, H, W]
        self.transform = ImageTransform(data.image_size, data.augment, data.channels)
        self.second_view = ImageTransform(data.image_size, second_view, data.channels) if second_view is not None else None
        self.rng = np.random.default_rng([seed, rank])

    def epoch(self, batch_size: int, device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
        """One shuffled pass over this worker's rows in full batches."""
        order = torch.from_numpy(self.rng.permutation(len(self.indices)))
        for first in range(0, len(order) - batch_size + 1, batch_size):
            rows = order[first : first + batch_size]
            images = self.images[rows].to(device)
            batch = {"index": self.indices[rows].to(device), "image": self.transform.tensor(images)}
            if self.second_view is not None:
                batch["image_view2"] = self.second_view.tensor(images)
            yield batch
