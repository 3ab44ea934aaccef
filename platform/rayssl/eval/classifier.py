"""Test accuracy of fine-tuned classifiers, streamed over the test split."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import matplotlib
import numpy as np
import torch
from sklearn.metrics import ConfusionMatrixDisplay, balanced_accuracy_score, confusion_matrix
from torch import nn

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from rayssl.config import FinetuneConfig  # noqa: E402
from rayssl.data import storage  # noqa: E402
from rayssl.data.labelled import LabelledSet, load_labelled, select_labels  # noqa: E402
from rayssl.data.pipeline import image_dataset  # noqa: E402
from rayssl.data.shards import read_manifest  # noqa: E402
from rayssl.data.transforms import model_inputs, normalise  # noqa: E402
from rayssl.eval.features import K, extract_features  # noqa: E402
from rayssl.eval.matching import metrics_on_classes  # noqa: E402
from rayssl.train import checkpoints  # noqa: E402
from rayssl.train.pretrained import build_classifier  # noqa: E402


def load_classifier(cfg: FinetuneConfig, checkpoint_uri: str) -> nn.Module:
    """A fine-tuned classifier with a checkpoint's weights (its eval weights: the EMA where the run kept one)."""
    net = build_classifier(cfg)
    state, _ = checkpoints.load_model_state(checkpoint_uri, cfg.storage)
    net.load_state_dict(state)
    return net.eval()


def held_out_test_set(cfg: FinetuneConfig) -> LabelledSet | None:
    """The test images held out from the labels when the shards have no labelled test split (the same
    for every label draw and budget: rayssl.data.labels.TEST_HOLDOUT_SEED); None when they have one."""
    test = read_manifest(cfg.data.shards, cfg.storage)["splits"].get("test")
    if test and test.get("class_histogram"):
        return None
    plan = select_labels(cfg.data, cfg.semisup, cfg.storage)
    return load_labelled(cfg.data, plan.split.test, plan.labels, cfg.storage)


@torch.no_grad()
def logits_on_test(
    nets: dict[K, nn.Module], cfg: FinetuneConfig, run_dir: str, batch_size: int = 512
) -> tuple[dict[K, np.ndarray], np.ndarray, str]:
    """Every net's logits on the labelled test images: the shards' test split (streamed), or the
    hold-out of held_out_test_set. Returns ({name: float32 [N, K]}, labels int64 [N], which of the two)."""
    held_out = held_out_test_set(cfg)
    if held_out is None:
        return (*extract_features(nets, cfg.data, "test", run_dir, cfg.storage), "the shards' test split")
    images = normalise(torch.from_numpy(np.ascontiguousarray(held_out.images.transpose(0, 3, 1, 2))))
    logits = {name: torch.cat([net.eval()(chunk) for chunk in images.split(batch_size)]).numpy() for name, net in nets.items()}
    return logits, held_out.labels, "held out from the labels"


def accuracy_on_test_split(candidates: dict[K, tuple[FinetuneConfig, str]], run_dir: str) -> dict[K, float]:
    """Top-1 test accuracy of each {name: (config, checkpoint URI)}, in one pass over the test images.

    Used only after selection, never to select. The candidates share the data config of the
    first one (a sweep's trials differ in their optimisation and init, not in their data).
    """
    first = next(iter(candidates.values()))[0]
    nets = {name: load_classifier(cfg, checkpoint_uri) for name, (cfg, checkpoint_uri) in candidates.items()}
    logits, labels, _ = logits_on_test(nets, first, run_dir)
    return {name: float((logits[name].argmax(axis=1) == labels).mean()) for name in nets}


def score_on_test_split(cfg: FinetuneConfig, checkpoint_uri: str, run_dir: str) -> float:
    """Top-1 accuracy of one fine-tuned checkpoint on the test images."""
    return accuracy_on_test_split({"classifier": (cfg, checkpoint_uri)}, run_dir)["classifier"]


