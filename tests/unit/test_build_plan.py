"""Shard plans of a listing (no Ray): sizes by bytes, labels from class folders, stable indices."""

from __future__ import annotations

import pytest

from rayssl.data.build import plan_shards
from rayssl.data.label_table import LabelTableError, read_label_table
from rayssl.data.sources import SourceError


def test_shards_are_cut_by_encoded_bytes():
    listing = [(f"cat/{i:03d}.jpg", 400) for i in range(10)] + [("dog/big.jpg", 5000)] + [(f"dog/{i:03d}.jpg", 400) for i in range(5)]
    plans, classes = plan_shards(listing, shard_bytes=1000, test_fraction=0)
    assert classes == ["cat", "dog"]
    for p in plans:
        assert p.encoded_bytes <= 1000 or len(p.keys) == 1  # an image larger than a shard gets its own
    assert [len(p.keys) for p in plans] == [2, 2, 2, 2, 2, 1, 2, 2, 1]
    assert [p.first_index for p in plans] == [0, 2, 4, 6, 8, 10, 11, 13, 15]  # dense, in key order
    assert plans[5].keys == ["dog/big.jpg"] and plans[5].labels == [1]
    assert [p.path for p in plans[:2]] == ["train/part-00000.parquet", "train/part-00001.parquet"]


def test_train_and_test_folders_and_a_seeded_holdout():
    listing = sorted(
        [(f"train/{c}/{i}.png", 10) for c in "ab" for i in range(4)] + [(f"test/{c}/{i}.png", 10) for c in "ab" for i in range(2)]
    )
    plans, classes = plan_shards(listing, shard_bytes=10**6)
    assert classes == ["a", "b"] and {p.split for p in plans} == {"train", "test"}
    assert [len(p.keys) for p in plans] == [8, 4]
    flat = sorted((f"{c}/{i}.png", 10) for c in "ab" for i in range(10))
    a, _ = plan_shards(flat, 10**6, test_fraction=0.2, seed=3)
    b, _ = plan_shards(flat, 10**6, test_fraction=0.2, seed=3)
    assert a == b and [len(p.keys) for p in a] == [16, 4]
    assert sorted(a[1].labels) == [0, 0, 1, 1]  # stratified


def test_unlabelled_files_and_an_empty_listing():
    plans, classes = plan_shards([("x.jpg", 1), ("y.jpg", 1)], 10, test_fraction=0)
    assert classes is None and plans[0].labels == [None, None]
    with pytest.raises(SourceError, match="no images"):
        from rayssl.config import StorageConfig
        from rayssl.data.build import list_images

        list_images("/nonexistent/folder", StorageConfig())


def test_a_label_table_labels_the_parallel_build(tmp_path):
    # unlabelled train images in one folder, class folders only under test/: the table names two train images
    listing = sorted([(f"train/img{i}.png", 10) for i in range(4)] + [(f"test/{c}/{i}.png", 10) for c in ("cat", "dog") for i in range(2)])
    (tmp_path / "labels.csv").write_text("path,label\ntrain/img1.png,dog\ntrain/img3.png,cat\n")
    plans, classes = plan_shards(listing, 10**6, table=read_label_table(str(tmp_path / "labels.csv")))
    assert classes == ["cat", "dog"]
    train, test = (p for p in plans if p.split == "train"), (p for p in plans if p.split == "test")
    assert next(train).labels == [None, 1, None, 0] and next(test).labels == [0, 0, 1, 1]
    (tmp_path / "labels.csv").write_text("path,label\ntrain/img9.png,dog\n")
    with pytest.raises(LabelTableError, match="line 2: path 'train/img9.png' is in no shard of any split of the source"):
        plan_shards(listing, 10**6, table=read_label_table(str(tmp_path / "labels.csv")))
