"""Planted-defect photo corpus: how well `rayssl quality` finds what was put into CIFAR-10, and how fast.

Builds shards of all of CIFAR-10 (50,000 train + 10,000 test) plus planted defects: 300 near-duplicates,
50 made by each edit of `rayssl.quality.edits` (colour shift, brightness/contrast, crop-and-rescale to
80-95% of the side, translation by up to 3 px, JPEG quality 50, horizontal flip), 100 of them copies of
test images put into train (leaks); 100 exact duplicates (same pixels, other PNG bytes); 2% of the train
labels flipped to another class; 50 corrupt files. Then runs the report on it without features and with
a pretrained run's (`--features-from`), and on plain CIFAR-10 (no planting), and times one training-ingest
pass over the plain shards beside the report.

A flagged pair that holds a planted copy is correct when its other image is the copy's original, or is
itself flagged as a duplicate of that original (CIFAR-10 has duplicates of its own).

    .venv/bin/python bench/quality_photos.py [--features-from runs/simclr_cifar10_small_cnn] [--cifar ../shared/data/cifar10]

Writes bench/results/quality_photos.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from quality_defects import score
from rayssl.config import DataConfig, QualityConfig, StorageConfig
from rayssl.data.pipeline import image_dataset
from rayssl.data.shards import write_shards
from rayssl.data.sources import RawSample, SourceData, cifar10_arrays, encode_png
from rayssl.quality.edits import PHOTO_EDITS
from rayssl.quality.run import run_quality

OUT = Path("bench/out/quality_photos")
RESULTS = Path("bench/results")
PER_EDIT, LEAKS, EXACT, FLIPPED_FRACTION, CORRUPT = 50, 100, 100, 0.02, 50


def cifar(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (uint8 [50000, 32, 32, 3], labels), "test": (... [10000, ...], labels)} from the binary files."""
    return {split: cifar10_arrays(root, split) for split in ("train", "test")}


