"""The sweep's rows -> each trial's fine-tuning config (no Ray started)."""

from __future__ import annotations

import pytest

from rayssl.config import ConfigError, SweepConfig, load_config
from rayssl.methods.registry import FINETUNING
from rayssl.tune.sweep import sweep_rows, trial_config, variant_names

SUPERVISED, FIXMATCH, INVERTED_VAE = "supervised only", "+ FixMatch", "inverted VAE"


def trial(cfg: SweepConfig, variant: str):
    key = {row.label: row.key for row in sweep_rows(cfg)}[variant]
    return trial_config(
        cfg,
        {
            "variant": key,
            "budget": 5,
            "label_seed": 1,
            "alpha": 0.02,
            "beta": 0.3,
            "lr": 0.004,
            "ivae_unlabelled": 0.5,
            "ivae_label_only": 2.0,
        },
        "t",
    )


def test_inverted_vae_row_runs_the_inverted_vae_with_tunes_weights():
    cfg = load_config(SweepConfig, None, ["inverted_vae=true", "fixmatch=true", "finetune.ivae.label_only_data=/data/y.parquet"])
    assert variant_names(cfg) == [SUPERVISED, "+ inversion loss", FIXMATCH, INVERTED_VAE]
    ivae = trial(cfg, INVERTED_VAE)
    assert ivae.method == "inverted_vae" and (ivae.ivae.unlabelled, ivae.ivae.label_only) == (0.5, 2.0)
    assert (ivae.inversion.alpha, ivae.inversion.beta, ivae.fixmatch.weight) == (0.0, 0.0, 0.0)
    assert ivae.ivae.label_only_data == "/data/y.parquet" and ivae.semisup.labels_per_class == 5 and ivae.optim.lr == 0.004
    inversion = trial(cfg, "+ inversion loss")
    assert inversion.method == "classifier" and inversion.inversion.alpha == 0.02 and inversion.ivae.label_only == 50.0  # untouched default


def test_variants_restricts_the_rows_and_names_a_misspelt_one():
    cfg = load_config(
        SweepConfig, None, ["fixmatch=true", "pretrained.MAE=runs/mae", "variants=['MAE-pretrained + inversion', '+ FixMatch']"]
    )
    assert variant_names(cfg) == [FIXMATCH, "MAE-pretrained + inversion"]  # table order, not the list's
    wrong = load_config(SweepConfig, None, ["variants=['+ fixmatch']"])
    with pytest.raises(ConfigError, match=r"variants: \['\+ fixmatch'\] is not among this sweep's rows"):
        variant_names(wrong)


def test_every_row_comes_from_a_registered_method_and_pretrained_rows_start_from_their_run():
    cfg = load_config(
        SweepConfig, None, ["fixmatch=true", "inverted_vae=true", "pretrained.NAT=/runs/nat", "storage_path=/sweeps", "name=s"]
    )
    rows = sweep_rows(cfg)
    assert [r.key for r in rows] == ["supervised", "inversion", "fixmatch", "inverted_vae", "pretrained:NAT"]
    assert {r.label for objective in FINETUNING.values() for r in objective.sweep_rows(cfg)} == {r.label for r in rows}
    nat = trial(cfg, "NAT-pretrained + inversion")
    assert nat.init == "/runs/nat" and nat.inversion.alpha == 0.02 and nat.inversion.beta == 0.3
    assert trial(cfg, SUPERVISED).init is None and trial(cfg, SUPERVISED).inversion.alpha == 0.0
    fixmatch = trial(cfg, FIXMATCH)
    assert fixmatch.fixmatch.weight == 1.0 and fixmatch.inversion.alpha == 0.0  # the base's weight is 0: FixMatch's row uses 1
    assert fixmatch.run.storage_path == "/sweeps/s/trials" and fixmatch.run.name == "t"


def test_rows_from_scratch_start_from_the_base_configs_init_and_pretrained_rows_from_their_run():
    cfg = load_config(SweepConfig, None, ["fixmatch=true", "pretrained.NAT=/runs/nat", "finetune.init=/runs/simclr"])
    assert trial(cfg, SUPERVISED).init == "/runs/simclr" and trial(cfg, FIXMATCH).init == "/runs/simclr"
    assert trial(cfg, "NAT-pretrained + inversion").init == "/runs/nat"


def test_the_image_kind_sets_every_trials_views_scaled_to_the_image():
    photos = load_config(SweepConfig, None, ["image_kind=photos", "fixmatch=true", "finetune.data.image_size=32"])
    fixmatch = trial(photos, FIXMATCH)
    assert (fixmatch.data.augment.translate_px, fixmatch.data.augment.horizontal_flip) == (4, True)
    strong = fixmatch.fixmatch.strong_augment
    assert (strong.randaugment_ops, strong.cutout, strong.translate_px, strong.rotate_deg) == (2, 0.5, 4, 0.0)
    symbols = trial(load_config(SweepConfig, None, ["image_kind=symbols", "finetune.data.image_size=28"]), SUPERVISED)
    assert (symbols.data.augment.translate_px, symbols.data.augment.horizontal_flip, symbols.fixmatch.strong_augment.rotate_deg) == (
        2,
        False,
        20.0,
    )
    # without a kind, the views are the config's own
    assert trial(load_config(SweepConfig, None, ["finetune.data.augment.translate_px=3"]), SUPERVISED).data.augment.translate_px == 3
    with pytest.raises(ConfigError, match="image_kind: photos sets finetune.data.augment"):
        load_config(SweepConfig, None, ["image_kind=photos", "finetune.data.augment.translate_px=3"])
    with pytest.raises(ConfigError, match="remove those and finetune.semisup.labelled_augment"):
        load_config(SweepConfig, None, ["image_kind=symbols", "finetune.semisup.labelled_augment.rotate_deg=15"])
