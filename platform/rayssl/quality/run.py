"""`rayssl quality`: scan a shard set, run every check, write the report."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import numpy as np
import yaml

from rayssl.config import FinetuneConfig, QualityConfig, StorageConfig, from_dict
from rayssl.data import quarantine, storage
from rayssl.data.shards import ShardError, read_manifest
from rayssl.eval.classifier import predict_probabilities
from rayssl.eval.features import embed_split
from rayssl.inference.runs import RunModel, load_backbone, read_run
from rayssl.logs import get_logger
from rayssl.quality import photos
from rayssl.quality.examples import read_examples
from rayssl.quality.findings import duplicate_findings, find_issues, summary
from rayssl.quality.report import sheet_rows, summary_table, write_report
from rayssl.quality.scan import scan
from rayssl.quality.signatures import Signatures
from rayssl.train import checkpoints
from rayssl.train.launch import init_ray


def run_quality(cfg: QualityConfig) -> dict:
    """The report as written to `<cfg.out>/quality.json`; also printed as a summary table."""
    log = get_logger()
    cfg = storage.absolute_uris(cfg, "shards", "out", "finetune_run", "features_from")
    manifest = read_manifest(cfg.shards, cfg.storage)  # a missing or broken shard set fails here, before Ray starts
    finetune = _finetune_run(cfg) if cfg.finetune_run and cfg.label_issues else None
    embedder = features_run(cfg.features_from, cfg.storage) if cfg.features_from else None  # so does a wrong run
    quarantine.clear(cfg.out, cfg.storage)
    init_ray(cfg.ray)
    log.info("scanning %s (%s)", cfg.shards, ", ".join(f"{s}: {v['rows']} images" for s, v in manifest["splits"].items()))
    started = time.perf_counter()
    sigs = scan(cfg.shards, cfg.out, cfg.storage)
    scan_seconds = time.perf_counter() - started
    undecodable = sorted(quarantine.read_records(cfg.out, cfg.storage).values(), key=lambda r: (r["split"], r["sample_id"]))
    pred_probs = _probabilities(finetune, cfg, sigs) if finetune else None
    embed_started = time.perf_counter()
    features = embedded_features(embedder, cfg, sigs) if embedder else None
    embed_seconds = time.perf_counter() - embed_started
    calibration = photo_calibration(cfg, sigs)
    findings = find_issues(sigs, manifest.get("classes") or [], cfg, pred_probs, features=features, calibration=calibration)
    seconds = time.perf_counter() - started
    read = sum(sigs.rows_read.values())
    report: dict[str, Any] = {
        "shards": cfg.shards,
        "rows": sigs.rows_read,
        "seconds": seconds,
        "scan_seconds": scan_seconds,
        "images_per_s": read / scan_seconds if scan_seconds else 0.0,
        "features_from": cfg.features_from or None,
        "embed_seconds": embed_seconds if embedder else None,
        "undecodable": [{"split": r["split"], "sample_id": r["sample_id"], "reason": r["reason"]} for r in undecodable],
        "summary": summary(findings, len(undecodable)),
        "findings": findings,
    }
    uris = write_report(cfg.out, report, sigs, cfg.examples_per_finding, cfg.storage, _sheet_images(report, sigs, cfg))
    # "0 label issues" alone would read as a clean corpus; the line says when none could be judged.
    labels_line = f"label issues from {findings['label_issues_from']}\n" if findings["label_issues_from"] else ""
    print(
        f"\nQuality of {cfg.shards}: {read} images in {seconds:.1f} s\n{summary_table(report['summary'])}\n{labels_line}report: {uris['md']}",
        flush=True,
    )
    return report


def photo_calibration(cfg: QualityConfig, sigs: Signatures) -> photos.Calibration | None:
    """The photo near-duplicate rule's calibration, from edits planted on `cfg.calibration_images` images
    read back from the shards; None when the digits rule applies (`near_duplicates`, or "auto" and most
    images grey)."""
    colour = np.any(sigs.thumb[:, 0] != sigs.thumb[:, 1], axis=(1, 2)) | np.any(sigs.thumb[:, 1] != sigs.thumb[:, 2], axis=(1, 2))
    if cfg.near_duplicates == "digits" or (cfg.near_duplicates == "auto" and colour.mean() <= 0.5) or len(sigs.index) < 2:
        return None
    # Drawn from the images in (split, index) order, not in the order Ray Data delivered them: the same
    # corpus gets the same sample, and so the same threshold, on every run.
    stable = np.lexsort((sigs.index, np.asarray(sigs.split)))
    rows = np.sort(stable[np.random.default_rng(0).choice(len(stable), min(len(stable), cfg.calibration_images), replace=False)])
    images = read_examples(cfg.shards, [(sigs.split[r], int(sigs.index[r])) for r in rows], cfg.storage)
    rgb = [np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x for x in images.values()]
    return photos.calibrate(rgb, seed=0, quantile=cfg.calibration_quantile)


class LeakedTestSplit(ValueError):
    """Test images duplicate images of another split; the message names them."""


def find_test_leaks(shards: str, out: str, storage_cfg: StorageConfig) -> list[dict]:
    """Duplicate pairs (exact or near) between the test split and any other, from one scan of the shards.

    The sweep's pre-flight check: the report's duplicate checks only (no outliers, no label issues);
    the pairs are also written to `<out>/leaks.json`.
    """
    quarantine.clear(out, storage_cfg)
    sigs = scan(shards, out, storage_cfg)
    cfg = QualityConfig(shards=shards, storage=storage_cfg)
    found = duplicate_findings(sigs, cfg, calibration=photo_calibration(cfg, sigs))
    leaks = [x for x in found["leaks"] if "test" in (x["a"]["split"], x["b"]["split"])]
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
    per_split = {split: predict_probabilities(run_cfg, checkpoint, cfg.shards, split, cfg.out) for split in sorted(set(sigs.split))}
    return aligned_rows(sigs, per_split, fill=1.0 / run_cfg.semisup.num_classes).astype(np.float64)


def features_run(run_dir: str, storage_cfg: StorageConfig) -> RunModel:
    """The run whose backbone embeds the images (`features_from`), read before Ray starts: a missing
    directory, config.yaml or checkpoint fails here in one line naming the path."""
    try:
        return read_run(run_dir, storage_cfg)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"features_from: {exc}") from None


def embedded_features(run: RunModel, cfg: QualityConfig, sigs: Signatures) -> np.ndarray:
    """float32 [N, D] L2-normalised embeddings aligned with `sigs` (by split and index).

    Every split of cfg.shards goes through the run's backbone as its own training decoded them (image
    size, channels). A row the scan decoded but the embedder did not stays NaN: the label probe
    leaves it out, and so must any other user. The embedder's quarantine goes to <out>/features, not
    into the report's own list of undecodable images.
    """
    log = get_logger()
    backbone = load_backbone(run)
    data = dataclasses.replace(run.cfg.data, shards=cfg.shards)  # the run's view of images, on these shards
    quarantine_dir = storage.join(cfg.out, "features")
    quarantine.clear(quarantine_dir, cfg.storage)
    per_split = {}
    for split in sorted(set(sigs.split)):
        started = time.perf_counter()
        per_split[split] = embed_split(backbone, data, split, quarantine_dir, cfg.storage)
        log.info("embedded %d %s images with %s in %.1f s", len(per_split[split][0]), split, run.run_dir, time.perf_counter() - started)
    return l2_normalised(aligned_rows(sigs, per_split))


def aligned_rows(sigs: Signatures, per_split: dict[str, tuple[np.ndarray, np.ndarray]], fill: float = np.nan) -> np.ndarray:
    """[N, D]: row p holds the values of (sigs.split[p], sigs.index[p]), or `fill` where absent.

    per_split: {split: (index int64 [M], values float [M, D])}, e.g. eval.features.embed_split's output;
    the result has their dtype (float32 at least). Rows the signatures do not hold (images the scan
    could not decode) are dropped.
    """
    width = next((v.shape[1] for _, v in per_split.values()), 0)
    dtype = np.result_type(np.float32, *(v.dtype for _, v in per_split.values()))
    out = np.full((len(sigs.index), width), fill, dtype=dtype)
    split = np.asarray(sigs.split)
    for name, (index, values) in per_split.items():
        positions = np.flatnonzero(split == name)
        found = dict(zip(np.asarray(index).tolist(), range(len(index))))
        rows = np.array([found.get(int(i), -1) for i in sigs.index[positions]], dtype=np.int64)
        out[positions[rows >= 0]] = values[rows[rows >= 0]]
    return out


def l2_normalised(features: np.ndarray) -> np.ndarray:
    """float32 [N, D] rows scaled to unit length (NaN rows stay NaN; all-zero rows stay zero)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _sheet_images(report: dict, sigs: Signatures, cfg: QualityConfig) -> dict[tuple[str, str], np.ndarray]:
    """{(split, sample_id): uint8 [H, W, C]} for the contact sheet's examples only, read back from the
    shards in colour (the scan kept grey 28 x 28 copies). Empty when they cannot be read: the sheet
    then falls back to the grey copies rather than failing the report."""
    members = [m for _, row in sheet_rows(report, cfg.examples_per_finding) for m in row]
    position = {(s, i): p for p, (s, i) in enumerate(zip(sigs.split, sigs.sample_id))}
    wanted = {(m["split"], int(sigs.index[position[m["split"], m["sample_id"]]])): (m["split"], m["sample_id"]) for m in members}
    try:
        found = read_examples(cfg.shards, list(wanted), cfg.storage)
    except (OSError, ShardError) as exc:
        get_logger().warning("contact sheet: drawing grey thumbnails, the shards could not be read back: %s", exc)
        return {}
    return {wanted[key]: pixels for key, pixels in found.items()}
