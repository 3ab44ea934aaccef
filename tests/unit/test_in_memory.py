"""The in-memory unlabelled split of fine-tuning (rayssl.data.in_memory), without Ray."""

import numpy as np
import pytest
import torch

from helpers import make_image_folder
from rayssl.config import AugmentConfig, DataConfig, StorageConfig
from rayssl.data import quarantine
from rayssl.data.in_memory import InMemoryBatches, decode_split, decoded_mb, fits_in_memory
from rayssl.data.shards import write_shards
from rayssl.data.sources import load_source


def test_fits_in_memory_by_decoded_size_and_crop():
    data = DataConfig(image_size=28, channels=1, in_memory_max_mb=45)
    assert decoded_mb(data, 60_000) == pytest.approx(60_000 * 784 / 2**20)  # MNIST: 44.86 MB
    assert fits_in_memory(data, 60_000) and not fits_in_memory(data, 61_000)
    assert not fits_in_memory(DataConfig(image_size=28, in_memory_max_mb=0), 1)  # 0: always stream
    assert not fits_in_memory(DataConfig(image_size=28, crop="random_crop"), 10)  # a random crop differs every epoch


def test_decode_split_quarantines_a_corrupt_image(tmp_path):
    raw = make_image_folder(tmp_path / "raw", per_class=6)
    (raw / "train" / "class1" / "img003.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    write_shards(load_source("folder", str(raw)), str(tmp_path / "shards"), rows_per_shard=5)
    data = DataConfig(shards=str(tmp_path / "shards"), image_size=8)
    split = decode_split(data, "train", str(tmp_path / "run"), StorageConfig())
    assert split.quarantined == 1 and split.images.shape == (11, 8, 8, 1) and split.images.dtype == np.uint8
    assert sorted(split.indices.tolist()) == [i for i in range(12) if i != 9]  # class1/img003 is row 6 + 3
    assert sorted(split.labels.tolist()) == [0] * 6 + [1] * 5
    assert list(quarantine.read_records(str(tmp_path / "run"), StorageConfig())) == ["train/train/class1/img003.png"]


def test_batches_split_rows_between_workers_and_reshuffle_each_epoch():
    indices = np.arange(100, 110)
    images = np.arange(10, dtype=np.uint8)[:, None, None, None].repeat(4, 1).repeat(4, 2)  # image i is all i
    data = DataConfig(image_size=4, batch_size=2, augment=AugmentConfig(translate_px=0, crop_scale_min=1.0))
    seen = []
    for rank in (0, 1):
        batches = InMemoryBatches(indices, images, data, second_view=AugmentConfig(translate_px=1), seed=3, rank=rank, world_size=2)
        first = list(batches.epoch(2, torch.device("cpu")))
        second = list(batches.epoch(2, torch.device("cpu")))
        assert len(first) == 2  # 5 rows per worker in full batches of 2: the last row waits for a later epoch
        rows = torch.cat([b["index"] for b in first]).tolist()
        assert set(rows) <= set(indices[rank::2].tolist()) and len(set(rows)) == 4
        assert rows != torch.cat([b["index"] for b in second]).tolist()  # reshuffled
        for batch in first:
            assert batch["image"].shape == (2, 1, 4, 4) and batch["image"].dtype == torch.float32
            assert batch["image_view2"].shape == (2, 1, 4, 4)
            # no augmentation on the first view: each image is its constant, normalised to [-1, 1]
            assert torch.allclose(batch["image"][:, 0, 0, 0], (batch["index"] - 100).float() / 255 * 2 - 1)
        seen += rows
    assert not set(seen[:4]) & set(seen[4:])  # the workers own disjoint rows
