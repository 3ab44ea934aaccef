"""`rayssl quality`: scan a shard set, run every check, write the report."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import yaml

from rayssl.config import FinetuneConfig, QualityConfig, StorageConfig, from_dict
from rayssl.data import quarantine, storage
from rayssl.data.shards import read_manifest
from rayssl.eval.classifier import predict_probabilities
from rayssl.logs import get_logger
from rayssl.quality.findings import duplicate_findings, find_issues, summary
from rayssl.quality.report import summary_table, write_report
from rayssl.quality.scan import scan
from rayssl.quality.signatures import Signatures
from rayssl.train import checkpoints
from rayssl.train.launch import init_ray


def run_quality(cfg: QualityConfig) -> dict:
    """The report as written to `<cfg.out>/quality.json`; also printed as a summary table."""
    log = get_logger()
    cfg = storage.absolute_uris(cfg, "shards", "out", "finetune_run")
    manifest = read_manifest(cfg.shards, cfg.storage)  # a missing or broken shard set fails here, before Ray starts
    finetune = _finetune_run(cfg) if cfg.finetune_run and cfg.label_issues else None
    quarantine.clear(cfg.out, cfg.storage)
    init_ray(cfg.ray)
    log.info("scanning %s (%s)", cfg.shards, ", ".join(f"{s}: {v['rows']} images" for s, v in manifest["splits"].items()))
    started = time.perf_counter()
    sigs = scan(cfg.shards, cfg.out, cfg.storage)
    scan_seconds = time.perf_counter() - started
    undecodable = sorted(quarantine.read_records(cfg.out, cfg.storage).values(), key=lambda r: (r["split"], r["sample_id"]))
    pred_probs = _probabilities(finetune, cfg, sigs) if finetune else None
    findings = find_issues(sigs, manifest.get("classes") or [], cfg, pred_probs)
    seconds = time.perf_counter() - started
    read = sum(sigs.rows_read.values())
    report: dict[str, Any] = {
        "shards": cfg.shards,
        "rows": sigs.rows_read,
        "seconds": seconds,
        "scan_seconds": scan_seconds,
        "images_per_s": read / scan_seconds if scan_seconds else 0.0,
        "undecodable": [{"split": r["split"], "sample_id": r["sample_id"], "reason": r["reason"]} for r in undecodable],
        "summary": summary(findings, len(undecodable)),
        "findings": findings,
    }
    uris = write_report(cfg.out, report, sigs, cfg.examples_per_finding, cfg.storage)
    print(
        f"\nQuality of {cfg.shards}: {read} images in {seconds:.1f} s\n{summary_table(report['summary'])}\nreport: {uris['md']}", flush=True
    )
    return report


class LeakedTestSplit(ValueError):
    """Test images duplicate images of another split; the message names them."""


def find_test_leaks(shards: str, out: str, storage_cfg: StorageConfig) -> list[dict]:
    """Duplicate pairs (exact or near) between the test split and any other, from one scan of the shards.

    The sweep's pre-flight check: the report's duplicate checks only (no outliers, no label issues);
    the pairs are also written to `<out>/leaks.json`.
    """
    quarantine.clear(out, storage_cfg)
    sigs = scan(shards, out, storage_cfg)
    leaks = [x for x in duplicate_findings(sigs, QualityConfig(shards=shards))["leaks"] if "test" in (x["a"]["split"], x["b"]["split"])]
    storage.write_bytes(storage.join(out, "leaks.json"), json.dumps(leaks, indent=1).encode(), storage_cfg)
    return leaks


def _finetune_run(cfg: QualityConfig) -> tuple[FinetuneConfig, str]:
    """(config, latest checkpoint) of the fine-tuned run whose classifier predicts labels."""
    run_cfg = from_dict(FinetuneConfig, yaml.safe_load(storage.read_bytes(storage.join(cfg.finetune_run, "config.yaml"), cfg.storage)))
    checkpoint = checkpoints.latest_checkpoint(cfg.finetune_run, cfg.storage)
    if checkpoint is None:
        raise FileNotFoundError(f"finetune_run: no checkpoint under {cfg.finetune_run}")
    return run_cfg, checkpoint


def _probabilities(finetune: tuple[FinetuneConfig, str], cfg: QualityConfig, sigs: Signatures) -> np.ndarray:
    """[N, C] probabilities aligned with `sigs` (rows the classifier could not decode stay uniform)."""
    run_cfg, checkpoint = finetune
    position = {(s, int(i)): p for p, (s, i) in enumerate(zip(sigs.split, sigs.index))}
    probs = np.full((len(sigs.index), run_cfg.semisup.num_classes), 1.0 / run_cfg.semisup.num_classes)
    for split in sorted(set(sigs.split)):
        index, split_probs = predict_probabilities(run_cfg, checkpoint, cfg.shards, split, cfg.out)
        for i, p in zip(index, split_probs):
            if (split, int(i)) in position:
                probs[position[split, int(i)]] = p
    return probs