def plant(data: dict[str, tuple[np.ndarray, np.ndarray]], seed: int = 0) -> tuple[dict[str, list], dict]:
    """Rows per split (sample_id, encoded bytes, label) with the defects appended to train under neutral
    ids in random order, and the ground truth by sample id."""
    rng = np.random.default_rng(seed)
    (train_x, train_y), (test_x, test_y) = data["train"], data["test"]
    ids = {"train": [f"train/{i:06d}" for i in range(len(train_x))], "test": [f"test/{i:06d}" for i in range(len(test_x))]}
    pick = iter(rng.permutation(len(train_x)))  # each planted defect uses train originals of its own
    leaked = iter(rng.choice(len(test_x), LEAKS, replace=False))
    extra: list[tuple[str, bytes, int, str | None]] = []  # (defect, bytes, label, original's sample id)
    kinds = list(PHOTO_EDITS)
    for k in range(PER_EDIT * len(kinds)):
        kind = kinds[k % len(kinds)]
        is_leak = k < LEAKS  # the first 100 copies, spread evenly over the edits, come from test images
        position = int(next(leaked) if is_leak else next(pick))
        x, y, origin = (test_x, test_y, ids["test"][position]) if is_leak else (train_x, train_y, ids["train"][position])
        extra.append((kind, encode_png(PHOTO_EDITS[kind](x[position], rng)), int(y[position]), origin))
    for _ in range(EXACT):
        o = int(next(pick))
        Image.fromarray(train_x[o]).save(buffer := io.BytesIO(), "PNG", compress_level=9)  # same pixels, other bytes
        extra.append(("exact", buffer.getvalue(), int(train_y[o]), ids["train"][o]))
    for k in range(CORRUPT):
        encoded = encode_png(train_x[int(next(pick))])
        extra.append(("corrupt", encoded[: len(encoded) // 2] if k % 2 == 0 else b"not an image at all", 0, None))
    labels = train_y.copy()
    flipped = [int(next(pick)) for _ in range(int(FLIPPED_FRACTION * len(train_x)))]
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, len(flipped))) % 10
    rows = {"train": [(ids["train"][i], encode_png(x), int(y)) for i, (x, y) in enumerate(zip(train_x, labels))]}
    rows["test"] = [(ids["test"][i], encode_png(x), int(y)) for i, (x, y) in enumerate(zip(test_x, test_y))]
    truth: dict[str, list] = {kind: [] for kind in [*kinds, "exact", "leak", "corrupt"]}
    for slot, position in enumerate(rng.permutation(len(extra))):
        defect, encoded, label, origin = extra[position]
        sample_id = f"train/{len(train_x) + slot:06d}"
        rows["train"].append((sample_id, encoded, label))
        truth[defect].append(sample_id if origin is None else [origin, sample_id])
        if origin is not None and origin.startswith("test/"):
            truth["leak"].append([origin, sample_id])
    truth["flipped"] = [ids["train"][o] for o in flipped]
    return rows, truth


def evaluate(report: dict, truth: dict) -> list[dict]:
    """One row per planted kind: defect, planted, flagged, correct, precision, recall (fractions)."""
    f = report["findings"]
    flagged = {frozenset((x["a"]["sample_id"], x["b"]["sample_id"])) for x in f["near_duplicate_pairs"]}
    flagged |= {frozenset((a["sample_id"], b["sample_id"])) for g in f["exact_duplicates"] for a in g for b in g if a != b}
    rows = []
    for kind in [*PHOTO_EDITS, "exact", "leak"]:
        copy_to_origin = {copy: origin for origin, copy in truth[kind]}
        involved = {p for p in flagged if p & copy_to_origin.keys()}
        correct = {p for p in involved if _explained(p, copy_to_origin, flagged)}
        found = {frozenset(p) for p in truth[kind]} & flagged
        rows.append(_row(kind, len(truth[kind]), len(involved), len(correct), len(found)))
    for kind, found_ids in (
        ("corrupt", {r["sample_id"] for r in report["undecodable"]}),
        ("flipped labels", {x["sample_id"] for x in f["label_issues"]}),
    ):
        s = score(found_ids, set(truth["corrupt" if kind == "corrupt" else "flipped"]))
        rows.append(_row(kind, s["planted"], s["found"], s["correct"], s["correct"]))
    return rows


def _explained(pair: frozenset, copy_to_origin: dict[str, str], flagged: set) -> bool:
    """A pair holding a planted copy is right when the other image is its original or a flagged duplicate of it."""
    a, b = sorted(pair)
    copy, other = (a, b) if a in copy_to_origin else (b, a)
    origin = copy_to_origin[copy]
    return other == origin or frozenset((origin, other)) in flagged


def _row(defect: str, planted: int, flagged: int, correct: int, found: int) -> dict:
    return {
        "defect": defect,
        "planted": planted,
        "flagged": flagged,
        "correct": correct,
        "precision": correct / flagged if flagged else 1.0,
        "recall": found / planted if planted else 1.0,
    }


def ingest_seconds(shards: str) -> float:
    """One training-ingest pass (decode + augment + normalise, no model) over every split of `shards`, warm."""
    data = DataConfig(shards=shards, image_size=32, channels=3)

    def one_pass() -> float:
        started = time.perf_counter()
        for split in ("train", "test"):
            for _ in image_dataset(data, split, str(OUT / "ingest_run"), StorageConfig()).iter_batches(
                batch_size=256, batch_format="numpy"
            ):
                pass
        return time.perf_counter() - started

    one_pass()  # Ray's workers and imports warm
    return one_pass()


def report_on(shards: str, name: str, features_from: str = "") -> tuple[dict, float]:
    started = time.perf_counter()
    report = run_quality(QualityConfig(shards=shards, out=str((OUT / name).resolve()), features_from=features_from))
    return report, time.perf_counter() - started


def markdown(result: dict) -> str:
    """The results page: one table per planted run, then plain CIFAR-10 and the throughput."""
    lines = [
        f"Planted-defect CIFAR-10 corpus: {result['train']} train + {result['test']} test images (2-core CPU). "
        "Target: recall >= 95% and precision >= 90% for every edit, exact duplicates and leaks; flipped labels with "
        "a pretrained run's features: precision >= 50% and recall >= 50%."
    ]
    for run in result["runs"]:
        lines += [
            "",
            f"## {run['name']} ({run['wall_s']:.0f} s)",
            "",
            f"Near-duplicate rule: {run['near_duplicate_rule']}. Label issues: {run['label_issues_from']}.",
            "",
            "| defect | planted | flagged | correct | precision | recall | target met |",
            "|---|---:|---:|---:|---:|---:|:-:|",
        ]
        for r in run["rows"]:
            lines.append(
                f"| {r['defect']} | {r['planted']} | {r['flagged']} | {r['correct']} | {100 * r['precision']:.1f}% | "
                f"{100 * r['recall']:.1f}% | {_met(r, run['features'])} |"
            )
    plain = result["plain"]
    lines += [
        "",
        f"## Plain CIFAR-10, no planting ({plain['wall_s']:.0f} s)",
        "",
        f"Train/test pairs: {plain['leaks']} (over {plain['test_images_in_leaks']} test images); near-duplicate groups: "
        f"{plain['near_duplicate_groups']}; exact duplicate groups: {plain['exact_duplicate_groups']}; likely label issues: "
        f"{plain['label_issues']} of {plain['images']} images ({100 * plain['label_issues'] / plain['images']:.2f}%; "
        f"target < 2%). Label issues: {plain['label_issues_from']}.",
        "",
        f"![The plain CIFAR-10 report's contact sheet]({Path(plain['contact_sheet']).name})",
        "",
        f"Throughput: the whole report on plain CIFAR-10 took {plain['wall_s']:.0f} s; one warm training-ingest pass "
        f"(decode + augment + normalise) over the same 60,000 images {result['ingest_s']:.0f} s: ratio "
        f"{plain['wall_s'] / result['ingest_s']:.2f} (target <= 2).",
    ]
    return "\n".join(lines) + "\n"


def _met(row: dict, features: bool) -> str:
    if row["defect"] == "flipped labels":
        return ("yes" if row["precision"] >= 0.5 and row["recall"] >= 0.5 else "no") if features else "reported"
    return "yes" if row["recall"] >= 0.95 and row["precision"] >= 0.9 else "no"


def plain_summary(report: dict, wall: float) -> dict:
    f = report["findings"]
    return {
        "wall_s": wall,
        "images": f["images"],
        "leaks": len(f["leaks"]),
        "test_images_in_leaks": len({x[s]["sample_id"] for x in f["leaks"] for s in ("a", "b") if x[s]["split"] == "test"}),
        "near_duplicate_groups": len(f["near_duplicates"]),
        "exact_duplicate_groups": len(f["exact_duplicates"]),
        "label_issues": len(f["label_issues"]),
        "label_issues_from": f["label_issues_from"],
        "contact_sheet": str(RESULTS / "quality_photos_sheet.png"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar", default="../shared/data/cifar10")
    parser.add_argument("--features-from", default="runs/simclr_cifar10_small_cnn", help="a pretraining run ('' to skip that run)")
    args = parser.parse_args()
    data = cifar(Path(args.cifar))
    classes = [c.strip() for c in (Path(args.cifar) / "labels.txt").read_text().split("\n") if c.strip()]
    plain_rows = {s: [(f"{s}/{i:06d}", encode_png(x), int(y)) for i, (x, y) in enumerate(zip(*data[s]))] for s in data}
    rows, truth = plant(data)
    shards = {}
    for name, split_rows in (("plain", plain_rows), ("planted", rows)):
        shards[name] = str((OUT / f"shards_{name}").resolve())
        samples = {s: [RawSample(i, d, y) for i, d, y in r] for s, r in split_rows.items()}
        write_shards(SourceData(samples, classes), shards[name], 10000, source_name=f"cifar10+{name}")
    runs = []
    for features_from in ["", str(Path(args.features_from).resolve()) if args.features_from else None]:
        if features_from is None:
            continue
        report, wall = report_on(shards["planted"], "planted_features" if features_from else "planted", features_from)
        runs.append(
            {
                "name": f"Planted, features from {args.features_from}" if features_from else "Planted, no features",
                "features": bool(features_from),
                "wall_s": wall,
                "rows": evaluate(report, truth),
                "near_duplicate_rule": report["findings"].get("near_duplicate_rule", ""),
                "label_issues_from": report["findings"]["label_issues_from"],
                "label_probe_accuracy": report["findings"].get("label_probe_accuracy"),
            }
        )
    plain_report, plain_wall = report_on(shards["plain"], "plain")
    RESULTS.mkdir(exist_ok=True)
    shutil.copyfile(OUT / "plain" / "quality.png", RESULTS / "quality_photos_sheet.png")  # the report's own contact sheet
    result = {
        "train": len(rows["train"]),
        "test": len(rows["test"]),
        "runs": runs,
        "rows": runs[-1]["rows"],  # one row per planted kind, from the run with features when there is one
        "plain": plain_summary(plain_report, plain_wall),
        "ingest_s": ingest_seconds(shards["plain"]),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quality_photos.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "quality_photos.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
