from pathlib import Path

import pytest

from rayssl.config import ConfigError, FinetuneConfig, PretrainConfig, SweepConfig, load_config

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def test_defaults_then_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\ndata:\n  batch_size: 16\n")
    cfg = load_config(PretrainConfig, path, ["train.epochs=5", "optim.lr=1"])
    assert cfg.train.epochs == 5  # --set wins over YAML
    assert cfg.data.batch_size == 16  # YAML wins over defaults
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)  # int widened to float
    assert cfg.train.num_workers == 2  # untouched default


def test_unknown_key_names_dotted_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  augment:\n    crop_scale_mni: 0.5\n")
    with pytest.raises(ConfigError, match=r"data\.augment\.'crop_scale_mni'"):
        load_config(PretrainConfig, path)


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match="unknown config key 'trian'"):
        load_config(PretrainConfig, None, ["trian.epochs=3"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=three", r"train\.epochs: expected int, got str"),
        ("train.use_gpu=1", r"train\.use_gpu: expected bool, got int"),
        ("train.epochs=true", r"train\.epochs: expected int, got bool"),
        ("model.name=vgg", r"model\.name: 'vgg' is not one of"),
        ("data=3", r"data: expected a mapping"),
    ],
)
def test_wrong_types_fail_with_path(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PretrainConfig, None, [override])


def test_optional_accepts_null():
    cfg = load_config(PretrainConfig, None, ["eval.max_train_samples=null", "storage.s3_endpoint=http://h:1"])
    assert cfg.eval.max_train_samples is None and cfg.storage.s3_endpoint == "http://h:1"


def config_class(path: Path) -> type:
    return SweepConfig if path.name.startswith("sweep_") else FinetuneConfig if path.name.startswith("semisup_") else PretrainConfig


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    assert CONFIGS, "configs/ holds no YAML"
    load_config(config_class(path), path)


def test_lists_and_mappings_are_checked():
    cfg = load_config(SweepConfig, None, ["budgets=[1, 5]", "pretrained={NAT: runs/x}"])
    assert cfg.budgets == [1, 5] and cfg.pretrained == {"NAT": "runs/x"}
    with pytest.raises(ConfigError, match=r"budgets\[1\]: expected int, got str"):
        load_config(SweepConfig, None, ["budgets=[1, five]"])


def test_multiscale_inversion_on_a_vit_fails_before_anything_starts():
    from rayssl.train.launch import run_finetune

    cfg = load_config(FinetuneConfig, None, ["model.name=vit", "semisup.alpha=0.1", "semisup.inversion=multiscale", "data.shards=/nonexistent"])
    with pytest.raises(ConfigError, match="semisup.inversion: multiscale needs a backbone made of blocks"):
        run_finetune(cfg)
