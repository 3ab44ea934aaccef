"""A user's labels: label tables (every bad-table error), partial and imbalanced labels, the stratified
hold-outs and the class-balanced sampler. No Ray."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from rayssl.config import StorageConfig
from rayssl.data.balanced import LabelledBatchSampler
from rayssl.data.label_table import LabelTableError, label_listing, read_label_table, resolve_labels
from rayssl.data.labelled import pin_labelled
from rayssl.data.labels import LabelBudgetError, LabelSplit, draw_labels, held_out_count
from rayssl.eval.classifier import classification_report

TRAIN_IDS = [f"train/img{i:03d}.png" for i in range(10)]
CLASSES = ["cat", "dog", "fox"]


def table_of(tmp_path, text: str):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return read_label_table(str(path))


def test_csv_names_and_ids_resolve_to_class_ids(tmp_path):
    table = table_of(tmp_path, "path,label\ntrain/img001.png,dog\ntrain/img004.png,2\ntrain/img007.png,cat\ntrain/img004.png,fox\n")
    resolved = resolve_labels(table, TRAIN_IDS, CLASSES)
    assert resolved.labels.tolist() == [-1, 1, -1, -1, 2, -1, -1, 0, -1, -1]
    assert resolved.repeated == 1 and resolved.rows == 4 and resolved.per_class == {0: 1, 1: 1, 2: 1}


def test_parquet_table_with_sample_id_key(tmp_path):
    path = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"sample_id": ["train/img002.png", "train/img003.png"], "label": [1, 0]}), path)
    resolved = resolve_labels(read_label_table(str(path)), TRAIN_IDS, CLASSES)
    assert resolved.labels[[2, 3]].tolist() == [1, 0] and (resolved.labels >= 0).sum() == 2


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "path,label\ntrain/img001.png,dog\ntrain/nope.png,cat\n",
            r"labels.csv line 3: path 'train/nope.png' is in no shard of the train split \(keys look like 'train/img000.png'\)",
        ),
        (
            "path,label\ntrain/img001.png,dog\ntrain/img001.png,cat\n",
            r"labels.csv line 3: 'train/img001.png' is labelled 'cat' here and 'dog' at line 2",
        ),
        ("path,label\ntrain/img001.png,wolf\n", r"labels.csv line 2: unknown class 'wolf' \(classes: cat, dog, fox\)"),
        ("path,label\ntrain/img001.png,\n", r"labels.csv line 2: empty label for path 'train/img001.png'"),
        ("path,label\ntrain/img001.png,7\n", r"labels.csv line 2: class id 7 is out of range \[0, 3\)"),
        ("path,label\n,dog\n", r"labels.csv line 2: empty path"),
        (
            "file,class\na,b\n",
            r"label table .*labels.csv: needs a key column \(sample_id or path\) and a `label` column, has \['file', 'class'\]",
        ),
    ],
)
def test_every_bad_table_is_one_line_naming_file_and_row(tmp_path, text, message):
    with pytest.raises(LabelTableError, match=message) as raised:
        resolve_labels(table_of(tmp_path, text), TRAIN_IDS, CLASSES, test_ids={"test/img001.png"})
    assert "\n" not in str(raised.value)


def test_keys_naming_test_images_are_skipped_and_counted(tmp_path):
    # the table given to `shards build --labels` (which may label test images) works again at fine-tune time
    table = table_of(tmp_path, "path,label\ntest/img001.png,dog\ntrain/img003.png,fox\n")
    resolved = resolve_labels(table, TRAIN_IDS, CLASSES, test_ids={"test/img001.png"})
    assert resolved.test_keys == 1 and resolved.labels[3] == 2 and (resolved.labels >= 0).sum() == 1


def test_a_label_contradicting_the_shards_is_refused(tmp_path):
    table = table_of(tmp_path, "path,label\ntrain/img001.png,dog\n")
    shard_labels = np.full(10, -1)
    shard_labels[1] = 0
    with pytest.raises(LabelTableError, match="labelled 'dog' here but 'cat' in the shards"):
        resolve_labels(table, TRAIN_IDS, CLASSES, shard_labels=shard_labels)


def test_missing_table_is_one_line(tmp_path):
    with pytest.raises(LabelTableError, match="label table .*missing.csv not found"):
        read_label_table(str(tmp_path / "missing.csv"))


def test_shards_without_classes_take_the_tables_sorted_names(tmp_path):
    table = table_of(tmp_path, "path,label\ntrain/img001.png,zebra\ntrain/img002.png,ant\n")
    resolved = resolve_labels(table, TRAIN_IDS, None)
    assert resolved.classes == ["ant", "zebra"] and resolved.labels[[1, 2]].tolist() == [1, 0]


def test_build_time_labels_reach_every_split(tmp_path):
    table = table_of(tmp_path, "path,label\ntrain/a.png,dog\ntest/b.png,cat\n")
    labels, classes = label_listing(
        table, {"train": [("train/a.png", None), ("train/c.png", None)], "test": [("test/b.png", None)]}, CLASSES
    )
    assert labels == {"train": [1, None], "test": [0]} and classes == CLASSES


def test_all_uses_every_label_outside_a_stratified_validation():
    labels = np.array([0] * 8 + [1] * 3 + [2] * 40 + [-1] * 100)
    split = draw_labels(labels, "all", val_per_class=10, val_fraction=0.2, seed=0)
    # round(0.2 n), at least 1, at most 10: 8 -> 2, 3 -> 1, 40 -> 8
    assert np.bincount(labels[split.validation], minlength=3).tolist() == [2, 1, 8]
    assert np.bincount(labels[split.labelled], minlength=3).tolist() == [6, 2, 32]
    assert (labels[split.labelled] >= 0).all() and not set(split.labelled) & set(split.validation)
    assert [held_out_count(n, 0.2, 10) for n in (1, 2, 8, 40, 6000)] == [1, 1, 2, 8, 10]


def test_nested_budgets_from_partial_labels():
    labels = np.array([0] * 8 + [1] * 3 + [-1] * 50)
    budgets = {k: draw_labels(labels, k, 10, 0.2, seed=4) for k in (1, 2, 5, "all")}
    assert set(budgets[1].labelled) <= set(budgets[2].labelled) <= set(budgets[5].labelled) <= set(budgets["all"].labelled)
    assert all(np.array_equal(budgets[1].validation, b.validation) for b in budgets.values())
    assert budgets[5].shortfall == {1: 2} and budgets[2].shortfall == {}


def test_a_class_with_one_label_cannot_give_validation_and_training():
    with pytest.raises(LabelBudgetError, match="class 'fox' has 1 label"):
        draw_labels(np.array([0, 0, 0, 1, 1, 2]), "all", 10, 0.2, seed=0, names=CLASSES)


def test_test_hold_out_is_stratified_and_the_same_for_every_draw():
    labels = np.array([0] * 20 + [1] * 10 + [2] * 3)
    a = draw_labels(labels, "all", 10, 0.2, seed=0, test_fraction=0.2)
    b = draw_labels(labels, 2, 10, 0.2, seed=5, test_fraction=0.2)
    assert np.bincount(labels[a.test], minlength=3).tolist() == [4, 2, 1]
    assert np.array_equal(a.test, b.test)
    assert not (set(a.test) & set(a.labelled)) and not (set(a.test) & set(a.validation))
    assert not (set(b.test) & set(b.labelled)) and not (set(b.test) & set(b.validation))


def test_a_list_of_images_replaces_the_draw_and_leaves_validation_and_test(tmp_path):
    labels = np.array([0, 0, 1, 1, 2, 2, -1, 0, 1, 2])
    drawn = LabelSplit(labelled=np.array([0, 2]), validation=np.array([1, 3, 5]), test=np.array([9]))
    listed = tmp_path / "picks.csv"
    listed.write_text("rank,sample_id,cluster\n1,train/img003.png,0\n2,train/img007.png,1\n3,train/img003.png,0\n")
    split, report = pin_labelled(drawn, str(listed), np.array(TRAIN_IDS, dtype=object), labels, set(), StorageConfig())
    assert split.labelled.tolist() == [3, 7] and split.validation.tolist() == [1, 5] and split.test.tolist() == [9]
    assert report["taken_from_validation"] == 1 and report["taken_from_test_hold_out"] == 0
    listed.write_text("sample_id\ntrain/img002.png\ntrain/img006.png\n")  # img006 has no label
    with pytest.raises(LabelTableError, match=r"picks.csv line 3: sample_id 'train/img006.png' has no label \(1 listed"):
        pin_labelled(drawn, str(listed), np.array(TRAIN_IDS, dtype=object), labels, set(), StorageConfig())
    listed.write_text("sample_id\ntest/img000.png\n")
    with pytest.raises(LabelTableError, match="line 2: sample_id 'test/img000.png' is a test image"):
        pin_labelled(drawn, str(listed), np.array(TRAIN_IDS, dtype=object), labels, {"test/img000.png"}, StorageConfig())


def test_balanced_sampler_draws_every_class_equally_often():
    torch.manual_seed(0)
    labels = torch.tensor([0] * 40 + [1] * 5 + [2] * 3)
    sampler = LabelledBatchSampler(labels, batch_size=32, balanced=True)
    drawn = labels[torch.cat([sampler.draw() for _ in range(300)])]
    share = torch.bincount(drawn).double() / len(drawn)
    assert torch.allclose(share, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.02), share
    plain = labels[torch.cat([LabelledBatchSampler(labels, 32, balanced=False).draw() for _ in range(300)])]
    assert torch.bincount(plain)[0] / len(plain) > 0.75  # 40 of 48 rows


def test_balanced_sampler_on_balanced_labels_is_the_uniform_draw():
    labels = torch.tensor([0, 1, 2] * 5)
    torch.manual_seed(1)
    picks = LabelledBatchSampler(labels, 32, balanced=True).draw()
    torch.manual_seed(1)
    assert torch.equal(picks, torch.randint(15, (32,)))


def test_classification_report_per_class_and_balanced_accuracy():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    report = classification_report(predicted, labels, CLASSES)
    assert report["accuracy"] == pytest.approx(6 / 8)
    assert report["per_class_accuracy"] == {"cat": 0.75, "dog": 0.5, "fox": 1.0}
    assert report["balanced_accuracy"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert report["confusion_matrix"] == [[3, 1, 0], [1, 1, 0], [0, 0, 2]]
