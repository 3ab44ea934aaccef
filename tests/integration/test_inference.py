"""`rayssl predict` / `rayssl embed` on the shared local Ray: a shard set, a folder with a corrupt
image, predictions against the exported program, embeddings against the eager backbone."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from conftest import write_tiny_shards
from helpers import png_bytes
from rayssl.config import ConfigError, FinetuneConfig, PretrainConfig, StorageConfig, dump_yaml, load_config
from rayssl.data.decode import decode_batch, image_spec
from rayssl.data.transforms import ImageTransform
from rayssl.inference.embed import embed_run
from rayssl.inference.export import load_exported
from rayssl.inference.inputs import QUARANTINE_RUN
from rayssl.inference.predict import predict_run
from rayssl.inference.runs import load_backbone, read_run
from rayssl.methods import build_method
from rayssl.train import checkpoints
from rayssl.train.launch import RunOutcome, run_finetune

FINETUNE = [
    "data.image_size=8",
    "data.batch_size=8",
    "model.name=small_cnn",
    "model.width=8",
    "model.embed_dim=16",
    "semisup.num_classes=2",
    "semisup.val_per_class=4",
    "semisup.labelled_batch_size=4",
    "schedule.steps=20",
    "schedule.eval_every=20",
    "schedule.warmup_steps=2",
    "schedule.ema_decay=0.9",
    "optim.lr=0.01",
    "train.num_workers=1",
]


@pytest.fixture(scope="module")
def tuned(ray_local, tmp_path_factory) -> tuple[FinetuneConfig, RunOutcome, Path]:
    """A tiny fine-tuned classifier (20 steps, in this process: no Train actors to start) and its shards' raw folder."""
    root = tmp_path_factory.mktemp("inference")
    cfg = load_config(FinetuneConfig, None, [f"data.shards={write_tiny_shards(root)}", f"run.storage_path={root / 'runs'}", *FINETUNE])
    return cfg, run_finetune(cfg, report=lambda metrics: None), root / "raw"


def exported_probabilities(export_dir: str, spec, keys: list[str], images: list[bytes]) -> dict[str, np.ndarray]:
    """{key: softmax [K]} of the exported program, run here on rayssl's decode of the same bytes (one batch)."""
    model, pre = load_exported(export_dir, StorageConfig())
    ok, pixels, _ = decode_batch(keys, np.arange(len(keys)), images, spec)
    with torch.inference_mode():
        probs = torch.softmax(model(torch.from_numpy(ImageTransform(spec.size, None, spec.channels)(pixels))), dim=1).numpy()
    return dict(zip(np.array(keys)[ok], probs))


def assert_matches_exported(table, key: str, expected: dict[str, np.ndarray], classes: list[str]) -> None:
    rows = table.to_pylist()
    assert sorted(r[key] for r in rows) == sorted(expected)
    for r in rows:
        p = expected[r[key]]
        assert r["predicted_index"] == int(p.argmax()) and r["predicted"] == classes[int(p.argmax())]
        assert abs(r["confidence"] - p.max()) < 1e-6  # the same program; batches differ only in float32 rounding
        assert r["top_k_probs"] == pytest.approx(sorted(p, reverse=True), abs=1e-6)


