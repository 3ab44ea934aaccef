from pathlib import Path

import pytest

from rayssl.config import ConfigError, FinetuneConfig, PretrainConfig, QualityConfig, RobustnessConfig, SweepConfig, load_config
from rayssl.methods.registry import reads_unlabelled

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
    prefixes = {
        "sweep_": SweepConfig,
        "semisup_": FinetuneConfig,
        "fixmatch_": FinetuneConfig,
        "ivae_": FinetuneConfig,
        "quality_": QualityConfig,
        "robustness_": RobustnessConfig,
    }
    return next((cls for prefix, cls in prefixes.items() if path.name.startswith(prefix)), PretrainConfig)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    assert CONFIGS, "configs/ holds no YAML"
    load_config(config_class(path), path)


def test_lists_and_mappings_are_checked():
    cfg = load_config(SweepConfig, None, ["budgets=[1, 5]", "pretrained={NAT: runs/x}"])
    assert cfg.budgets == [1, 5] and cfg.pretrained == {"NAT": "runs/x"}
    with pytest.raises(
        ConfigError, match=r"budgets\[1\]: 'five' matches none of: expected int, got str 'five'; 'five' is not one of 'all'"
    ):
        load_config(SweepConfig, None, ["budgets=[1, five]"])
    assert load_config(SweepConfig, None, ["budgets=[1, 2, all]"]).budgets == [1, 2, "all"]
    with pytest.raises(ConfigError, match=r"budgets\[0\]: must be > 0 or \"all\", got 0"):
        load_config(SweepConfig, None, ["budgets=[0, all]"])


def test_multiscale_inversion_on_a_vit_fails_before_anything_starts():
    with pytest.raises(ConfigError, match="inversion.kind: multiscale needs a backbone made of blocks"):
        load_config(
            FinetuneConfig, None, ["model.name=vit", "inversion.alpha=0.1", "inversion.kind=multiscale", "data.shards=/nonexistent"]
        )
    # from a pretrained run, its own config names the model: checked on the worker
    load_config(FinetuneConfig, None, ["model.name=vit", "inversion.alpha=0.1", "inversion.kind=multiscale", "init=runs/mae"])


