"""The sweep's rows -> each trial's fine-tuning config (no Ray started)."""

from __future__ import annotations

import pytest

from rayssl.config import ConfigError, SweepConfig, load_config, to_dict
from rayssl.tune.sweep import FIXMATCH, INVERTED_VAE, SUPERVISED, trial_config, variant_names


def trial(cfg: SweepConfig, variant: str):
    return trial_config({"base": to_dict(cfg.finetune), "variant": variant, "inits": {}, "trial_name": "t", "trials_dir": "/tmp/trials",
                         "budget": 5, "label_seed": 1, "alpha": 0.02, "beta": 0.3, "lr": 0.004, "ivae_unlabelled": 0.5, "ivae_label_only": 2.0})


def test_inverted_vae_row_runs_the_inverted_vae_with_tunes_weights():
    cfg = load_config(SweepConfig, None, ["inverted_vae=true", "fixmatch=true", "finetune.ivae.label_only_data=/data/y.parquet"])
    assert variant_names(cfg) == [SUPERVISED, "+ inversion loss", FIXMATCH, INVERTED_VAE]
    ivae = trial(cfg, INVERTED_VAE)
    assert ivae.method == "inverted_vae" and (ivae.ivae.unlabelled, ivae.ivae.label_only) == (0.5, 2.0)
    assert (ivae.semisup.alpha, ivae.semisup.beta, ivae.semisup.consistency) == (0.0, 0.0, 0.0)
    assert ivae.ivae.label_only_data == "/data/y.parquet" and ivae.semisup.labels_per_class == 5 and ivae.optim.lr == 0.004
    inversion = trial(cfg, "+ inversion loss")
    assert inversion.method == "classifier" and inversion.semisup.alpha == 0.02 and inversion.ivae.label_only == 50.0  # untouched default


def test_variants_restricts_the_rows_and_names_a_misspelt_one():
    cfg = load_config(SweepConfig, None, ["fixmatch=true", "pretrained.MAE=runs/mae", "variants=['MAE-pretrained + inversion', '+ FixMatch']"])
    assert variant_names(cfg) == [FIXMATCH, "MAE-pretrained + inversion"]  # table order, not the list's
    wrong = load_config(SweepConfig, None, ["variants=['+ fixmatch']"])
    with pytest.raises(ConfigError, match=r"variants: \['\+ fixmatch'\] is not among this sweep's rows"):
        variant_names(wrong)