def test_predict_a_shard_set_and_a_folder_with_a_corrupt_image(tuned, tmp_path):
    cfg, outcome, raw = tuned
    spec = image_spec(cfg.data, train=False)
    result = predict_run(
        outcome.run_dir, cfg.data.shards, str(tmp_path / "shards_out"), top_k=2, batch_size=16
    )  # default pool: 8 CPUs // 4 = 2 actors
    assert (result.rows, result.quarantined) == (64, 0)  # 48 train + 16 test rows, every split
    table = pq.read_table(tmp_path / "shards_out")
    assert table.column_names == [
        "sample_id",
        "split",
        "label",
        "predicted",
        "predicted_index",
        "confidence",
        "top_k_classes",
        "top_k_probs",
    ]
    assert table.schema.field("top_k_classes").type == pa.list_(pa.string()) and table.schema.field("top_k_probs").type == pa.list_(
        pa.float32()
    )
    shard_rows = pq.read_table(Path(cfg.data.shards) / "test").to_pylist() + pq.read_table(Path(cfg.data.shards) / "train").to_pylist()
    classes = json.loads((Path(cfg.data.shards) / "manifest.json").read_text())["classes"]
    truth = {r["sample_id"]: classes[r["label"]] for r in shard_rows}
    assert {r["sample_id"]: r["label"] for r in table.to_pylist()} == truth
    assert sorted(set(table.column("split").to_pylist())) == ["test", "train"]
    export_dir = str(Path(outcome.run_dir) / "export")
    expected = exported_probabilities(export_dir, spec, [r["sample_id"] for r in shard_rows], [r["image"] for r in shard_rows])
    assert_matches_exported(table, "sample_id", expected, classes)
    test_rows = [r for r in table.to_pylist() if r["split"] == "test"]
    assert np.mean([r["predicted"] == r["label"] for r in test_rows]) >= 0.75  # separable blobs after 20 steps; chance is 50%

    folder = tmp_path / "new_images"
    shutil.copytree(raw / "test", folder / "batch1")
    (folder / "batch1" / "class0" / "corrupt.png").write_bytes(png_bytes(np.zeros((8, 8), np.uint8))[:30])
    (folder / "notes.txt").write_text("not an image")
    only_test = predict_run(outcome.run_dir, cfg.data.shards, str(tmp_path / "test_out"), split="test", actors=1)
    assert only_test.rows == 16 and set(pq.read_table(tmp_path / "test_out").column("split").to_pylist()) == {"test"}
    result = predict_run(outcome.run_dir, str(folder), str(tmp_path / "folder_out"), top_k=5, actors=1)
    assert (result.rows, result.quarantined) == (16, 1)
    table = pq.read_table(tmp_path / "folder_out")
    assert table.column_names[0] == "path" and table.column("label").null_count == 16
    assert all(len(r["top_k_classes"]) == 2 for r in table.to_pylist())  # top-5 of a 2-class head
    records = [
        json.loads(line)
        for f in (tmp_path / "folder_out" / QUARANTINE_RUN / "quarantine").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert [r["sample_id"] for r in records] == ["batch1/class0/corrupt.png"]
    files = sorted(p for p in folder.rglob("*.png") if p.name != "corrupt.png")
    keys = [str(p.relative_to(folder)) for p in files]
    assert_matches_exported(table, "path", exported_probabilities(export_dir, spec, keys, [p.read_bytes() for p in files]), classes)

    # The standalone predict.py of the export, in a process without rayssl, names the same classes.
    env = {"PYTHONPATH": sysconfig.get_paths()["purelib"], "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-S", str(Path(export_dir) / "predict.py"), *map(str, files), "--out", str(tmp_path / "p.csv")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    standalone = {str(Path(r["path"]).relative_to(folder)): r["class"] for r in csv.DictReader((tmp_path / "p.csv").open())}
    assert standalone == {r["path"]: r["predicted"] for r in table.to_pylist()}


def test_embed_fine_tuned_and_pretraining_runs(tuned, tmp_path):
    cfg, outcome, _ = tuned
    result = embed_run(outcome.run_dir, cfg.data.shards, str(tmp_path / "emb"), split="test", actors=1)
    assert (result.rows, result.quarantined) == (16, 0)
    # Read back by plain pyarrow in a fresh process (no Ray imported, so no Ray extension type registered).
    probe = (
        "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); e = t.column('embedding');"
        "print(t.column_names, e.type, len(e), 'ray' in sys.modules)"
    )
    fresh = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "emb")], capture_output=True, text=True, timeout=60)
    assert fresh.stdout.split("] ", 1)[1].strip() == "fixed_size_list<element: float>[32] 16 False", fresh.stderr  # small_cnn: 4 x width
    assert fresh.stdout.startswith("['sample_id', 'split', 'embedding']")
    table = pq.read_table(tmp_path / "emb")
    shard_rows = pq.read_table(Path(cfg.data.shards) / "test").to_pylist()
    spec = image_spec(cfg.data, train=False)
    _, pixels, _ = decode_batch([r["sample_id"] for r in shard_rows], np.arange(16), [r["image"] for r in shard_rows], spec)
    with torch.inference_mode():
        eager = load_backbone(read_run(outcome.run_dir, StorageConfig()))(torch.from_numpy(ImageTransform(8, None, 1)(pixels))).numpy()
    got = dict(zip(table.column("sample_id").to_pylist(), np.array(table.column("embedding").to_pylist(), np.float32)))
    np.testing.assert_allclose(np.stack([got[r["sample_id"]] for r in shard_rows]), eager, rtol=0, atol=1e-5)

    # A pretraining run (written here as train.checkpoints would, untrained): embed takes it, predict refuses it.
    pretrain = load_config(
        PretrainConfig,
        None,
        [
            f"data.shards={cfg.data.shards}",
            f"run.storage_path={tmp_path}",
            "run.name=nat",
            "data.image_size=8",
            "model.width=8",
            "model.embed_dim=12",
            "nat.target_dim=8",
        ],
    )
    run_dir = tmp_path / "nat"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(dump_yaml(pretrain))
    checkpoints.save_local(
        run_dir / "checkpoint_0",
        build_method(pretrain, num_samples=64).model.state_dict(),
        {},
        {},
        {"epoch": 1, "global_step": 1, "metrics": {}},
    )
    result = embed_run(str(run_dir), cfg.data.shards, str(tmp_path / "emb_nat"), actors=1)
    assert result.rows == 64 and pq.read_table(tmp_path / "emb_nat").schema.field("embedding").type.list_size == 12
    with pytest.raises(ConfigError, match="pretraining run"):
        predict_run(str(run_dir), cfg.data.shards, str(tmp_path / "nope"))


def test_predict_an_s3_prefix_of_images(tuned, s3_endpoint, tmp_path):
    cfg, outcome, raw = tuned
    s3 = StorageConfig(s3_endpoint=s3_endpoint)
    files = sorted((raw / "test").rglob("*.png"))[:6]
    from rayssl.data import storage

    for p in files:
        storage.write_bytes(f"s3://rayssl-test/inference/new/{p.parent.name}/{p.name}", p.read_bytes(), s3)
    storage.write_bytes(
        "s3://rayssl-test/inference/new/broken.jpg", b"\xff\xd8 not a jpeg" * 100, s3
    )  # > 1 KB: see DESIGN (moto + pyarrow retries)
    result = predict_run(outcome.run_dir, "s3://rayssl-test/inference/new", "s3://rayssl-test/inference/out", actors=1, storage_cfg=s3)
    assert (result.rows, result.quarantined) == (6, 1)
    fs, path = storage.resolve("s3://rayssl-test/inference/out", s3)
    table = pq.read_table(path, filesystem=fs)
    assert sorted(table.column("path").to_pylist()) == sorted(f"{p.parent.name}/{p.name}" for p in files)
    local = predict_run(outcome.run_dir, str(raw / "test"), str(tmp_path / "local"), actors=1)  # the same files, from disk
    assert (local.rows, local.quarantined) == (len(list((raw / "test").rglob("*.png"))), 0)
    by_path = {r["path"]: r["top_k_probs"] for r in pq.read_table(tmp_path / "local").to_pylist()}
    for r in table.to_pylist():
        assert r["top_k_probs"] == pytest.approx(by_path[r["path"]], abs=1e-6)
