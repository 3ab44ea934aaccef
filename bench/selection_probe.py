"""Selection against a linear probe (issue 32's diagnosis): the same picks as bench/selection.py, scored
by a logistic regression on the frozen SimCLR embeddings they were picked from, so that a selection's
effect is measured without a fine-tuning recipe in between -> bench/results/selection_probe.{json,md}.

Where bench/selection.py shows no gap on CIFAR-10, this separates the two possible causes: a learner
that cannot use 10 labels, or embeddings whose clusters do not follow the classes (then every
strategy that reads them covers few classes, and no learner can help).

    rayssl embed runs/simclr_mnist_small_cnn data/shards/mnist --out runs/embeddings_mnist
    rayssl embed runs/simclr_cifar10_small_cnn data/shards/cifar10 --out runs/embeddings_cifar10
    .venv/bin/python bench/selection_probe.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression

from rayssl import selection
from rayssl.markdown import document, table

STRATEGIES = ("random", "kcenter", "typiclust", "probcover")
BUDGETS = (10, 20)
SEEDS = (0, 1, 2)
DATASETS = {"mnist": ("runs/embeddings_mnist", "data/shards/mnist"), "cifar10": ("runs/embeddings_cifar10", "data/shards/cifar10")}


def load(embeddings: str, shards: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit embeddings float32 [N, D], labels int64 [N], split str [N]) of every row `rayssl embed` wrote."""
    rows = pq.read_table(embeddings)
    x = np.stack(rows["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
    labels: dict[str, int] = {}
    for part in sorted(Path(shards).glob("*/*.parquet")):
        ids = pq.read_table(part, columns=["sample_id", "label"])
        labels.update(zip(ids["sample_id"].to_pylist(), ids["label"].to_pylist(), strict=True))
    y = np.array([labels[i] for i in rows["sample_id"].to_pylist()])
    return x / np.linalg.norm(x, axis=1, keepdims=True), y, np.array(rows["split"].to_pylist())


def probe_rows(dataset: str, x: np.ndarray, y: np.ndarray, split: np.ndarray) -> list[dict]:
    """One row per (budget, strategy): test accuracy of a logistic regression on the picks, over SEEDS."""
    train, test = split == "train", split == "test"
    out = []
    for budget in BUDGETS:
        for strategy in STRATEGIES:
            accs, classes = [], []
            for seed in SEEDS:
                picks = selection.select(strategy, x[train], budget, seed=seed, purity_clusters=10).indices
                probe = LogisticRegression(C=10.0, max_iter=2000).fit(x[train][picks], y[train][picks])
                accs.append(float(probe.score(x[test], y[test])))
                classes.append(len(set(y[train][picks].tolist())))
            out.append(
                {
                    "dataset": dataset,
                    "budget": budget,
                    "strategy": strategy,
                    "test_acc_mean": float(np.mean(accs)),
                    "test_acc_std": float(np.std(accs, ddof=1)),
                    "seeds": len(SEEDS),
                    "classes_covered": float(np.mean(classes)),
                }
            )
            print(f"{dataset} {budget} {strategy}: {100 * out[-1]['test_acc_mean']:.2f}%", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--out", default="bench/results/selection_probe")
    args = parser.parse_args()
    rows = [r for d in args.datasets for r in probe_rows(d, *load(*DATASETS[d]))]
    Path(f"{args.out}.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    lines = table(
        ["dataset", "labels", "strategy", "test accuracy", "classes covered"],
        "lrlrr",
        [
            [
                r["dataset"],
                r["budget"],
                r["strategy"],
                f"{100 * r['test_acc_mean']:.2f} ± {100 * r['test_acc_std']:.2f}%",
                f"{r['classes_covered']:.1f}",
            ]
            for r in rows
        ],
    )
    header = (
        "Logistic regression (C = 10) on the frozen, L2-normalised SimCLR embeddings of the picks, test accuracy "
        f"mean ± std over seeds {list(SEEDS)} (k-means and random seeds); classes covered: of the 10, mean over seeds."
    )
    Path(f"{args.out}.md").write_text(document("# Selection against a linear probe", header, lines))
    print(Path(f"{args.out}.md").read_text())


if __name__ == "__main__":
    main()
