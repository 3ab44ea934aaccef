"""Whether a run directory's checkpoint can be resumed under the config a run is started with.

Running a command again under the same `run.name` resumes from the newest checkpoint in
`<storage_path>/<name>`. A config that changed the network since (another `model.name`, width or
channel count) would load that checkpoint into a model of other shapes and fail deep in the
workers' `load_state_dict` ("size mismatch for backbone.blocks.0.0.weight"), minutes after Ray
started. This check runs on the driver first, naming the run directory and the keys that differ.
Keys that do not shape the tensors (steps, learning rates, loss weights, fault injection) may change
between attempts: resuming with more epochs, or after an injected crash, is how runs are extended.
"""

from __future__ import annotations

from typing import Any

import yaml

from rayssl.config import ConfigError, FinetuneConfig, PretrainConfig, StorageConfig, to_dict
from rayssl.data import storage
from rayssl.train import checkpoints, runs

# The dotted config keys that fix what a checkpoint holds. `init` too: a fine-tuning checkpoint
# continues the start it was made from, so a new `init` would be silently ignored.
ARCHITECTURE_KEYS = ("method", "model", "data.channels", "data.image_size", "semisup.num_classes", "init")


def refuse_incompatible_resume(cfg: PretrainConfig | FinetuneConfig, run_dir: str, storage_cfg: StorageConfig) -> None:
    """Raise ConfigError if `run_dir` holds a checkpoint and its config.yaml differs from `cfg` in a
    key of ARCHITECTURE_KEYS. Call it before the run writes its own config.yaml over the old one."""
    config_uri = storage.join(run_dir, runs.CONFIG_FILE)
    if not storage.exists(config_uri, storage_cfg):
        return
    checkpoint = checkpoints.latest_checkpoint(run_dir, storage_cfg)
    if checkpoint is None:
        return  # an attempt that stopped before its first checkpoint: nothing to resume
    stored = yaml.safe_load(storage.read_bytes(config_uri, storage_cfg)) or {}
    current = to_dict(cfg)
    if "vit" not in (_lookup(stored, "model.name"), _lookup(current, "model.name")):
        for tree in (stored, current):  # a convnet's run: model.vit shapes nothing
            tree.get("model", {}).pop("vit", None)
    differences = [d for key in ARCHITECTURE_KEYS for d in _differences(key, _lookup(stored, key), _lookup(current, key))]
    if differences:
        listed = "; ".join(f"{key}: {before!r} in the run, {now!r} now" for key, before, now in differences)
        raise ConfigError(
            f"run directory {run_dir} holds checkpoint {checkpoint}, made under settings that fix what a checkpoint "
            f"holds and that this config changes ({listed}). Resuming would load it into this config's model: "
            f"choose another run.name, or delete {run_dir} to start over"
        )


_ABSENT = object()


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _differences(key: str, before: Any, now: Any) -> list[tuple[str, Any, Any]]:
    """(dotted key, stored value, current value) of every leaf that differs. A key the stored config
    lacks (written before the key existed) counts as unchanged: older runs stay resumable."""
    if before is _ABSENT or now is _ABSENT:
        return []
    if isinstance(before, dict) and isinstance(now, dict):
        return [
            d
            for name in sorted(set(before) | set(now))
            for d in _differences(f"{key}.{name}", before.get(name, _ABSENT), now.get(name, _ABSENT))
        ]
    return [] if before == now else [(key, before, now)]
