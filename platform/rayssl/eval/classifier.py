"""Test accuracy of fine-tuned classifiers, streamed over the test split."""

from __future__ import annotations

from collections.abc import Hashable

from rayssl.config import FinetuneConfig
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
