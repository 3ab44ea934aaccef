"""`rayssl eval`: kNN and linear-probe accuracy of a pretrained backbone vs the same backbone at init."""

from __future__ import annotations

import time

import torch

from rayssl.config import PretrainConfig
from rayssl.eval.features import extract_features
from rayssl.eval.probes import knn_accuracy, linear_probe_accuracy
from rayssl.eval.report import markdown_table, write_eval
from rayssl.logs import get_logger
from rayssl.methods import build_method
from rayssl.train import checkpoints
from rayssl.train.launch import init_ray, run_dir_of, with_absolute_paths


def run_eval(cfg: PretrainConfig, checkpoint_uri: str | None = None) -> dict:
    """Evaluate the run's latest (or the given) checkpoint; writes `<run_dir>/eval.json`."""
    log = get_logger()
    cfg = with_absolute_paths(cfg)
    run_dir = run_dir_of(cfg)
    checkpoint_uri = checkpoint_uri or checkpoints.latest_checkpoint(run_dir, cfg.storage)
    if checkpoint_uri is None:
        raise FileNotFoundError(f"no checkpoint under {run_dir}: run `rayssl pretrain` first")
    init_ray(cfg.ray)
    state, meta = checkpoints.load_model_state(checkpoint_uri, cfg.storage)

    backbones: dict[str, torch.nn.Module] = {}
    if cfg.eval.compare_random_init:
        torch.manual_seed(cfg.train.seed)  # the exact initialisation pretraining started from
        backbones["random init"] = _backbone(cfg, None)
    backbones[f"{cfg.method.upper()} (epoch {meta['epoch']})"] = _backbone(cfg, state)

    started = time.perf_counter()
    train_feats, train_y = extract_features(backbones, cfg.data, "train", run_dir, cfg.storage, limit=cfg.eval.max_train_samples)
    test_feats, test_y = extract_features(backbones, cfg.data, "test", run_dir, cfg.storage)
    log.info("extracted features in %.1fs", time.perf_counter() - started)
    rows = []
    for name in backbones:
        train_x = train_feats[name]
        rows.append(
            {
                "features": name,
                "knn_acc": knn_accuracy(train_x, train_y, test_feats[name], test_y, cfg.eval.knn_k),
                "linear_acc": linear_probe_accuracy(train_x, train_y, test_feats[name], test_y),
                "train_samples": len(train_x),
                "test_samples": len(test_y),
            }
        )
        log.info("evaluated %s: %s", name, rows[-1])
    result = {"checkpoint": checkpoint_uri, "knn_k": cfg.eval.knn_k, "results": rows}
    uri = write_eval(run_dir, result, cfg.storage)
    print(f"\nFrozen-feature evaluation ({cfg.data.shards}, written to {uri}):\n{markdown_table(rows)}\n", flush=True)
    return result


def _backbone(cfg: PretrainConfig, state: dict | None) -> torch.nn.Module:
    """The method's feature extractor (NAT: before the projection head; MAE: the ViT encoder)."""
    method = build_method(cfg, num_samples=0)  # the model only; no NAT table is needed here
    if state is not None:
        method.model.load_state_dict(state)
    return method.backbone()
