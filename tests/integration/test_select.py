"""`rayssl select` on the tiny corpus of a tiny pretraining run: picks, contact sheet, second round."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from rayssl.cli import main
from rayssl.inference.embed import embed_run

pytestmark = pytest.mark.integration


def read_picks(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_select_picks_unlabelled_images_and_a_second_round_avoids_the_first(nat_run, tmp_path, capsys):
    cfg, outcome = nat_run
    shards = Path(cfg.data.shards)
    train = pq.read_table(shards / "train", columns=["sample_id", "label"]).to_pylist()
    classes = json.loads((shards / "manifest.json").read_text())["classes"]
    assert main(["select", outcome.run_dir, "--budget", "3", "--strategy", "sideways", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--strategy: 'sideways' is not one of random, kcenter, typiclust, probcover" in capsys.readouterr().err

    first = tmp_path / "round1.csv"
    assert main(["select", outcome.run_dir, "--budget", "6", "--out", str(first)]) == 0
    picks = read_picks(first)
    ids = [p["sample_id"] for p in picks]
    assert len(set(ids)) == 6 and set(ids) <= {r["sample_id"] for r in train}
    assert [int(p["rank"]) for p in picks] == list(range(1, 7)) and {p["strategy"] for p in picks} == {"typiclust"}
    assert "picked 6 of 48 train images by typiclust (0 already labelled" in capsys.readouterr().out
    with Image.open(tmp_path / "round1.png") as png:
        assert png.size[0] > 200

    # Round 2: the annotators labelled round 1; from `rayssl embed` output this time, by ProbCover.
    label_of = {r["sample_id"]: classes[r["label"]] for r in train}
    (tmp_path / "labels.csv").write_text("sample_id,label\n" + "".join(f"{i},{label_of[i]}\n" for i in ids))
    embed_run(outcome.run_dir, str(shards), str(tmp_path / "emb"), split="train", actors=1, show_progress=False)
    second = tmp_path / "round2.csv"
    args = ["--labels", str(tmp_path / "labels.csv"), "--embeddings", str(tmp_path / "emb"), "--strategy", "probcover"]
    assert main(["select", outcome.run_dir, "--budget", "5", *args, "--out", str(second)]) == 0
    again = [p["sample_id"] for p in read_picks(second)]
    assert len(set(again)) == 5 and not set(again) & set(ids)
    assert "(6 already labelled" in capsys.readouterr().out
