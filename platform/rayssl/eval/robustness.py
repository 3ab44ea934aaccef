"""`rayssl robustness`: accuracy under common corruptions (five severities each) and under domain shift.

    run's model (classifier, or frozen backbone + linear probe)
      x corrupted_dataset(test split, every corruption x severity, seeded)  -> accuracy per cell
      x the clean test split of --target-shards                              -> domain-shift accuracy

Reported as in Hendrycks & Dietterich 2019: clean accuracy, mean corruption accuracy over all
corruptions and severities, and relative robustness = mean corruption accuracy / clean accuracy.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from rayssl import markdown as md  # noqa: E402
from rayssl.config import CORRUPTION_NAMES, DataConfig, FinetuneConfig, PretrainConfig, RobustnessConfig, StorageConfig, from_dict  # noqa: E402
from rayssl.data import storage  # noqa: E402
from rayssl.data.corruptions import SEVERITIES  # noqa: E402
from rayssl.data.pipeline import corrupted_dataset  # noqa: E402
from rayssl.data.transforms import model_inputs  # noqa: E402
from rayssl.eval.features import K, extract_features  # noqa: E402
from rayssl.logs import get_logger  # noqa: E402
from rayssl.train import checkpoints  # noqa: E402
from rayssl.train.launch import init_ray  # noqa: E402
from rayssl.train.pretrained import build_classifier, load_pretrained_backbone  # noqa: E402

CLEAN = ("clean", 0)
Predictor = Callable[[torch.Tensor], np.ndarray]  # float [B, C, H, W] -> predicted labels int [B]


@torch.no_grad()
def accuracy_per_variant(
    predictors: dict[K, Predictor],
    data: DataConfig,
    variants: list[tuple[str, int]],
    seed: int,
    split: str,
    run_dir: str,
    storage_cfg: StorageConfig,
    batch_size: int = 1024,
) -> dict[K, dict[tuple[str, int], float]]:
    """Accuracy of every predictor on every (corruption, severity) view of the labelled rows of `split`, in one pass."""
    correct = {name: np.zeros(len(variants)) for name in predictors}
    seen = np.zeros(len(variants))
    batches = corrupted_dataset(data, split, variants, seed, run_dir, storage_cfg).iter_torch_batches(batch_size=batch_size, device="cpu")
    for batch in map(model_inputs, batches):  # uint8 images from the stage, normalised here
        keep = batch["label"] >= 0
        if not keep.any():
            continue
        variant, labels = batch["variant"][keep].numpy(), batch["label"][keep].numpy()
        seen += np.bincount(variant, minlength=len(variants))
        for name, predict in predictors.items():
            correct[name] += np.bincount(variant, weights=predict(batch["image"][keep]) == labels, minlength=len(variants))
    if not seen.any():
        raise ValueError(f"split {split!r} of {data.shards} has no labelled images to score")
    return {name: {v: float(c / n) for v, c, n in zip(variants, correct[name], seen)} for name in predictors}


def classifier_predictor(cfg: FinetuneConfig, checkpoint_uri: str) -> Predictor:
    """argmax of a fine-tuned classifier."""
    net = build_classifier(cfg)
    net.load_state_dict(checkpoints.load_model_state(checkpoint_uri, cfg.storage)[0])
    net.eval()
    return lambda images: net(images).argmax(dim=1).numpy()


def probe_predictor(run: str, cfg: PretrainConfig, data: DataConfig, train_samples: int, out: str, storage_cfg: StorageConfig) -> Predictor:
    """A linear probe (standardised logistic regression) on the frozen backbone, fit on clean train images."""
    backbone, _ = load_pretrained_backbone(run, storage_cfg)
    backbone.eval()
    feats, labels = extract_features({"backbone": backbone}, data, "train", out, storage_cfg, limit=train_samples)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(feats["backbone"], labels)
    return lambda images: probe.predict(backbone(images).numpy())


def mean_corruption_accuracies(candidates: dict[K, tuple[FinetuneConfig, str]], seed: int, run_dir: str) -> dict[K, float]:
    """Mean accuracy over every corruption x severity of each {name: (config, checkpoint URI)}, in one pass
    over the test split (the sweep's candidates share the data config of the first)."""
    first = next(iter(candidates.values()))[0]
    variants = [(name, s) for name in CORRUPTION_NAMES for s in SEVERITIES]
    predictors = {name: classifier_predictor(cfg, checkpoint) for name, (cfg, checkpoint) in candidates.items()}
    accuracy = accuracy_per_variant(predictors, first.data, variants, seed, "test", run_dir, first.storage)
    return {name: float(np.mean(list(acc.values()))) for name, acc in accuracy.items()}


def summary(accuracy: dict[tuple[str, int], float]) -> dict:
    """Clean accuracy, mean corruption accuracy (over every corruption x severity), relative robustness,
    and the mean per corruption."""
    clean = accuracy[CLEAN]
    corrupted = {v: a for v, a in accuracy.items() if v != CLEAN}
    mean = float(np.mean(list(corrupted.values()))) if corrupted else float("nan")
    per_corruption: dict[str, list[float]] = {}
    for (name, _), acc in corrupted.items():
        per_corruption.setdefault(name, []).append(acc)
    return {
        "clean_acc": clean,
        "mean_corruption_acc": mean,
        "relative_robustness": mean / clean if clean else float("nan"),
        "per_corruption": {name: float(np.mean(a)) for name, a in per_corruption.items()},
    }


def variants_of(cfg: RobustnessConfig) -> list[tuple[str, int]]:
    return [CLEAN, *((name, s) for name in cfg.corruptions for s in cfg.severities)]


def markdown(report: dict) -> str:
    s, severities, shift = report["summary"], report["severities"], report.get("domain_shift")
    return md.document(
        f"# Robustness: {report['run']}",
        f"Model: {report['model']}. Test split of {report['shards']}, seed {report['seed']}.",
        md.table(
            ["clean accuracy", "mean corruption accuracy", "relative robustness"],
            "rrr",
            [[f"{100 * s['clean_acc']:.2f}%", f"{100 * s['mean_corruption_acc']:.2f}%", f"{s['relative_robustness']:.3f}"]],
        ),
        md.table(
            ["corruption", *(f"severity {k}" for k in severities), "mean"],
            "l" + "r" * (len(severities) + 1),
            [
                [name, *(f"{100 * report['accuracy'][name][str(k)]:.2f}%" for k in severities), f"{100 * s['per_corruption'][name]:.2f}%"]
                for name in report["corruptions"]
            ],
        ),
        md.table(
            ["domain", "test accuracy"],
            "lr",
            [
                [f"{report['shards']} (source)", f"{100 * s['clean_acc']:.2f}%"],
                [f"{shift['shards']} (target)", f"{100 * shift['accuracy']:.2f}%"],
            ],
        )
        if shift
        else [],
    )


def heatmap(report: dict) -> bytes:
    """PNG: accuracy per corruption (rows) x severity (columns)."""
    names, severities = report["corruptions"], report["severities"]
    grid = np.array([[report["accuracy"][n][str(k)] for k in severities] for n in names]) * 100
    fig, ax = plt.subplots(figsize=(1.2 * len(severities) + 2.5, 0.4 * len(names) + 1.2))
    im = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(severities)), [str(k) for k in severities])
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("severity")
    for i in range(len(names)):
        for j in range(len(severities)):
            ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", color="white" if grid[i, j] < 60 else "black", fontsize=7)
    fig.colorbar(im, ax=ax, label="test accuracy (%)")
    ax.set_title(
        f"clean {100 * report['summary']['clean_acc']:.1f}%, mean corrupted {100 * report['summary']['mean_corruption_acc']:.1f}%",
        fontsize=9,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def run_robustness(cfg: RobustnessConfig) -> dict:
    """Score the run's model; writes robustness.{json,md,png} to cfg.out (default <run>/robustness)."""
    log = get_logger()
    cfg = storage.absolute_uris(cfg, "run", "shards", "target_shards", "out")
    out = cfg.out or storage.join(cfg.run, "robustness")
    raw = yaml.safe_load(storage.read_bytes(storage.join(cfg.run, "config.yaml"), cfg.storage))  # fails fast on a wrong run
    init_ray(cfg.ray)
    if "semisup" in raw:  # a fine-tuned run
        finetune_cfg = from_dict(FinetuneConfig, raw)
        checkpoint = checkpoints.latest_checkpoint(cfg.run, cfg.storage)
        if checkpoint is None:
            raise FileNotFoundError(f"run: no checkpoint under {cfg.run}")
        data = dataclasses.replace(finetune_cfg.data, shards=cfg.shards or finetune_cfg.data.shards)
        model = f"fine-tuned classifier ({storage.relative_to(checkpoint, cfg.run)})"
        predict = classifier_predictor(finetune_cfg, checkpoint)
    else:
        pretrain_cfg = from_dict(PretrainConfig, raw)
        data = dataclasses.replace(pretrain_cfg.data, shards=cfg.shards or pretrain_cfg.data.shards)  # the probe trains on these shards too
        model = f"linear probe on the frozen {pretrain_cfg.method.upper()} backbone ({cfg.probe_train_samples} clean train images)"
        predict = probe_predictor(cfg.run, pretrain_cfg, data, cfg.probe_train_samples, out, cfg.storage)
    variants = variants_of(cfg)
    log.info("scoring %s on %d views of the test split of %s", model, len(variants), data.shards)
    accuracy = accuracy_per_variant({"model": predict}, data, variants, cfg.seed, "test", out, cfg.storage)["model"]
    report: dict[str, Any] = {
        "run": cfg.run,
        "model": model,
        "shards": data.shards,
        "seed": cfg.seed,
        "corruptions": cfg.corruptions,
        "severities": cfg.severities,
        "summary": summary(accuracy),
        "accuracy": {name: {str(k): accuracy[name, k] for k in cfg.severities} for name in cfg.corruptions},
    }
    if cfg.target_shards:
        target = dataclasses.replace(data, shards=cfg.target_shards)
        report["domain_shift"] = {
            "shards": cfg.target_shards,
            "accuracy": accuracy_per_variant({"model": predict}, target, [CLEAN], cfg.seed, "test", out, cfg.storage)["model"][CLEAN],
        }
    storage.write_bytes(storage.join(out, "robustness.json"), json.dumps(report, indent=1).encode(), cfg.storage)
    storage.write_bytes(storage.join(out, "robustness.md"), markdown(report).encode(), cfg.storage)
    storage.write_bytes(storage.join(out, "robustness.png"), heatmap(report), cfg.storage)
    s = report["summary"]
    shift = f", {100 * report['domain_shift']['accuracy']:.2f}% on {cfg.target_shards}" if cfg.target_shards else ""
    print(
        f"\nRobustness of {cfg.run}: clean {100 * s['clean_acc']:.2f}%, mean corruption {100 * s['mean_corruption_acc']:.2f}% "
        f"(relative {s['relative_robustness']:.3f}){shift}\nreport: {storage.join(out, 'robustness.md')}",
        flush=True,
    )
    return report
