"""The inverted VAE on a local Ray: labelled images, the unlabelled stream and label-only records
read with Ray Data; a bad label-only table fails before any worker starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_sweep import FINETUNE

from rayssl.config import FinetuneConfig, load_config
from rayssl.data.label_only import LabelOnlyError
from rayssl.eval.classifier import score_on_test_split
from rayssl.train.launch import run_finetune

pytestmark = pytest.mark.integration

IVAE = ("method=inverted_vae", "ivae.latent_dim=2", "ivae.hidden=16", "ivae.label_only_batch_size=8", "optim.lr=0.01")


def ivae_config(shards: str, runs: Path, label_only: Path, *overrides: str) -> FinetuneConfig:
    return load_config(
        FinetuneConfig,
        None,
        [
            f"data.shards={shards}",
            f"run.storage_path={runs}",
            f"ivae.label_only_data={label_only}",
            *IVAE,
            *(o.removeprefix("finetune.") for o in FINETUNE),
            *overrides,
        ],
    )


def test_inverted_vae_learns_from_all_three_kinds_of_data(ray_local, local_shards, tmp_path):
    label_only = tmp_path / "outcomes.csv"
    label_only.write_text("label\n" + "\n".join(str(int(i % 3 == 2)) for i in range(30)) + "\n")  # 20 of class 0, 10 of 1
    cfg = ivae_config(local_shards, tmp_path / "runs", label_only, "ivae.class_prior=label_only")
    outcome = run_finetune(cfg)
    m = outcome.metrics
    assert m["global_step"] == 40 and m["label_only_records"] == 30
    assert m["labelled_bound"] > 0 and m["unlabelled_bound"] > 0 and "reverse_bound" in m  # every bound was trained
    # The class prior from the records (add-one smoothed) is in the run's config, which scoring rebuilds the network from.
    saved = load_config(FinetuneConfig, str(Path(outcome.run_dir) / "config.yaml"))
    assert saved.ivae.class_prior_values == pytest.approx([21 / 32, 11 / 32]) and len(saved.ivae.labelled_frequencies) == 2
    # bright-left vs bright-right blobs: the VAE's classifier q(y|x) separates them (chance is 50%)
    assert m["val_acc"] >= 0.85 and score_on_test_split(cfg, outcome.checkpoint, outcome.run_dir) >= 0.85


def test_unknown_class_id_in_label_only_data_fails_before_training(ray_local, local_shards, tmp_path):
    label_only = tmp_path / "outcomes.csv"
    label_only.write_text("label\n0\n1\n7\n1\n")
    with pytest.raises(LabelOnlyError, match=r"outcomes.csv: row 2: class id 7 is not in \[0, 2\)"):
        run_finetune(ivae_config(local_shards, tmp_path / "runs", label_only, "run.name=bad"))
    assert not list((tmp_path / "runs" / "bad").glob("checkpoint_*"))  # no worker ever trained
