"""`rayssl quality`, the sweep's leak check and `rayssl robustness` on a local Ray with tiny data (local and s3://)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_sweep import FINETUNE, sweep_config

from helpers import png_bytes, strokes
from rayssl.config import FinetuneConfig, QualityConfig, RobustnessConfig, StorageConfig, load_config
from rayssl.data import storage
from rayssl.data.shards import write_shards
from rayssl.data.sources import RawSample, SourceData, load_source
from rayssl.eval.classifier import score_on_test_split
from rayssl.eval.robustness import run_robustness
from rayssl.quality.labels import FEATURE_PROBE
from rayssl.quality.run import LeakedTestSplit, run_quality
from rayssl.train.launch import run_finetune
from rayssl.tune.sweep import run_sweep

pytestmark = pytest.mark.integration


def planted_source() -> SourceData:
    """40 train + 12 test stroke images, then four planted train rows:
    train/040 = train/000 re-encoded, train/041 = test/003 shifted by a pixel, train/042 corrupt, train/043 blank."""
    train = [(png_bytes(strokes(s)), s % 2) for s in range(40)]
    test = [(png_bytes(strokes(100 + s)), s % 2) for s in range(12)]
    buf = io.BytesIO()
    Image.fromarray(strokes(0)).save(buf, "PNG", compress_level=9)
    train += [
        (buf.getvalue(), 0),
        (png_bytes(np.roll(strokes(103), 1, axis=1)), 1),
        (b"\x89PNG broken", 0),
        (png_bytes(np.zeros((28, 28), np.uint8)), 1),
    ]
    return SourceData({"train": samples("train", train), "test": samples("test", test)}, ["even", "odd"])


def samples(split: str, rows: list[tuple[bytes, int]]) -> list[RawSample]:
    return [RawSample(f"{split}/{i:03d}", data, label) for i, (data, label) in enumerate(rows)]


def ids(members: list[dict]) -> list[str]:
    return [m["sample_id"] for m in members]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_quality_report_finds_every_planted_defect(ray_local, s3_endpoint, tmp_path, where):
    storage_cfg = StorageConfig(s3_endpoint=s3_endpoint) if where == "s3" else StorageConfig()
    root = "s3://rayssl-test/quality" if where == "s3" else str(tmp_path)
    shards, out = f"{root}/shards", f"{root}/report"
    write_shards(planted_source(), shards, rows_per_shard=16, storage_cfg=storage_cfg)
    report = run_quality(QualityConfig(shards=shards, out=out, storage=storage_cfg))
    assert [(r["sample_id"], r["split"]) for r in report["undecodable"]] == [("train/042", "train")]
    f = report["findings"]
    assert [ids(g) for g in f["exact_duplicates"]] == [["train/000", "train/040"]]
    assert [(x["a"]["sample_id"], x["b"]["sample_id"], x["kind"]) for x in f["leaks"]] == [("train/041", "test/003", "near")]
    assert ids(f["outliers"]["blank"]) == ["train/043"]
    assert f["class_balance"]["train"]["histogram"] == {"even": 21, "odd": 22} and report["rows"] == {"train": 44, "test": 12}
    assert report["summary"]["train/test leaks"] == 1 and report["summary"]["undecodable"] == 1
    written = json.loads(storage.read_bytes(storage.join(out, "quality.json"), storage_cfg))
    assert written["summary"] == report["summary"]
    assert "train/041 = test/003 (near)" in storage.read_bytes(storage.join(out, "quality.md"), storage_cfg).decode()
    with Image.open(io.BytesIO(storage.read_bytes(storage.join(out, "quality.png"), storage_cfg))) as png:
        assert png.size[0] > 300


def test_quality_judges_labels_with_a_pretraining_runs_embeddings(ray_local, local_shards, nat_run, tmp_path):
    report = run_quality(QualityConfig(shards=local_shards, out=str(tmp_path / "quality"), features_from=nat_run[1].run_dir))
    f = report["findings"]
    assert f["label_issues_from"].startswith(f"{FEATURE_PROBE}, 5-fold out of sample (accuracy ")
    # Bright-left vs bright-right blobs: the probe on the NAT backbone's embeddings can judge their labels.
    assert f["label_probe_accuracy"] >= 0.8 and "not listed" not in f["label_issues_from"]
    assert f["label_issues_shown"] == len(f["label_issues"]) and report["rows"] == {"train": 48, "test": 16}
    with pytest.raises(FileNotFoundError, match=r"^features_from: .*absent is not a run directory"):
        run_quality(QualityConfig(shards=local_shards, out=str(tmp_path / "q2"), features_from=str(tmp_path / "absent")))


def test_sweep_refuses_a_leaking_test_split_before_any_trial(ray_local, tmp_path):
    shards = str(tmp_path / "shards")
    write_shards(planted_source(), shards, rows_per_shard=16)
    cfg = sweep_config(shards, str(tmp_path / "runs"), "leak_check=refuse")
    with pytest.raises(LeakedTestSplit, match=r"1 duplicate pair joins the test split .* train/041 = test/003 \(near\)"):
        run_sweep(cfg)
    assert not (tmp_path / "runs" / "sweep" / "trials").exists()
    assert json.loads((tmp_path / "runs" / "sweep" / "leak_check" / "leaks.json").read_text())[0]["b"]["sample_id"] == "test/003"


def test_robustness_of_a_fine_tuned_classifier_and_of_a_pretrained_probe(ray_local, s3_endpoint, local_shards, nat_run, tmp_path):
    cfg = load_config(
        FinetuneConfig,
        None,
        [
            f"data.shards={local_shards}",
            f"run.storage_path={tmp_path / 'runs'}",
            "optim.lr=0.01",
            *(o.removeprefix("finetune.") for o in FINETUNE),
        ],
    )
    outcome = run_finetune(cfg)
    clean = score_on_test_split(cfg, outcome.checkpoint, outcome.run_dir)
    report = run_robustness(
        RobustnessConfig(
            run=outcome.run_dir, corruptions=["gaussian_noise", "rotate", "brightness"], severities=[1, 5], target_shards=local_shards
        )
    )
    s = report["summary"]
    assert s["clean_acc"] == pytest.approx(clean)  # severity 0 is the test split itself
    assert report["domain_shift"]["accuracy"] == pytest.approx(clean)  # the "new domain" here is the same shards
    assert set(report["accuracy"]) == {"gaussian_noise", "rotate", "brightness"} and set(report["accuracy"]["rotate"]) == {"1", "5"}
    cells = [a for per in report["accuracy"].values() for a in per.values()]
    assert s["mean_corruption_acc"] == pytest.approx(np.mean(cells)) and s["relative_robustness"] == pytest.approx(
        s["mean_corruption_acc"] / clean
    )
    again = run_robustness(RobustnessConfig(run=outcome.run_dir, corruptions=["gaussian_noise", "rotate", "brightness"], severities=[1, 5]))
    assert again["accuracy"] == report["accuracy"]  # seeded: the same corrupted test set
    out = Path(outcome.run_dir) / "robustness"
    # The same test split read from s3:// (moto), the report written there too.
    s3 = StorageConfig(s3_endpoint=s3_endpoint)
    write_shards(load_source("folder", str(tmp_path / "raw")), "s3://rayssl-test/robustness/shards", rows_per_shard=16, storage_cfg=s3)
    remote = run_robustness(
        RobustnessConfig(
            run=outcome.run_dir,
            shards="s3://rayssl-test/robustness/shards",
            out="s3://rayssl-test/robustness/report",
            corruptions=["gaussian_noise"],
            severities=[1],
            storage=s3,
        )
    )
    assert remote["summary"]["clean_acc"] == pytest.approx(clean) and remote["accuracy"]["gaussian_noise"] == {
        "1": report["accuracy"]["gaussian_noise"]["1"]
    }
    assert "| gaussian_noise |" in storage.read_bytes("s3://rayssl-test/robustness/report/robustness.md", s3).decode()
    # The fine-tuned classifier also gives the quality report's label check its probabilities.
    quality = run_quality(QualityConfig(shards=local_shards, out=str(tmp_path / "quality"), finetune_run=outcome.run_dir))
    assert quality["findings"]["label_issues_from"].startswith("the fine-tuned classifier's probabilities (accuracy ")
    assert quality["findings"]["label_probe_accuracy"] == pytest.approx(clean, abs=1e-4)  # the gate judges its test accuracy
    assert len(quality["findings"]["label_issues"]) <= 64 * (1 - clean) + 8  # few images disagree with a classifier this accurate
    assert "| gaussian_noise |" in (out / "robustness.md").read_text() and (out / "robustness.png").stat().st_size > 1000

    probe = run_robustness(RobustnessConfig(run=nat_run[1].run_dir, corruptions=["contrast"], severities=[1], probe_train_samples=48))
    assert probe["model"].startswith("linear probe on the frozen NAT backbone")
    assert probe["summary"]["clean_acc"] >= 0.85  # bright-left vs bright-right blobs are separable
