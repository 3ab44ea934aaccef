"""A user's corpus: unlabelled train images in one folder, labels in a CSV table, a labelled test
folder; fine-tuning with every label, then the model taken away (export, predict, embed), on a local
Ray with tiny generated data."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from helpers import png_bytes
from rayssl.cli import main
from rayssl.config import FinetuneConfig, SweepConfig, load_config
from rayssl.data.shards import read_manifest
from rayssl.eval.classifier import write_test_report
from rayssl.train.launch import run_finetune
from rayssl.tune.sweep import run_sweep

pytestmark = pytest.mark.integration

# Labels per class in the table: imbalanced, as a user's are.
TABLE_COUNTS = {"left": 9, "right": 4}


def blob(rng: np.random.Generator, bright_left: bool, size: int = 8) -> np.ndarray:
    img = rng.integers(0, 60, (size, size), dtype=np.uint8)
    img[:, : size // 2] += 150 * bright_left
    img[:, size // 2 :] += 150 * (not bright_left)
    return img


def user_corpus(root: Path, unlabelled: int = 40, test_per_class: int = 6) -> tuple[Path, Path]:
    """root/raw/train/*.png (no class folders), root/raw/test/<class>/*.png and root/labels.csv naming
    TABLE_COUNTS images of each class by path."""
    rng = np.random.default_rng(0)
    raw = root / "raw"
    (raw / "train").mkdir(parents=True)
    lines, wanted = ["path,label"], dict(TABLE_COUNTS)
    for i in range(unlabelled):
        name = "left" if i % 2 == 0 else "right"
        path = f"train/img{i:03d}.png"
        (raw / path).write_bytes(png_bytes(blob(rng, name == "left")))
        if wanted[name]:
            lines.append(f"{path},{name}")
            wanted[name] -= 1
    for name in TABLE_COUNTS:
        (raw / "test" / name).mkdir(parents=True)
        for i in range(test_per_class):
            (raw / "test" / name / f"t{i}.png").write_bytes(png_bytes(blob(rng, name == "left")))
    table = root / "labels.csv"
    table.write_text("\n".join(lines) + "\n")
    return raw, table


def finetune_config(shards: str, runs: Path, *overrides: str) -> FinetuneConfig:
    return load_config(
        FinetuneConfig,
        None,
        [
            f"data.shards={shards}",
            f"run.storage_path={runs}",
            "run.name=mine",
            "data.image_size=8",
            "data.batch_size=8",
            "model.name=small_cnn",
            "model.width=8",
            "semisup.num_classes=2",
            "semisup.labels_per_class=all",
            "semisup.labelled_batch_size=8",
            "schedule.steps=40",
            "schedule.eval_every=20",
            "schedule.warmup_steps=2",
            "optim.lr=0.01",
            "train.num_workers=1",
            *overrides,
        ],
    )


def test_labels_from_a_table_train_with_every_label(ray_local, tmp_path, capsys):
    raw, table = user_corpus(tmp_path)
    built, plain = str(tmp_path / "built"), str(tmp_path / "plain")
    assert main(["shards", "build", "--source", "folder", "--path", str(raw), "--out", built, "--labels", str(table)]) == 0
    assert main(["shards", "build", "--source", "folder", "--path", str(raw), "--out", plain]) == 0
    # The table at build time labels the train rows; the test split's labels come from its class folders.
    manifest = read_manifest(built)
    assert manifest["classes"] == ["left", "right"] and manifest["splits"]["train"]["class_histogram"] == {"0": 9, "1": 4}
    assert read_manifest(plain)["splits"]["train"]["class_histogram"] == {}

    # The same table attached at fine-tune time, without rewriting any image.
    cfg = finetune_config(plain, tmp_path / "runs", f"semisup.labels={table}")
    outcome = run_finetune(cfg, report=lambda metrics: None)
    plan = json.loads((Path(outcome.run_dir) / "labels.json").read_text())
    # val: round(0.2 n), at least one: 9 -> 2, 4 -> 1; everything else trains
    assert plan["labelled"] == {"left": 7, "right": 3} and plan["validation"] == {"left": 2, "right": 1}
    assert plan["test"] == "the shards' labelled test split" and plan["short_of_budget"] == {}
    report = write_test_report(cfg, outcome.checkpoint, outcome.run_dir)
    assert report["images"] == 12 and report["accuracy"] >= 0.85 and report["balanced_accuracy"] >= 0.85
    assert set(report["per_class_accuracy"]) == {"left", "right"} and (Path(outcome.run_dir) / "confusion.png").stat().st_size > 1000

    take_away(outcome.run_dir, raw / "test", tmp_path)

    # A budget larger than a class's labels takes what the class has, and says so.
    short = run_finetune(
        finetune_config(
            built, tmp_path / "runs", "run.name=short", "semisup.labels_per_class=5", "schedule.steps=2", "schedule.eval_every=2"
        ),
        report=lambda metrics: None,
    )
    assert json.loads((Path(short.run_dir) / "labels.json").read_text())["short_of_budget"] == {"right": 3}


def take_away(run_dir: str, test_folder: Path, tmp_path: Path) -> None:
    """`rayssl export`, then `rayssl predict` on the test folder equal to the export's standalone predict.py run
    where rayssl cannot be imported, then `rayssl embed`: one row per image, the backbone's width."""
    export, predictions, embeddings = tmp_path / "export", tmp_path / "predictions", tmp_path / "embeddings"
    assert main(["export", run_dir, "--out", str(export)]) == 0
    assert main(["predict", run_dir, str(test_folder), "--out", str(predictions), "--actors", "1"]) == 0
    predicted = {r["path"]: r["predicted"] for r in pq.read_table(predictions).to_pylist()}
    images = sorted(test_folder.rglob("*.png"))
    assert sorted(predicted) == sorted(str(p.relative_to(test_folder)) for p in images)
    env = {"PYTHONPATH": sysconfig.get_paths()["purelib"], "PATH": "/usr/bin:/bin"}  # torch, numpy, Pillow; not rayssl's source
    assert subprocess.run([sys.executable, "-S", "-c", "import rayssl"], env=env, capture_output=True).returncode != 0
    done = subprocess.run(
        [sys.executable, "-S", str(export / "predict.py"), *map(str, images), "--out", str(tmp_path / "standalone.csv")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    standalone = {str(Path(r["path"]).relative_to(test_folder)): r["class"] for r in csv.DictReader((tmp_path / "standalone.csv").open())}
    assert standalone == predicted and set(predicted.values()) <= {"left", "right"}
    assert main(["embed", run_dir, str(test_folder), "--out", str(embeddings), "--actors", "1"]) == 0
    vectors = pq.read_table(embeddings).column("embedding")
    assert len(vectors) == len(images) and vectors.type.list_size == 32  # small_cnn width 8: 4 x 8 features


def test_shards_without_a_labelled_test_split_hold_out_test_labels(ray_local, tmp_path):
    raw, table = user_corpus(tmp_path)
    for test_image in (raw / "test").rglob("*.png"):
        test_image.unlink()
    shards = str(tmp_path / "shards")
    assert (
        main(
            [
                "shards",
                "build",
                "--source",
                "folder",
                "--path",
                str(raw / "train"),
                "--out",
                shards,
                "--test-fraction",
                "0",
                "--labels",
                str(tmp_path / "relabelled.csv"),
            ]
        )
        == 2
    )  # the table's keys start with train/: not under this root
    (tmp_path / "relabelled.csv").write_text(table.read_text().replace("train/", ""))
    assert (
        main(
            [
                "shards",
                "build",
                "--source",
                "folder",
                "--path",
                str(raw / "train"),
                "--out",
                shards,
                "--test-fraction",
                "0",
                "--labels",
                str(tmp_path / "relabelled.csv"),
            ]
        )
        == 0
    )
    cfg = finetune_config(shards, tmp_path / "runs", "schedule.steps=20", "schedule.eval_every=20")
    outcome = run_finetune(cfg, report=lambda metrics: None)
    plan = json.loads((Path(outcome.run_dir) / "labels.json").read_text())
    # test: round(0.2 n), at least one, before validation: 9 -> 2 (7 left: val 1), 4 -> 1 (3 left: val 1)
    assert plan["test_held_out"] == {"left": 2, "right": 1} and plan["validation"] == {"left": 1, "right": 1}
    assert plan["labelled"] == {"left": 6, "right": 2} and plan["test"].startswith("held out from the labels: 3 images")
    report = write_test_report(cfg, outcome.checkpoint, outcome.run_dir)
    assert report["images"] == 3 and report["test_images"] == "held out from the labels"


def test_a_bad_table_stops_finetune_in_one_line_before_ray(tmp_path, capsys):
    raw, table = user_corpus(tmp_path)
    shards = str(tmp_path / "shards")
    assert main(["shards", "build", "--source", "folder", "--path", str(raw), "--out", shards]) == 0
    table.write_text(table.read_text() + "train/img999.png,left\n")
    code = main(
        [
            "finetune",
            "--set",
            f"data.shards={shards}",
            "--set",
            f"run.storage_path={tmp_path / 'runs'}",
            "--set",
            "semisup.num_classes=2",
            "--set",
            f"semisup.labels={table}",
            "--set",
            "semisup.labels_per_class=all",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"{table} line {2 + sum(TABLE_COUNTS.values())}: path 'train/img999.png' is in no shard of the train split" in err
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"budgets: [1, all]\nstorage_path: {tmp_path / 'runs'}\nfinetune:\n  data: {{shards: {shards}}}\n"
        f"  semisup: {{num_classes: 2, labels: {table}}}\n"
    )
    assert main(["sweep", "--config", str(sweep)]) == 2  # the same line, before Ray starts and not once per trial
    assert capsys.readouterr().err.strip() == err.replace("rayssl finetune:", "rayssl sweep:")


def test_sweep_budgets_are_sub_samples_of_the_users_labels(ray_local, tmp_path):
    raw, table = user_corpus(tmp_path)
    shards = str(tmp_path / "shards")
    assert main(["shards", "build", "--source", "folder", "--path", str(raw), "--out", shards]) == 0
    cfg = load_config(
        SweepConfig,
        None,
        [
            f"storage_path={tmp_path / 'runs'}",
            f"finetune.data.shards={shards}",
            f"finetune.semisup.labels={table}",
            "budgets=[2, all]",
            "label_seeds=[0]",
            "samples=1",
            "inversion=false",
            "leak_check='off'",
            "finetune.data.image_size=8",
            "finetune.model.name=small_cnn",
            "finetune.model.width=8",
            "finetune.semisup.num_classes=2",
            "finetune.schedule.steps=2",
            "finetune.schedule.eval_every=2",
            "finetune.train.num_workers=1",
        ],
    )
    rows = run_sweep(cfg)
    # "all": 7 + 3 labelled images after validation (9 -> 2, 4 -> 1), 5 per class on the labels-per-class axis
    assert [(r["budget"], r["labels_per_class"]) for r in rows] == [(2, 2.0), ("all", 5.0)]
    md = (tmp_path / "runs" / "sweep" / "label_efficiency.md").read_text()
    assert "| all (5.0) |" in md and "| 2 |" in md
