"""Test accuracy of fine-tuned classifiers, streamed over the test split."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

import numpy as np
import torch

from rayssl.config import FinetuneConfig
from rayssl.data.pipeline import image_dataset
from rayssl.eval.features import extract_features
from rayssl.train import checkpoints
from rayssl.train.pretrained import build_classifier


def accuracy_on_test_split(candidates: dict[Hashable, tuple[FinetuneConfig, str]], run_dir: str) -> dict[Hashable, float]:
    """Top-1 test accuracy of each {name: (config, checkpoint URI)}, in one pass over the test split.

    Used only after selection, never to select. The candidates share the data config of the
    first one (a sweep's trials differ in their optimisation and init, not in their data).
    """
    first = next(iter(candidates.values()))[0]
    nets = {}
    for name, (cfg, checkpoint_uri) in candidates.items():
        nets[name] = build_classifier(cfg)
        state, _ = checkpoints.load_model_state(checkpoint_uri, cfg.storage)
        nets[name].load_state_dict(state)
    logits, labels = extract_features(nets, first.data, "test", run_dir, first.storage)
    return {name: float((logits[name].argmax(axis=1) == labels).mean()) for name in nets}


def score_on_test_split(cfg: FinetuneConfig, checkpoint_uri: str, run_dir: str) -> float:
    """Top-1 accuracy of one fine-tuned checkpoint on the test split."""
    return accuracy_on_test_split({"classifier": (cfg, checkpoint_uri)}, run_dir)["classifier"]


@torch.no_grad()
def predict_probabilities(cfg: FinetuneConfig, checkpoint_uri: str, shards: str, split: str, run_dir: str, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Softmax of a fine-tuned classifier over every decodable image of `split` of the shard set `shards`.

    Returns (index int64 [N], probabilities float32 [N, C]) in the stream's order; `index` is the
    shard row's index within the split. Images are decoded as `cfg.data` says (size, channels).
    """
    net = build_classifier(cfg)
    state, _ = checkpoints.load_model_state(checkpoint_uri, cfg.storage)
    net.load_state_dict(state)
    net.eval()
    data = dataclasses.replace(cfg.data, shards=shards)
    indices, probs = [], []
    for batch in image_dataset(data, split, run_dir, cfg.storage, augment=False).iter_torch_batches(batch_size=batch_size, device="cpu"):
        indices.append(batch["index"].numpy())
        probs.append(torch.softmax(net(batch["image"]), dim=1).numpy())
    if not indices:
        return np.zeros(0, np.int64), np.zeros((0, cfg.semisup.num_classes), np.float32)
    return np.concatenate(indices), np.concatenate(probs)
