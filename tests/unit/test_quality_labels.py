"""Issue 37's label check you can act on, the embeddings it can use, and the contact sheet in colour (no Ray)."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import yaml
from PIL import Image

from helpers import png_bytes
from rayssl import cli
from rayssl.config import PretrainConfig, QualityConfig, to_dict
from rayssl.data.shards import write_shards
from rayssl.data.sources import RawSample, SourceData
from rayssl.quality import run as quality_run
from rayssl.quality.examples import read_examples, shrunk
from rayssl.quality.findings import find_issues
from rayssl.quality.labels import label_issues, weak_probe_reason
from rayssl.quality.report import contact_sheet, markdown
from rayssl.quality.run import aligned_rows, features_run, l2_normalised
from rayssl.quality.signatures import Signature, Signatures, signature


def synthetic_sigs(labels: np.ndarray, splits: list[str] | None = None, seed: int = 0) -> Signatures:
    """Signatures of len(labels) distinct noise images (never alike), through the scan's own `signature`."""
    n = len(labels)
    each = [signature(png_bytes(a)) for a in np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)]
    columns = {}
    for field in dataclasses.fields(Signature):  # every per-image column the scan keeps, whatever they are
        values = [getattr(s, field.name) for s in each]
        columns[field.name] = (
            values if isinstance(values[0], str) else np.stack(values) if isinstance(values[0], np.ndarray) else np.array(values)
        )
    splits = splits or ["train"] * n
    sample_id = [f"{s}/{i:04d}" for i, s in enumerate(splits)]
    return Signatures(split=splits, index=np.arange(n), sample_id=sample_id, label=np.asarray(labels, np.int64), rows_read={}, **columns)


