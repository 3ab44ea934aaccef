"""Every check of the quality report, from the scan's signatures: pure, no Ray, no I/O."""

from __future__ import annotations

import numpy as np

from rayssl.config import QualityConfig
from rayssl.quality import duplicates, stats
from rayssl.quality.labels import label_features, label_issues, out_of_sample_probabilities
from rayssl.quality.signatures import Signatures


def find_issues(sigs: Signatures, classes: list[str], cfg: QualityConfig, pred_probs: np.ndarray | None = None) -> dict:
    """The report's findings (JSON-ready; samples named by split and sample_id).

    pred_probs: optional float [N, C] out-of-sample class probabilities aligned with `sigs` (a
    fine-tuned model's); without them, label issues come from a kNN on image features (5-fold).
    """
    name = _namer(sigs)
    findings = {"images": len(sigs.sample_id), **duplicate_findings(sigs, cfg)}
    flags = stats.outliers(sigs.mean, sigs.std, sigs.entropy, sigs.height, sigs.width, sigs.mode)
    splits = sorted(set(sigs.split))
    split_mask = {s: np.array([x == s for x in sigs.split], dtype=bool) for s in splits}
    findings |= {
        "outliers": {kind: [name(int(i)) for i in np.flatnonzero(mask)] for kind, mask in flags.items()},
        "class_balance": {s: stats.class_balance(sigs.label[m], classes, cfg.min_per_class) for s, m in split_mask.items()},
        "sources": {
            s: stats.sources([sigs.sample_id[i] for i in np.flatnonzero(m)], sigs.mean[m], sigs.std[m], sigs.label[m], len(classes))
            for s, m in split_mask.items()
        },
        "label_issues": [],
        "label_issues_from": None,
    }
    if cfg.label_issues:
        findings.update(_label_issues(sigs, len(classes), pred_probs, name))
    return findings


def duplicate_findings(sigs: Signatures, cfg: QualityConfig) -> dict:
    """Exact and near-duplicate groups, the near pairs with their scores, and the leaks across splits."""
    name = _namer(sigs)
    exact = duplicates.exact_duplicate_groups(sigs.pixel_sha)
    rule = duplicates.NearDuplicateRule(cfg.neighbours, max_changed_fraction=cfg.max_changed_fraction, align_radius=cfg.align_radius)
    near_pairs = duplicates.near_duplicate_pairs(sigs.analysis, sigs.pixel_sha, rule)
    # Groups join exact and near copies (a noised copy of one of two exact twins makes one group of three);
    # a group is a near-duplicate group when its members are not all pixel-identical.
    exact_pairs = [(a, b) for g in exact for i, a in enumerate(g) for b in g[i + 1 :]]
    pairs = exact_pairs + [(i, j) for i, j, _ in near_pairs]
    groups = duplicates.duplicate_groups(len(sigs.sample_id), pairs)
    same_pixels = lambda a, b: sigs.pixel_sha[a] == sigs.pixel_sha[b]  # noqa: E731
    return {
        "exact_duplicates": [[name(m) for m in g] for g in exact],
        "near_duplicates": [[name(m) for m in g] for g in groups if len({sigs.pixel_sha[m] for m in g}) > 1],
        "near_duplicate_pairs": [{"a": name(i), "b": name(j), "changed_fraction": round(score, 4)} for i, j, score in near_pairs],
        "leaks": [
            {"a": name(a), "b": name(b), "kind": "exact" if same_pixels(a, b) else "near"}
            for a, b in duplicates.cross_split_pairs(pairs, sigs.split)
        ],
    }


def _namer(sigs: Signatures):
    """position -> {"split", "sample_id"}: how the report names a sample."""
    return lambda i: {"split": sigs.split[i], "sample_id": sigs.sample_id[i]}


def _label_issues(sigs: Signatures, num_classes: int, pred_probs: np.ndarray | None, name) -> dict:
    labelled = np.flatnonzero(sigs.label >= 0)
    if len(labelled) == 0:
        return {"label_issues_from": "no labelled images"}
    labels = sigs.label[labelled]
    if pred_probs is not None:
        probs, source = pred_probs[labelled], "the fine-tuned classifier's probabilities"
    else:
        try:
            probs = out_of_sample_probabilities(label_features(sigs.analysis[labelled]), labels, num_classes)
        except ValueError as exc:
            return {"label_issues_from": f"skipped: {exc}"}
        source = "a 10-NN classifier on PCA-32 of the blurred images, 5-fold out of sample"
    positions, suggested = label_issues(labels, probs)
    return {
        "label_issues": [{**name(int(labelled[p])), "label": int(labels[p]), "suggested": int(s)} for p, s in zip(positions, suggested)],
        "label_issues_from": source,
    }


def summary(findings: dict, quarantined: int) -> dict[str, int]:
    """Count per finding: the summary table's rows."""
    return {
        "undecodable": quarantined,
        "exact duplicate groups": len(findings["exact_duplicates"]),
        "near duplicate groups": len(findings["near_duplicates"]),
        "train/test leaks": len(findings["leaks"]),
        **{f"outliers: {kind.replace('_', ' ')}": len(v) for kind, v in findings["outliers"].items()},
        "classes below min": sum(len(b["classes_below_min"]) for b in findings["class_balance"].values()),
        "flagged sources": sum(1 for rows in findings["sources"].values() for r in rows if r["flagged"]),
        "likely label issues": len(findings["label_issues"]),
    }
