"""Which images a sweep trains on when `selection` is not "balanced": each budget's labelled set
chosen by a selection strategy (rayssl.selection) rather than drawn per class from the labels.

Before any trial, the driver embeds the train split once with the backbone of `selection_run`, and
for every (budget, label draw) picks budget x num_classes images and writes them as a CSV under
`<sweep>/selection/`; the trial trains on that list (semisup.labelled_ids). The pool is every train
image with a label outside the draw's validation set and test hold-out, so every strategy is
validated and scored on the same images as the class-balanced draw of the same seed. The label
draw's seed is the selection's seed (k-means initialisation, random picks).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rayssl import selection
from rayssl.config import SweepConfig
from rayssl.data import storage
from rayssl.data.labelled import select_labels
from rayssl.data.shardset import ShardSet
from rayssl.eval.features import embed_split
from rayssl.logs import get_logger
from rayssl.selection.picks import picks_table, write_picks
from rayssl.train.pretrained import load_pretrained_backbone

BALANCED = "balanced"  # the class-balanced draw of finetune.semisup: no list, no embeddings


def selection_uri(cfg: SweepConfig, budget: int, label_seed: int) -> str:
    """Where the picks of one (budget, label draw) live: <storage_path>/<name>/selection/<strategy>_<budget>_<draw>.csv."""
    return storage.join(cfg.storage_path, cfg.name, "selection", f"{cfg.selection}_budget{budget}_draw{label_seed}.csv")


def write_selections(cfg: SweepConfig) -> None:
    """Pick and write every (budget, label draw)'s labelled images that are not written yet (a resumed
    sweep keeps its picks). cfg: absolute paths (rayssl.tune.sweep.with_absolute_paths); Ray running."""
    data, storage_cfg = cfg.finetune.data, cfg.finetune.storage
    missing = [(int(b), s) for b in cfg.budgets for s in cfg.label_seeds if not storage.exists(selection_uri(cfg, int(b), s), storage_cfg)]
    if not missing:
        return
    shards = ShardSet.open(data.shards, storage_cfg, check=False)
    index, vectors = _train_embeddings(cfg)
    ids = shards.sample_ids("train")[index]
    for budget, seed in missing:
        plan = select_labels(data, dataclasses.replace(cfg.finetune.semisup, label_seed=seed), storage_cfg, shards)
        held_out = np.concatenate([plan.split.validation, plan.split.test])
        candidates = (plan.labels[index] >= 0) & ~np.isin(index, held_out)
        picked = selection.select(cfg.selection, vectors, budget * cfg.finetune.semisup.num_classes, candidates=candidates, seed=seed)
        write_picks(selection_uri(cfg, budget, seed), picks_table(ids, picked.indices, picked.clusters, cfg.selection), storage_cfg)
        get_logger().info("selection %s, budget %d, draw %d: %s", cfg.selection, budget, seed, picked.details)


def _train_embeddings(cfg: SweepConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train index int64 [N], float32 [N, D]): selection_run's backbone on every train image; random
    selection needs no embedding and gets a constant [N, 1]."""
    data, storage_cfg = cfg.finetune.data, cfg.finetune.storage
    out = storage.join(cfg.storage_path, cfg.name, "selection")
    if cfg.selection == "random":
        index = ShardSet.open(data.shards, storage_cfg, check=False).read_columns("train", ["index"]).column("index").to_numpy()
        return np.sort(index), np.ones((len(index), 1), np.float32)
    backbone, pretrain_cfg = load_pretrained_backbone(cfg.selection_run, storage_cfg)
    # The backbone sees images as it was pretrained on them (size, channels), from the sweep's shards.
    view = dataclasses.replace(pretrain_cfg.data, shards=data.shards)
    return embed_split(backbone, view, "train", out, storage_cfg)