def planted(n_per_class: int = 60, classes: int = 4, flips: int = 6, spread: float = 0.3, seed: int = 0):
    """(true labels, noisy labels, flipped positions, unit features [N, 16]) for well-separated classes."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(classes), n_per_class)
    centres = np.eye(16)[:classes] * 3
    features = centres[truth] + rng.normal(0, spread, (len(truth), 16))
    flipped = np.sort(rng.choice(len(truth), flips, replace=False))
    noisy = truth.copy()
    noisy[flipped] = (truth[flipped] + 1) % classes
    return truth, noisy, flipped, l2_normalised(features.astype(np.float32))


def test_a_strong_probe_on_embeddings_lists_the_planted_flips_with_its_accuracy():
    truth, noisy, flipped, features = planted()
    findings = find_issues(synthetic_sigs(noisy), [], QualityConfig(), features=features)
    assert sorted(int(x["sample_id"].split("/")[1]) for x in findings["label_issues"]) == flipped.tolist()
    assert all(x["suggested"] == truth[int(x["sample_id"].split("/")[1])] for x in findings["label_issues"])
    assert findings["label_probe_accuracy"] == pytest.approx(1 - len(flipped) / len(noisy), abs=0.01)
    assert (
        f"5-fold out of sample (accuracy {100 * findings['label_probe_accuracy']:.1f}% on 240 labelled images)"
        in findings["label_issues_from"]
    )
    assert "not listed" not in findings["label_issues_from"] and findings["label_issues_shown"] == len(flipped)


def test_a_weak_probe_lists_no_label_issues_and_says_why():
    _, noisy, _, _ = planted()
    noise = l2_normalised(np.random.default_rng(1).normal(size=(len(noisy), 16)).astype(np.float32))  # carries no class
    findings = find_issues(synthetic_sigs(noisy), [], QualityConfig(), features=noise)
    assert findings["label_issues"] == [] and findings["label_probe_accuracy"] < 0.5
    reason = findings["label_issues_from"].split("; label issues not listed: ")[1]
    assert reason == f"its accuracy {100 * findings['label_probe_accuracy']:.1f}% is below 80%, too weak to judge labels"
    md = markdown({"shards": "s", "seconds": 1.0, "images_per_s": 1.0, "undecodable": [], "summary": {"x": 0}, "findings": findings})
    assert "## Likely label issues (0)" in md and "label issues not listed" in md


def test_the_thumbnail_knn_is_gated_too_on_images_it_cannot_tell_apart():
    labels = np.random.default_rng(2).integers(0, 10, 400)  # noise images, random labels: a chance-level kNN
    findings = find_issues(synthetic_sigs(labels), [str(c) for c in range(10)], QualityConfig())
    assert findings["label_issues"] == [] and findings["label_probe_accuracy"] < 0.3
    assert (
        findings["label_issues_from"].startswith("a 10-NN classifier on PCA-32")
        and "too weak to judge labels" in findings["label_issues_from"]
    )


def test_rows_the_embedder_could_not_decode_are_left_out_of_the_probe():
    truth, noisy, flipped, features = planted()
    features[flipped[0]] = np.nan
    issues = find_issues(synthetic_sigs(noisy), [], QualityConfig(), features=features)["label_issues"]
    assert sorted(int(x["sample_id"].split("/")[1]) for x in issues) == flipped[1:].tolist()


def test_chance_bar_refuses_an_accuracy_that_the_majority_guess_nearly_matches():
    labels = np.array([0] * 95 + [1] * 5)  # always answering 0 is 95% accurate
    assert "not clearly above chance" in weak_probe_reason(0.9, labels, 2, 0.8)
    assert "it needs 97.5%" in weak_probe_reason(0.97, labels, 2, 0.8)
    assert weak_probe_reason(0.98, labels, 2, 0.8) is None
    balanced = np.repeat(np.arange(10), 10)
    assert weak_probe_reason(0.79, balanced, 10, 0.8) == "the probe's accuracy 79.0% is below 80%, too weak to judge labels"
    assert weak_probe_reason(0.8, balanced, 10, 0.8) is None


def test_label_issues_are_ranked_by_label_quality_most_suspicious_first():
    labels = np.repeat(np.arange(3), 30)
    probs = np.full((90, 3), 0.02)
    probs[np.arange(90), labels] = 0.96
    # Four samples whose given label the model doubts, to different degrees: (position, its
    # probability of the given label, of the next class); 10 and 20 tie on the first, 20 is the surer.
    for position, given_prob, other_prob in ((10, 0.0, 0.95), (20, 0.0, 0.99), (40, 0.01, 0.99), (70, 0.02, 0.98)):
        probs[position] = 1 - given_prob - other_prob
        probs[position, labels[position]] = given_prob
        probs[position, (labels[position] + 1) % 3] = other_prob
    positions, suggested, quality = label_issues(labels, probs)
    assert positions.tolist() == [20, 10, 40, 70]
    np.testing.assert_allclose(quality, [0.0, 0.0, 0.01, 0.02], atol=1e-12)
    assert suggested.tolist() == [(labels[p] + 1) % 3 for p in (20, 10, 40, 70)]


def test_a_fine_tuned_classifier_is_judged_by_its_test_accuracy():
    splits = ["train"] * 80 + ["test"] * 20
    truth = np.concatenate([np.repeat([0, 1], 40), np.repeat([0, 1], 10)])
    probs = np.eye(2)[truth] * 0.9 + 0.05  # right on every train image
    probs[80:] = probs[80:][:, ::-1]  # and wrong on every test image: it memorised its training set
    findings = find_issues(synthetic_sigs(truth, splits), ["a", "b"], QualityConfig(), pred_probs=probs)
    assert findings["label_issues"] == [] and findings["label_probe_accuracy"] == 0.0
    assert (
        "0.0% on the 20 labelled test images, out of sample; 80.0% on all 100 labelled images, not out of sample"
        in findings["label_issues_from"]
    )


def test_embeddings_are_aligned_with_the_scan_by_split_and_index():
    sigs = synthetic_sigs(np.zeros(5, np.int64), ["test", "test", "train", "train", "train"])
    sigs.index = np.array([0, 2, 0, 1, 3])  # test/1 and train/2 did not decode in the scan
    per_split = {
        "train": (np.array([0, 2, 3]), np.array([[3.0, 4.0], [1.0, 1.0], [0.0, 2.0]], np.float32)),  # train/1 not embedded
        "test": (np.array([0, 1, 2]), np.array([[1.0, 0.0], [5.0, 5.0], [0.0, 1.0]], np.float32)),
    }
    rows = l2_normalised(aligned_rows(sigs, per_split))
    assert rows.dtype == np.float32 and rows.shape == (5, 2)
    np.testing.assert_allclose(rows[[0, 1, 2, 4]], [[1, 0], [0, 1], [0.6, 0.8], [0, 1]])
    assert np.isnan(rows[3]).all()  # train/1: the embedder could not decode it


def test_features_from_names_a_missing_run_or_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"^features_from: {tmp_path / 'absent'} is not a run directory"):
        features_run(str(tmp_path / "absent"), QualityConfig().storage)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(to_dict(PretrainConfig())))
    with pytest.raises(FileNotFoundError, match=rf"^features_from: no complete checkpoint under {tmp_path / 'run'}$"):
        features_run(str(tmp_path / "run"), QualityConfig().storage)


def test_cli_passes_features_from_to_the_report(monkeypatch):
    seen = []
    monkeypatch.setattr(quality_run, "run_quality", seen.append)
    assert cli.main(["quality", "data/shards/x", "--features-from", "runs/simclr"]) == 0
    assert seen[0].features_from == "runs/simclr" and seen[0].shards == "data/shards/x"


def colour(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (12, 10, 3), dtype=np.uint8)


def test_examples_read_back_from_the_shards_as_stored(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    train = [RawSample(f"train/{i}", png_bytes(colour(i)), 0) for i in range(5)]
    train.append(RawSample("train/5", b"not an image", 1))
    data = SourceData({"train": train, "test": [RawSample("test/0", png_bytes(grey), 1)]}, ["a", "b"])
    write_shards(data, str(tmp_path), rows_per_shard=2)  # three train shards: the filter has to find rows in several
    found = read_examples(str(tmp_path), [("train", 4), ("train", 1), ("train", 5), ("train", 99), ("test", 0)], QualityConfig().storage)
    assert sorted(found) == [("test", 0), ("train", 1), ("train", 4)]  # corrupt and absent rows left out
    np.testing.assert_array_equal(found["train", 4], colour(4))
    np.testing.assert_array_equal(found["train", 1], colour(1))
    np.testing.assert_array_equal(found["test", 0], grey[..., None])
    assert read_examples(str(tmp_path), [], QualityConfig().storage) == {}


def test_large_examples_are_shrunk_keeping_their_aspect():
    assert shrunk(np.zeros((400, 200, 3), np.uint8), 128).shape == (128, 64, 3)
    assert shrunk(np.zeros((300, 600, 1), np.uint8), 128).shape == (64, 128, 1)
    small = colour(0)
    assert shrunk(small, 128) is small


def red_pixels(png: bytes) -> int:
    with Image.open(io.BytesIO(png)) as img:
        rgb = np.asarray(img.convert("RGB")).astype(int)
    return int(((rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)).sum())


def test_contact_sheet_draws_colour_examples_in_colour():
    sigs = synthetic_sigs(np.zeros(2, np.int64))
    findings = {
        "exact_duplicates": [[{"split": "train", "sample_id": "train/0000"}, {"split": "train", "sample_id": "train/0001"}]],
        "near_duplicates": [],
        "leaks": [],
        "outliers": {},
        "label_issues": [],
    }
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    grey_sheet = contact_sheet({"findings": findings}, sigs, per_row=2)
    colour_sheet = contact_sheet({"findings": findings}, sigs, per_row=2, images={("train", "train/0000"): red})
    assert red_pixels(grey_sheet) == 0 and red_pixels(colour_sheet) > 500
