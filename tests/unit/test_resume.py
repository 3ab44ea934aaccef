"""A run directory resumed under a config that changed the network fails on the driver, naming the
run and the keys (rayssl.train.resume), while the keys a resume may change pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayssl.config import ConfigError, FinetuneConfig, PretrainConfig, StorageConfig, dump_yaml, load_config
from rayssl.train.checkpoints import save_local
from rayssl.train.resume import refuse_incompatible_resume


def stored_run(root: Path, cfg, with_checkpoint: bool = True) -> str:
    """A run directory as an earlier attempt left it: its config.yaml and (optionally) a checkpoint."""
    run_dir = root / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    if with_checkpoint:
        save_local(run_dir / "checkpoint_2026-01-01_00-00-00.000000", {}, {}, {}, {"epoch": 1, "global_step": 250, "metrics": {}})
    return str(run_dir)


def test_a_changed_backbone_is_refused_naming_the_run_dir_and_each_differing_key(tmp_path):
    run_dir = stored_run(tmp_path, load_config(FinetuneConfig, None, ["model.name=cnn"]))
    changed = load_config(FinetuneConfig, None, ["model.name=small_cnn", "model.width=16"])
    with pytest.raises(ConfigError) as refused:
        refuse_incompatible_resume(changed, run_dir, StorageConfig())
    message = str(refused.value)
    assert run_dir in message and "checkpoint_2026-01-01_00-00-00.000000" in message
    assert "model.name: 'cnn' in the run, 'small_cnn' now" in message
    assert "model.width: 32 in the run, 16 now" in message
    assert "model.vit" not in message  # a convnet's run: the ViT settings shape nothing


def test_a_new_init_is_refused_because_the_checkpoint_would_ignore_it(tmp_path):
    run_dir = stored_run(tmp_path, load_config(FinetuneConfig, None, []))
    with pytest.raises(ConfigError, match=r"init: None in the run, '/runs/nat' now"):
        refuse_incompatible_resume(load_config(FinetuneConfig, None, ["init=/runs/nat"]), run_dir, StorageConfig())


def test_keys_a_resume_may_change_pass(tmp_path):
    run_dir = stored_run(tmp_path, load_config(PretrainConfig, None, ["train.epochs=2"]))
    longer = load_config(PretrainConfig, None, ["train.epochs=4", "optim.lr=0.01", "train.log_every=5", "model.vit.depth=2"])
    refuse_incompatible_resume(longer, run_dir, StorageConfig())


def test_a_run_without_a_checkpoint_or_without_a_directory_starts_over(tmp_path):
    run_dir = stored_run(tmp_path, load_config(PretrainConfig, None, ["model.name=cnn"]), with_checkpoint=False)
    other = load_config(PretrainConfig, None, ["model.name=resnet18"])
    refuse_incompatible_resume(other, run_dir, StorageConfig())
    refuse_incompatible_resume(other, str(tmp_path / "never_run"), StorageConfig())


def test_a_key_the_stored_config_predates_counts_as_unchanged(tmp_path):
    run_dir = Path(stored_run(tmp_path, load_config(FinetuneConfig, None, [])))
    text = (run_dir / "config.yaml").read_text().replace("  batch_norm: false\n", "")  # written before model.batch_norm existed
    assert "batch_norm" not in text
    (run_dir / "config.yaml").write_text(text)
    refuse_incompatible_resume(load_config(FinetuneConfig, None, ["model.batch_norm=true"]), str(run_dir), StorageConfig())