# One bad value per range or cross-field rule: (config class, override, the dotted key the error must name).
BAD_VALUES = [
    (PretrainConfig, "data.batch_size=-5", "data.batch_size"),
    (PretrainConfig, "data.batch_size=0", "data.batch_size"),
    (PretrainConfig, "data.image_size=0", "data.image_size"),
    (PretrainConfig, "data.channels=0", "data.channels"),
    (PretrainConfig, "data.quarantine_threshold=1", "data.quarantine_threshold"),
    (PretrainConfig, "data.quarantine_threshold=-0.1", "data.quarantine_threshold"),
    (PretrainConfig, "data.augment.crop_scale_min=0", "data.augment.crop_scale_min"),
    (PretrainConfig, "data.augment.translate_px=-1", "data.augment.translate_px"),
    (PretrainConfig, "data.augment.rotate_deg=400", "data.augment.rotate_deg"),
    (PretrainConfig, "data.augment.erase_p=1.5", "data.augment.erase_p"),
    (PretrainConfig, "model.width=0", "model.width"),
    (PretrainConfig, "model.embed_dim=-1", "model.embed_dim"),
    (PretrainConfig, "model.vit.heads=0", "model.vit.heads"),
    (PretrainConfig, "model.vit.width=30", "model.vit.width"),  # not divisible by 4 heads
    (PretrainConfig, "model.vit.pool=cls", "model.vit.pool"),  # needs class_token
    (PretrainConfig, "nat.target_dim=0", "nat.target_dim"),
    (PretrainConfig, "nat.reassign_every=0", "nat.reassign_every"),
    (PretrainConfig, "mae.mask_ratio=1.5", "mae.mask_ratio"),
    (PretrainConfig, "mae.mask_ratio=0", "mae.mask_ratio"),
    (PretrainConfig, "mae.decoder_heads=0", "mae.decoder_heads"),
    (PretrainConfig, "mae.recon_images=-1", "mae.recon_images"),
    (PretrainConfig, "method=mae", "model.name"),  # MAE needs a ViT
    (PretrainConfig, "method=masked_contrastive", "model.name"),  # so does the masked contrastive objective
    (PretrainConfig, "contrastive.temperature=0", "contrastive.temperature"),
    (PretrainConfig, "contrastive.projection_dim=0", "contrastive.projection_dim"),
    (PretrainConfig, "contrastive.weight=1.5", "contrastive.weight"),
    (PretrainConfig, "data.augment.color_jitter=-1", "data.augment.color_jitter"),
    (PretrainConfig, "data.augment.grayscale_p=2", "data.augment.grayscale_p"),
    (PretrainConfig, "data.augment.blur_p=-0.5", "data.augment.blur_p"),
    (PretrainConfig, "optim.lr=0", "optim.lr"),
    (PretrainConfig, "optim.weight_decay=-1", "optim.weight_decay"),
    (PretrainConfig, "optim.momentum=1", "optim.momentum"),
    (PretrainConfig, "train.epochs=0", "train.epochs"),
    (PretrainConfig, "train.num_workers=0", "train.num_workers"),
    (PretrainConfig, "train.cpus_per_worker=0", "train.cpus_per_worker"),
    (PretrainConfig, "train.checkpoint_every=0", "train.checkpoint_every"),
    (PretrainConfig, "train.num_to_keep=0", "train.num_to_keep"),
    (PretrainConfig, "train.max_failures=-2", "train.max_failures"),
    (PretrainConfig, "train.log_every=0", "train.log_every"),
    (PretrainConfig, "train.placement_strategy=RANDOM", "train.placement_strategy"),
    (PretrainConfig, "eval.knn_k=0", "eval.knn_k"),
    (PretrainConfig, "eval.max_train_samples=0", "eval.max_train_samples"),
    (PretrainConfig, "ray.num_cpus=0", "ray.num_cpus"),
    (FinetuneConfig, "inversion.alpha=-1", "inversion.alpha"),
    (FinetuneConfig, "inversion.beta=-0.1", "inversion.beta"),
    (FinetuneConfig, "fixmatch.weight=-1", "fixmatch.weight"),
    (FinetuneConfig, "fixmatch.confidence=1.2", "fixmatch.confidence"),
    (FinetuneConfig, "semisup.labels_per_class=0", "semisup.labels_per_class"),
    (FinetuneConfig, "semisup.val_per_class=0", "semisup.val_per_class"),
    (FinetuneConfig, "semisup.labelled_batch_size=0", "semisup.labelled_batch_size"),
    (FinetuneConfig, "semisup.num_classes=1", "semisup.num_classes"),
    (FinetuneConfig, "fixmatch.strong_augment.erase_p=2", "fixmatch.strong_augment.erase_p"),
    (FinetuneConfig, "fixmatch.strong_augment.shear_deg=90", "fixmatch.strong_augment.shear_deg"),
    (FinetuneConfig, "fixmatch.strong_augment.elastic_alpha=-1", "fixmatch.strong_augment.elastic_alpha"),
    (FinetuneConfig, "semisup.labelled_classes=[0, 10]", r"semisup.labelled_classes\[1\]"),  # 10 classes: ids 0..9
    (FinetuneConfig, "ivae.temperature=0", "ivae.temperature"),
    (FinetuneConfig, "ivae.latent_dim=0", "ivae.latent_dim"),
    (FinetuneConfig, "ivae.label_only=-1", "ivae.label_only"),
    (FinetuneConfig, "ivae.label_only_batch_size=0", "ivae.label_only_batch_size"),
    (FinetuneConfig, "schedule.steps=0", "schedule.steps"),
    (FinetuneConfig, "schedule.eval_every=0", "schedule.eval_every"),
    (FinetuneConfig, "schedule.warmup_steps=-1", "schedule.warmup_steps"),
    (FinetuneConfig, "schedule.head_warmup_steps=-1", "schedule.head_warmup_steps"),
    (FinetuneConfig, "schedule.backbone_lr_scale=-1", "schedule.backbone_lr_scale"),
    (FinetuneConfig, "schedule.ema_decay=1", "schedule.ema_decay"),
    (SweepConfig, "budgets=[]", "budgets"),
    (SweepConfig, "budgets=[5, 0]", r"budgets\[1\]"),
    (SweepConfig, "label_seeds=[]", "label_seeds"),
    (SweepConfig, "samples=0", "samples"),
    (SweepConfig, "alpha_min=0", "alpha_min"),
    (SweepConfig, "alpha_max=0.0001", "alpha_max"),  # below alpha_min
    (SweepConfig, "lr_min=0.1", "lr_max"),  # above lr_max
    (SweepConfig, "betas=[-1.0]", r"betas\[0\]"),
    (SweepConfig, "max_concurrent_trials=0", "max_concurrent_trials"),
    (SweepConfig, "grace_period=0", "grace_period"),
    (SweepConfig, "ivae_unlabelled_min=0", "ivae_unlabelled_min"),
    (SweepConfig, "ivae_label_only_min=500", "ivae_label_only_max"),  # above ivae_label_only_max
    (SweepConfig, "trial_max_failures=-1", "trial_max_failures"),
    (SweepConfig, "finetune.optim.lr=0", r"finetune\.optim\.lr"),  # nested sections name the full path
    (SweepConfig, "finetune.data.batch_size=-5", r"finetune\.data\.batch_size"),
    (PretrainConfig, "storage.s3_connect_timeout_s=0", r"storage\.s3_connect_timeout_s"),
    (PretrainConfig, "storage.s3_request_timeout_s=-1", r"storage\.s3_request_timeout_s"),
    (PretrainConfig, "storage.s3_max_attempts=0", r"storage\.s3_max_attempts"),
]


