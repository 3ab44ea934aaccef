"""A run directory -> what inference needs from it: config, checkpoint, model, class names (no Ray)."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Literal

import yaml
from torch import nn

from rayssl.config import ConfigError, FinetuneConfig, PretrainConfig, StorageConfig, from_dict
from rayssl.data import storage
from rayssl.data.shards import ShardError, read_manifest
from rayssl.logs import get_logger
from rayssl.train import checkpoints
from rayssl.train.pretrained import load_pretrained_backbone


@dataclass(frozen=True)
class RunModel:
    """One run, read but not loaded: enough to build its model on any process (it pickles small)."""

    run_dir: str
    kind: Literal["finetune", "pretrain"]
    cfg: FinetuneConfig | PretrainConfig
    checkpoint: str  # URI of the latest complete checkpoint directory
    config_sha256: str  # of config.yaml's bytes as stored: names the exact recipe the weights came from
    storage: StorageConfig

    @property
    def checkpoint_name(self) -> str:
        return storage.relative_to(self.checkpoint, self.run_dir) or self.checkpoint


def read_run(run_dir: str, storage_cfg: StorageConfig) -> RunModel:
    """Read `<run_dir>/config.yaml` and find its latest checkpoint.

    A FinetuneConfig dump (it has a `semisup` section, as rayssl.train.runs tells them apart) is a
    fine-tuned classifier, anything else a pretraining run. `storage_cfg` (the command line's)
    replaces the run's own storage settings when it names an endpoint: the run may have been
    trained against another one.
    """
    run_dir = storage.absolute(run_dir.rstrip("/"), storage_cfg)
    config_uri = storage.join(run_dir, "config.yaml")
    if not storage.exists(config_uri, storage_cfg):
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    raw_bytes = storage.read_bytes(config_uri, storage_cfg)
    raw = yaml.safe_load(raw_bytes)
    kind: Literal["finetune", "pretrain"] = "finetune" if "semisup" in raw else "pretrain"
    cfg: FinetuneConfig | PretrainConfig = from_dict(FinetuneConfig, raw) if kind == "finetune" else from_dict(PretrainConfig, raw)
    if storage_cfg.s3_endpoint:
        cfg = dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, s3_endpoint=storage_cfg.s3_endpoint))
    checkpoint = checkpoints.latest_checkpoint(run_dir, storage_cfg)
    if checkpoint is None:
        raise FileNotFoundError(f"no complete checkpoint under {run_dir}")
    return RunModel(run_dir, kind, cfg, checkpoint, hashlib.sha256(raw_bytes).hexdigest(), storage_cfg)


def require_classifier(run: RunModel, command: str) -> FinetuneConfig:
    """The fine-tuning config of `run`; a pretraining run is refused in one line (it has no classifier head)."""
    if run.kind != "finetune":
        raise ConfigError(
            f"{run.run_dir} is a pretraining run ({run.cfg.method}): it has a backbone but no classifier to {command}; "
            f"`rayssl embed` gives its features"
        )
    assert isinstance(run.cfg, FinetuneConfig)
    return run.cfg


def load_classifier(run: RunModel) -> nn.Module:
    """The fine-tuned classifier in eval mode, loaded by the same function that scores it on the test
    split (eval.classifier.load_classifier: build_classifier, then the checkpoint's model.pt, which
    holds the eval weights: the EMA when schedule.ema_decay > 0, see train.steps.FinetuneStep.state_dict)."""
    from rayssl.eval.classifier import load_classifier as load_scored_classifier

    return load_scored_classifier(require_classifier(run, "load"), run.checkpoint).eval()


def load_backbone(run: RunModel) -> nn.Module:
    """The feature extractor in eval mode: [B, C, H, W] -> [B, D]. A fine-tuned run gives its
    classifier's backbone (fine-tuned weights), a pretraining run its pretrained backbone."""
    if run.kind == "finetune":
        backbone = load_classifier(run).backbone
        assert isinstance(backbone, nn.Module)  # models.classifier.Classifier.backbone
        return backbone
    backbone, _ = load_pretrained_backbone(run.checkpoint, run.storage)
    return backbone.eval()


def class_names(run: RunModel) -> list[str]:
    """The classifier's class names in id order, as its test report names them (eval.classifier.class_names:
    the label table's names, else the training shards' manifest "classes"); "0".."K-1" where there are
    none or they cannot be read (training shards may be gone by export time)."""
    from rayssl.eval.classifier import class_names as report_class_names

    cfg = require_classifier(run, "name the classes of")
    k = cfg.semisup.num_classes
    try:
        names = report_class_names(cfg, read_manifest(cfg.data.shards, run.storage).get("classes"))
    except (ShardError, OSError, ValueError) as exc:  # ValueError: the label table's errors (LabelTableError, LabelBudgetError)
        get_logger().warning("class names: %s; using 0..%d", exc, k - 1)
        names = []
    if len(names) > k:
        raise ConfigError(f"{cfg.data.shards} names {len(names)} classes but the classifier has semisup.num_classes={k}")
    if 0 < len(names) < k:  # a head wider than the data's classes: the extra outputs were never a label
        get_logger().warning("class names: %d names for a head of %d classes; the rest are named by index", len(names), k)
    return [str(n) for n in names] + [str(i) for i in range(len(names), k)]
