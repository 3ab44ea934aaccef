import gzip
import json
import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import make_image_folder
from rayssl.cli import main
from rayssl.data.shards import ShardError, list_shards, read_manifest, validate_shards, write_shards
from rayssl.data.sources import SourceError, load_source


@pytest.fixture
def shard_dir(tmp_path):
    src = make_image_folder(tmp_path / "raw", per_class=10)
    out = tmp_path / "shards"
    write_shards(load_source("folder", str(src)), str(out), rows_per_shard=8, source_name="folder")
    return out


def test_manifest_counts_histogram_and_stable_ids(shard_dir):
    manifest = validate_shards(str(shard_dir), checksums=True)
    train = manifest["splits"]["train"]
    assert train["rows"] == 20 and [s["rows"] for s in train["shards"]] == [8, 8, 4]
    assert train["class_histogram"] == {"0": 10, "1": 10}
    assert manifest["classes"] == ["class0", "class1"]
    table = pa.concat_tables(pq.read_table(s.uri) for s in list_shards(str(shard_dir), "train"))
    assert table.column("index").to_pylist() == list(range(20))
    ids = table.column("sample_id").to_pylist()
    assert len(set(ids)) == 20 and ids[0] == "train/class0/img000.png"


def test_missing_or_empty_prefix_says_no_shards(tmp_path):
    with pytest.raises(ShardError, match=f"no shards found under {tmp_path / 'nope'}"):
        read_manifest(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardError, match="no shards found"):
        validate_shards(str(tmp_path / "empty"))


def test_truncated_shard_is_named(shard_dir):
    victim = shard_dir / "train" / "part-00001.parquet"
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(ShardError, match=r"part-00001\.parquet: unreadable parquet") as exc:
        validate_shards(str(shard_dir))
    assert "part-00000" not in str(exc.value)


def test_schema_mismatch_is_named(shard_dir):
    victim = shard_dir / "train" / "part-00002.parquet"
    pq.write_table(pa.table({"sample_id": ["x"], "index": [0], "image": ["text, not binary"], "label": [1]}), victim)
    with pytest.raises(ShardError, match=r"part-00002\.parquet: schema mismatch: column 'image'"):
        validate_shards(str(shard_dir))


def test_checksum_mismatch_is_named(shard_dir):
    manifest_path = shard_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["splits"]["test"]["shards"][0]["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    validate_shards(str(shard_dir))  # footers are fine
    with pytest.raises(ShardError, match=r"test/part-00000\.parquet: sha256"):
        validate_shards(str(shard_dir), checksums=True)


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_idx_source(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 3)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    data = load_source("mnist", str(tmp_path))
    train = list(data.splits["train"])
    assert len(train) == 6 and train[2].label == 2 and train[0].sample_id == "train/000000"
    assert len(list(data.splits["test"])) == 3


def test_truncated_idx_is_an_error(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28)))
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "rb") as f:
        data = f.read()
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(data[:-10])
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(2))
    with pytest.raises(ValueError, match="truncated IDX"):
        load_source("mnist", str(tmp_path))


def test_cifar10_binary_source(tmp_path):
    records = np.zeros((4, 3073), np.uint8)
    records[:, 0] = [3, 1, 4, 1]
    records[1, 1:1025] = 200  # red plane of image 1
    for i in range(1, 6):
        (tmp_path / f"data_batch_{i}.bin").write_bytes(records.tobytes())
    (tmp_path / "test_batch.bin").write_bytes(records[:2].tobytes())
    data = load_source("cifar10", str(tmp_path))
    train = list(data.splits["train"])
    assert len(train) == 20 and [s.label for s in train[:4]] == [3, 1, 4, 1]
    from rayssl.data.decode import ImageSpec, decode_image

    pixel = decode_image(train[1].image, ImageSpec(32, 3))[0, 0]
    assert pixel.tolist() == [200, 0, 0]


def test_digits_split_is_stratified_and_disjoint():
    data = load_source("digits", test_fraction=0.2, seed=0)
    train, test = list(data.splits["train"]), list(data.splits["test"])
    assert len(train) + len(test) == 1797 and abs(len(test) - 360) <= 1
    assert len({s.label for s in test}) == 10


def test_idx_counts_that_disagree_are_named(tmp_path):
    for prefix, n_images, n_labels in (("train", 6, 5), ("t10k", 3, 3)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", np.zeros((n_images, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.zeros(n_labels))
    with pytest.raises(SourceError, match="train has 6 images but 5 labels"):
        load_source("mnist", str(tmp_path))


def test_empty_folder_source_says_no_images(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"no images found under .*empty: the folder is empty"):
        load_source("folder", str(tmp_path / "empty"))
    # the command line prints the same one line and exits 2, no traceback
    assert main(["shards", "build", "--source", "folder", "--path", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "no images found under" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_folder_without_image_files_names_one(tmp_path):
    (tmp_path / "docs" / "cat").mkdir(parents=True)
    (tmp_path / "docs" / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(SourceError, match=r"1 file\(s\), none with an image suffix .*cat/notes\.txt"):
        load_source("folder", str(tmp_path / "docs"))


def test_class_folder_without_images_is_named(tmp_path):
    src = make_image_folder(tmp_path / "raw", per_class=4) / "train"  # class folders, no split folders
    (src / "zebra").mkdir()
    (src / "zebra" / "README").write_text("to do")
    with pytest.raises(SourceError, match=r"class folder .*zebra has no images"):
        load_source("folder", str(src))


def test_class_with_one_image_cannot_be_held_out(tmp_path):
    src = make_image_folder(tmp_path / "raw", per_class=4) / "train"  # class folders: the test split is held out
    lonely = src / "lonely"
    lonely.mkdir()
    next(src.glob("class0/*.png")).rename(lonely / "only.png")
    with pytest.raises(SourceError, match="class folder 'lonely' has 1 image"):
        load_source("folder", str(src))
    assert load_source("folder", str(src), test_fraction=0).classes[-1] == "lonely"