def write_test_report(cfg: FinetuneConfig, checkpoint_uri: str, run_dir: str) -> dict[str, Any]:
    """Accuracy, balanced accuracy, per-class accuracy and the confusion matrix of one fine-tuned
    checkpoint on the test images, plus (`classes_never_labelled`, when semisup.labelled_classes
    leaves classes out) the matched accuracy and cross-entropy on the classes it had no label of
    (rayssl.eval.matching); written to <run_dir>/test_report.json and confusion.png."""
    logits, labels, test_images = logits_on_test({"classifier": load_classifier(cfg, checkpoint_uri)}, cfg, run_dir)
    manifest_classes = read_manifest(cfg.data.shards, cfg.storage).get("classes")
    names = class_names(cfg, manifest_classes)
    report = {
        "checkpoint": checkpoint_uri,
        "test_images": test_images,
        **classification_report(logits["classifier"].argmax(axis=1), labels, names),
    }
    unlabelled = classes_never_labelled(cfg)
    if unlabelled:  # e.g. the inverted VAE's protocol: matched accuracy and cross-entropy on 5-9
        report["classes_never_labelled"] = metrics_on_classes(logits["classifier"], labels, unlabelled)
    storage.write_bytes(storage.join(run_dir, "test_report.json"), json.dumps(report, indent=2).encode(), cfg.storage)
    storage.write_bytes(storage.join(run_dir, "confusion.png"), confusion_png(np.array(report["confusion_matrix"]), names), cfg.storage)
    return report


def classes_never_labelled(cfg: FinetuneConfig) -> list[int]:
    """The classes a run had no labelled image of: those outside semisup.labelled_classes (none when it is empty)."""
    chosen = set(cfg.semisup.labelled_classes)
    return [c for c in range(cfg.semisup.num_classes) if chosen and c not in chosen]


def class_names(cfg: FinetuneConfig, manifest_classes: list[str] | None) -> list[str]:
    """Class names in id order: the label table's or the shards' names, else the ids as text."""
    if cfg.semisup.labels:
        classes = select_labels(cfg.data, cfg.semisup, cfg.storage).classes
        if classes:
            return list(classes)
    return list(manifest_classes) if manifest_classes else [str(c) for c in range(cfg.semisup.num_classes)]


def classification_report(predicted: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, Any]:
    """predicted, labels: int64 [N]. Per-class accuracy is the recall of that class (None: no test image of it);
    balanced accuracy is their mean over the classes that have test images."""
    matrix = confusion_matrix(labels, predicted, labels=np.arange(len(names)))
    support = matrix.sum(axis=1)
    recall = [float(matrix[c, c] / support[c]) if support[c] else None for c in range(len(names))]
    return {
        "images": int(len(labels)),
        "accuracy": float((predicted == labels).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "per_class_accuracy": dict(zip(names, recall)),
        "per_class_images": dict(zip(names, map(int, support))),
        "classes": names,
        "confusion_matrix": matrix.tolist(),
    }


def confusion_png(matrix: np.ndarray, names: list[str]) -> bytes:
    """The confusion matrix (rows: true class, columns: predicted) as a PNG."""
    side = max(4.0, 0.45 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(side, side), dpi=110)
    ConfusionMatrixDisplay(matrix, display_labels=names).plot(ax=ax, colorbar=False, xticks_rotation=45, values_format="d")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


@torch.no_grad()
def predict_probabilities(
    cfg: FinetuneConfig, checkpoint_uri: str, shards: str, split: str, run_dir: str, batch_size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax of a fine-tuned classifier over every decodable image of `split` of the shard set `shards`.

    Returns (index int64 [N], probabilities float32 [N, C]) in the stream's order; `index` is the
    shard row's index within the split. Images are decoded as `cfg.data` says (size, channels).
    """
    net = load_classifier(cfg, checkpoint_uri)
    data = dataclasses.replace(cfg.data, shards=shards)
    indices, probs = [], []
    for batch in image_dataset(data, split, run_dir, cfg.storage, augment=False).iter_torch_batches(batch_size=batch_size, device="cpu"):
        indices.append(batch["index"].numpy())
        probs.append(torch.softmax(net(model_inputs(batch)["image"]), dim=1).numpy())
    if not indices:
        return np.zeros(0, np.int64), np.zeros((0, cfg.semisup.num_classes), np.float32)
    return np.concatenate(indices), np.concatenate(probs)
