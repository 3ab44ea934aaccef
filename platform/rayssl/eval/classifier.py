"""Test accuracy of a fine-tuned classifier, streamed over the test split."""

from __future__ import annotations

from rayssl.config import FinetuneConfig
from rayssl.eval.features import extract_features
from rayssl.train import checkpoints
from rayssl.train.pretrained import build_classifier


def score_on_test_split(cfg: FinetuneConfig, checkpoint_uri: str, run_dir: str) -> float:
    """Top-1 accuracy on the test split. Used only after selection, never to select."""
    net = build_classifier(cfg)
    state, _ = checkpoints.load_model_state(checkpoint_uri, cfg.storage)
    net.load_state_dict(state)
    logits, labels = extract_features({"classifier": net}, cfg.data, "test", run_dir, cfg.storage)
    return float((logits["classifier"].argmax(axis=1) == labels).mean())