@pytest.mark.parametrize(("cls", "override", "key"), BAD_VALUES, ids=[b[1] for b in BAD_VALUES])
def test_every_range_rule_names_its_dotted_key(cls, override, key):
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        load_config(cls, None, [override])


def test_good_edge_values_pass():
    load_config(PretrainConfig, None, ["data.quarantine_threshold=0", "train.max_failures=-1", "data.augment.crop_scale_min=1"])
    load_config(PretrainConfig, None, ["method=mae", "model.name=vit", "model.vit.pool=cls", "model.vit.class_token=true"])
    load_config(SweepConfig, None, ["alpha_min=0.5", "alpha_max=0.5"])


def test_inverted_vae_refuses_the_classifier_losses():
    with pytest.raises(ConfigError, match=r"^method: inverted_vae trains with its own bounds"):
        load_config(FinetuneConfig, None, ["method=inverted_vae", "inversion.alpha=0.1"])
    assert reads_unlabelled(load_config(FinetuneConfig, None, ["method=inverted_vae"]))
    assert not reads_unlabelled(load_config(FinetuneConfig, None, ["method=inverted_vae", "ivae.unlabelled=0"]))


def test_a_moved_key_names_where_it_went():
    with pytest.raises(ConfigError, match=r"^config key semisup.alpha has moved to inversion.alpha$"):
        load_config(FinetuneConfig, None, ["semisup.alpha=0.1"])
    with pytest.raises(ConfigError, match=r"^config key finetune.semisup.consistency has moved to finetune.fixmatch.weight$"):
        load_config(SweepConfig, None, ["finetune.semisup.consistency=1"])


def test_exponent_without_a_dot_is_a_float():
    # YAML 1.1 (PyYAML) reads 1e-4 as a string; a float field takes it as the number it means.
    assert load_config(SweepConfig, None, ["lr_min=1e-6", "lr_max=2E-2"]).lr_min == 1e-6
    assert load_config(FinetuneConfig, None, ["optim.lr=3e-4"]).optim.lr == 3e-4
    with pytest.raises(ConfigError, match="optim.lr: expected float, got str 'fast'"):
        load_config(FinetuneConfig, None, ["optim.lr=fast"])


@pytest.mark.parametrize(
    "cls, override, message",
    [
        (QualityConfig, "max_changed_fraction=1.5", r"max_changed_fraction: must be strictly between 0 and 1"),
        (QualityConfig, "neighbours=0", r"neighbours: must be > 0"),
        (SweepConfig, "leak_check=maybe", r"leak_check: 'maybe' is not one of"),
        (RobustnessConfig, "run=", r"run: must name a fine-tuned or pretraining run"),
    ],
)
def test_quality_robustness_and_leak_check_settings_are_checked(cls, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(cls, None, [override, *(["run=runs/x"] if cls is RobustnessConfig and not override.startswith("run=") else [])])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["selection=typiclust"], r"selection_run: typiclust selects on embeddings: name the pretraining run"),
        (["selection=random", "budgets=[1, all]"], r'budgets: "all" cannot be selected \(selection: random\)'),
        (["selection=random", "finetune.semisup.labelled_ids=x.csv"], r"finetune.semisup.labelled_ids: must be empty when selection"),
        (["selection=oracle"], r"selection: 'oracle' is not one of"),
    ],
)
def test_sweep_selection_is_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(SweepConfig, None, overrides)
    assert load_config(SweepConfig, None, ["selection=random"]).selection == "random"  # random needs no embeddings


def test_fault_drills_come_from_the_environment_not_the_config(monkeypatch):
    from rayssl.train.faults import FaultPlan, from_environment

    with pytest.raises(ConfigError, match=r"^faults is not a config key: fault drills are set with the RAYSSL_FAULTS"):
        load_config(PretrainConfig, None, ["faults.crash_rank=1"])
    monkeypatch.delenv("RAYSSL_FAULTS", raising=False)
    assert from_environment() == FaultPlan()
    monkeypatch.setenv("RAYSSL_FAULTS", '{"crash_rank": 1, "crash_at_step": 4}')
    assert (from_environment().crash_rank, from_environment().crash_at_step, from_environment().nan_at_step) == (1, 4, -1)
    monkeypatch.setenv("RAYSSL_FAULTS", '{"crash_rnak": 1}')
    with pytest.raises(ConfigError, match=r"^RAYSSL_FAULTS: expected a JSON object with keys among crash_rank, "):
        from_environment()


def test_nesterov_needs_sgd_with_momentum():
    with pytest.raises(ConfigError, match=r"optim\.nesterov: Nesterov momentum needs name: sgd and momentum > 0, got name 'adamw'"):
        load_config(FinetuneConfig, None, ["optim.nesterov=true"])
    with pytest.raises(ConfigError, match=r"optim\.nesterov: .* momentum 0\.0"):
        load_config(FinetuneConfig, None, ["optim.name=sgd", "optim.momentum=0", "optim.nesterov=true"])
    assert load_config(FinetuneConfig, None, ["optim.name=sgd", "optim.nesterov=true"]).optim.nesterov
