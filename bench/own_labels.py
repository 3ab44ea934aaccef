"""The user's corpus, end to end: a folder of photos, a CSV naming a few of them, a model taken away.

    .venv/bin/python bench/own_labels.py            # about an hour on 2 cores; stages already done are kept

CIFAR-10 from ../shared/data/cifar10 written the way a user's corpus looks: 20,000 train images as
PNGs in one folder (no class folders), a CSV label table naming 10 of them per class, and the
10,000 test images in class folders. Then, with the platform's own commands and functions:
shards (`--labels` at build time) -> `labels_per_class: all` fine-tuning (supervised only, and the
best recipe of bench/results/cifar10_25labels.md: a SimCLR start pretrained on the 20,000 images)
over 3 validation hold-outs -> export -> `rayssl predict` on the test folder, checked against the
exported model run by its standalone predict.py on every test image.

Beside it: the class-balanced-draw result at the same budget (8 labelled + 2 validation per class
drawn from the fully labelled CIFAR-10 shards), and the imbalance benchmark: the same 20,000 images
with a second table of 40/40/20/20/10/10/5/5/3/3 labels per class, attached at fine-tune time
(semisup.labels), class-balanced labelled batches against plain sampling, balanced accuracy.

Fine-tuning runs train in this process through the loop sweep trials use (rayssl.train.loop.
train_in_process): the same steps as `rayssl finetune`, without Ray Train's per-run actor start-up.
Writes bench/results/own_labels.{json,md}; working files under bench/out/own_labels.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from rayssl.cli import main as rayssl
from rayssl.config import FinetuneConfig, PretrainConfig, RayInitConfig, load_config
from rayssl.data.sources import load_source
from rayssl.eval.classifier import write_test_report
from rayssl.train.launch import init_ray, run_finetune, run_pretrain

OUT = Path("bench/out/own_labels")
RESULTS = Path("bench/results/own_labels")
CIFAR = "../shared/data/cifar10"
SEEDS = (0, 1, 2)
UNLABELLED, PER_CLASS = 20_000, 10
IMBALANCED = (40, 40, 20, 20, 10, 10, 5, 5, 3, 3)
# The recipe of bench/few_labels.py --setting cifar10_25labels: supervised only, 1,500 steps; the best
# row starts from SimCLR (configs/simclr_cifar10_small_cnn.yaml, 20 epochs) with a 100-step head warm-up.
CONFIG = "configs/semisup_cifar10.yaml"
SUPERVISED = ["inversion.alpha=0", "schedule.steps=1500"]
SIMCLR_EPOCHS = 20
REFERENCE = (
    "94.93 ± 0.65% at 250 labels (Sohn et al., FixMatch, arXiv 2001.07685, WRN-28-2, 2^20 steps on GPUs); "
    "the committed small-CNN CPU recipe at 25 balanced labels per class: 35.49 ± 1.25% supervised only, "
    "45.53 ± 0.81% SimCLR-pretrained 20 epochs (bench/results/cifar10_25labels.md)"
)


def stage(state: dict, name: str, fn: Callable[[], Any]) -> Any:
    """Run a stage once: its result and wall time are kept in state.json, so a rerun resumes after it."""
    if name not in state:
        started = time.perf_counter()
        result = fn()
        state[name] = {"result": result, "wall_s": round(time.perf_counter() - started, 1)}
        (OUT / "state.json").write_text(json.dumps(state, indent=2))
        print(f"[own_labels] {name}: {state[name]['wall_s']:.0f} s", flush=True)
    return state[name]["result"]


def write_corpus() -> dict:
    """corpus/train/img*.png (20,000, no classes), corpus/test/<class>/*.png, labels.csv and labels_imbalanced.csv."""
    source = load_source("cifar10", CIFAR)
    classes = source.classes
    rng = np.random.default_rng(0)
    train = list(source.splits["train"])
    picked = np.sort(rng.choice(len(train), UNLABELLED, replace=False))
    (OUT / "corpus/train").mkdir(parents=True, exist_ok=True)
    truth = {}
    for n, i in enumerate(picked):
        path = f"train/img{n:05d}.png"
        (OUT / "corpus" / path).write_bytes(train[i].image)
        truth[path] = train[i].label
    for n, sample in enumerate(source.splits["test"]):
        folder = OUT / "corpus/test" / classes[sample.label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{n:05d}.png").write_bytes(sample.image)
    by_class = {c: [p for p, label in truth.items() if label == c] for c in range(len(classes))}
    write_table(OUT / "labels.csv", by_class, [PER_CLASS] * len(classes), classes, rng)
    write_table(OUT / "labels_imbalanced.csv", by_class, list(IMBALANCED), classes, rng)
    return {"train_images": len(truth), "test_images": n + 1, "classes": classes}


def write_table(path: Path, by_class: dict[int, list[str]], counts: list[int], classes: list[str], rng: np.random.Generator) -> None:
    """A label table naming `counts[c]` random images of class c by path and class name."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for c, count in enumerate(counts):
            for p in rng.choice(by_class[c], count, replace=False):
                writer.writerow([p, classes[c]])


def finetune(shards: str, name: str, seed: int, overrides: list[str]) -> dict:
    """One `labels_per_class` fine-tune scored on the test images: accuracy, balanced and per-class accuracy."""
    cfg = load_config(
        FinetuneConfig,
        CONFIG,
        [*overrides, f"data.shards={shards}", f"semisup.label_seed={seed}", f"run.name={name}_{seed}", f"run.storage_path={OUT / 'runs'}"],
    )
    started = time.perf_counter()
    outcome = run_finetune(cfg, report=lambda metrics: None)
    wall = time.perf_counter() - started
    report = write_test_report(cfg, outcome.checkpoint, outcome.run_dir)
    plan = json.loads(Path(outcome.run_dir, "labels.json").read_text())
    return {
        "label_seed": seed,
        "run_dir": str(Path(outcome.run_dir).relative_to(Path.cwd())),
        "val_acc": outcome.metrics["val_acc"],
        "test_acc": report["accuracy"],
        "balanced_acc": report["balanced_accuracy"],
        "per_class": report["per_class_accuracy"],
        "wall_s": round(wall, 1),
        "labelled": sum(plan["labelled"].values()),
        "validation": sum(plan["validation"].values()),
    }


def row(runs: list[dict]) -> dict:
    """mean ± std (ddof 1) over the runs of one row, and the per-class accuracy averaged over them."""

    def spread(key: str) -> dict:
        values = np.array([r[key] for r in runs])
        return {"mean": float(values.mean()), "std": float(values.std(ddof=1)), "each": values.tolist()}

    classes = list(runs[0]["per_class"])
    return {
        "test_acc": spread("test_acc"),
        "balanced_acc": spread("balanced_acc"),
        "val_acc": spread("val_acc"),
        "per_class": {c: float(np.mean([r["per_class"][c] for r in runs])) for c in classes},
        "wall_s_per_run": float(np.mean([r["wall_s"] for r in runs])),
        "labelled": runs[0]["labelled"],
        "validation": runs[0]["validation"],
    }


def pretrain_simclr(shards: str) -> dict:
    cfg = load_config(
        PretrainConfig,
        "configs/simclr_cifar10_small_cnn.yaml",
        [
            f"data.shards={shards}",
            f"train.epochs={SIMCLR_EPOCHS}",
            "run.name=simclr",
            f"run.storage_path={OUT / 'runs'}",
            "eval.after_pretrain=false",
        ],
    )
    return {"run_dir": str(Path(run_pretrain(cfg).run_dir).relative_to(Path.cwd()))}


def export_and_predict(run_dir: str, test_folder: str) -> dict:
    """export -> `rayssl predict` on the test folder -> the exported model's standalone predict.py on every test image."""
    from rayssl.inference.export import export_run
    from rayssl.inference.predict import predict_run

    init_ray(RayInitConfig())  # a resumed benchmark may reach this stage without having started Ray
    timings, started = {}, time.perf_counter()
    export_run(run_dir, str(OUT / "export"))
    timings["export_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    predict_run(run_dir, test_folder, str(OUT / "predictions"))
    timings["predict_s"] = round(time.perf_counter() - started, 1)
    predicted = pq.read_table(OUT / "predictions").to_pydict()
    ours = dict(zip(predicted["path"], predicted["predicted"]))
    started = time.perf_counter()
    images = sorted(str(p) for p in Path(test_folder).rglob("*.png"))
    subprocess.run([sys.executable, "-I", str(OUT / "export/predict.py"), *images, "--out", str(OUT / "standalone.csv")], check=True)
    timings["standalone_s"] = round(time.perf_counter() - started, 1)
    with (OUT / "standalone.csv").open() as f:
        standalone = {str(Path(r["path"]).relative_to(test_folder)): r["class"] for r in csv.DictReader(f)}
    truth = {p: p.split("/", 1)[0] for p in ours}
    return {
        **timings,
        "images": len(ours),
        "standalone_images": len(standalone),
        "disagreements": sum(standalone.get(p) != c for p, c in ours.items()),
        "predict_accuracy": float(np.mean([c == truth[p] for p, c in ours.items()])),
    }


def build_shards(out: str, *labels: str) -> str:
    if rayssl(["shards", "build", "--source", "folder", "--path", str(OUT / "corpus"), "--out", out, "--rows-per-shard", "5000", *labels]):
        raise SystemExit(f"shards build failed: {out}")
    return out


def run_benchmark(state: dict) -> dict:
    """Every stage in order (each kept in state.json once done); returns the results document."""
    corpus = stage(state, "corpus", write_corpus)
    shards = stage(state, "shards (with --labels)", lambda: build_shards(str(OUT / "shards"), "--labels", str(OUT / "labels.csv")))
    plain = stage(state, "shards (no labels)", lambda: build_shards(str(OUT / "shards_plain")))
    every = ["semisup.labels_per_class=all", *SUPERVISED]
    supervised = [
        stage(state, f"supervised only, all labels, hold-out {s}", lambda s=s: finetune(shards, "supervised", s, every)) for s in SEEDS
    ]
    simclr = stage(state, f"SimCLR pretraining, {SIMCLR_EPOCHS} epochs on the 20,000 images", lambda: pretrain_simclr(shards))
    from_simclr = [f"init={simclr['run_dir']}", *every, "schedule.head_warmup_steps=100"]
    pretrained = [
        stage(state, f"SimCLR-pretrained, all labels, hold-out {s}", lambda s=s: finetune(shards, "simclr_ft", s, from_simclr))
        for s in SEEDS
    ]
    full = stage(
        state,
        "CIFAR-10 shards (fully labelled)",
        lambda: (
            "data/shards/cifar10"
            if Path("data/shards/cifar10/manifest.json").exists()
            else (
                rayssl(["shards", "build", "--source", "cifar10", "--path", CIFAR, "--out", "data/shards/cifar10"]) or "data/shards/cifar10"
            )
        ),
    )
    drawn = [
        stage(
            state,
            f"balanced draw 8 + 2 per class, draw {s}",
            lambda s=s: finetune(full, "balanced_draw", s, ["semisup.labels_per_class=8", "semisup.val_per_class=2", *SUPERVISED]),
        )
        for s in SEEDS
    ]
    imbalanced = {}
    for balanced in (True, False):
        name = "class-balanced batches" if balanced else "plain sampling"
        overrides = [f"semisup.labels={OUT / 'labels_imbalanced.csv'}", f"semisup.balanced_batches={str(balanced).lower()}", *every]
        imbalanced[name] = row(
            [
                stage(
                    state,
                    f"imbalanced, {name}, hold-out {s}",
                    lambda s=s, o=overrides, b=balanced: finetune(plain, f"imbalanced_{b}", s, o),
                )
                for s in SEEDS
            ]
        )
    best = max(pretrained, key=lambda r: r["val_acc"])  # the run a user would ship: chosen on validation only
    taken = stage(state, "export + predict + standalone check", lambda: export_and_predict(best["run_dir"], str(OUT / "corpus/test")))
    return {
        "corpus": corpus,
        "reference": REFERENCE,
        "rows": {
            "supervised only, every label (10 per class)": row(supervised),
            "SimCLR-pretrained, every label (10 per class)": row(pretrained),
            "class-balanced draw, 8 + 2 per class of fully labelled CIFAR-10 (supervised only)": row(drawn),
        },
        "imbalanced": imbalanced,
        "take_away": {**taken, "run": best["run_dir"], "label_seed": best["label_seed"]},
        "stages_s": {name: s["wall_s"] for name, s in state.items()},
    }


def pct(spread: dict) -> str:
    return f"{100 * spread['mean']:.2f} ± {100 * spread['std']:.2f}%"


def markdown(doc: dict) -> str:
    classes = doc["corpus"]["classes"]
    lines = [
        f"# A user's corpus: {doc['corpus']['train_images']:,} unlabelled CIFAR-10 PNGs, a CSV naming {PER_CLASS} per class, "
        f"{doc['corpus']['test_images']:,} test images in class folders",
        "",
        "`bench/own_labels.py`, 2-core CPU. Test accuracy mean ± std over 3 validation hold-outs (`semisup.label_seed`). "
        f"Reference: {doc['reference']}.",
        "",
        "| row | labelled + validation | test accuracy | balanced accuracy | validation | wall time per run |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in doc["rows"].items():
        lines.append(
            f"| {name} | {r['labelled']} + {r['validation']} | {pct(r['test_acc'])} | {pct(r['balanced_acc'])} | {pct(r['val_acc'])} | {r['wall_s_per_run'] / 60:.1f} min |"
        )
    lines += [
        "",
        "Per-class test accuracy (%, mean over the hold-outs):",
        "",
        "| row | " + " | ".join(classes) + " |",
        "|---|" + "---:|" * len(classes),
    ]
    for name, r in {**doc["rows"], **{f"imbalanced, {k}": v for k, v in doc["imbalanced"].items()}}.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * r['per_class'][c]:.1f}" for c in classes) + " |")
    lines += [
        "",
        f"Imbalanced labels ({'/'.join(map(str, IMBALANCED))} per class, a table attached at fine-tune time), supervised only, every label:",
        "",
        "| labelled batches | balanced accuracy | test accuracy |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {pct(r['balanced_acc'])} | {pct(r['test_acc'])} |" for name, r in doc["imbalanced"].items()]
    t = doc["take_away"]
    lines += [
        "",
        f"Take the model away (the SimCLR-pretrained run chosen on validation, hold-out {t['label_seed']}): export {t['export_s']:.0f} s; "
        f"`rayssl predict` on the {t['images']:,} test PNGs {t['predict_s']:.0f} s, accuracy {100 * t['predict_accuracy']:.2f}%; "
        f"the exported model's standalone predict.py (plain PyTorch, no rayssl) on the same {t['standalone_images']:,} images: "
        f"{t['disagreements']} predictions differ.",
        "",
        "Wall time per stage:",
        "",
        "| stage | s |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {s:.0f} |" for name, s in doc["stages_s"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    state_file = OUT / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    doc = run_benchmark(state)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(doc, indent=2))
    RESULTS.with_suffix(".md").write_text(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
