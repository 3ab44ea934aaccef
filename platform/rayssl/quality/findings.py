"""Every check of the quality report, from the scan's signatures: pure, no Ray, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rayssl.config import QualityConfig
from rayssl.quality import duplicates, photos, stats
from rayssl.quality.labels import (
    FEATURE_PROBE,
    PROBE_FOLDS,
    feature_probe,
    label_features,
    label_issues,
    out_of_sample_probabilities,
    weak_probe_reason,
)
from rayssl.quality.signatures import Signatures


def find_issues(
    sigs: Signatures,
    classes: list[str],
    cfg: QualityConfig,
    pred_probs: np.ndarray | None = None,
    features: np.ndarray | None = None,
    calibration: photos.Calibration | None = None,
) -> dict:
    """The report's findings (JSON-ready; samples named by split and sample_id).

    pred_probs: optional float [N, C] class probabilities aligned with `sigs` (a fine-tuned run's
    classifier). features: optional float32 [N, D] L2-normalised embeddings aligned with `sigs` (a
    run's backbone, `features_from`), NaN rows for images the embedder could not decode. Label issues
    come from pred_probs, else a cross-validated probe on the features, else a kNN on the blurred
    analysis images; whichever it is, none are listed when its accuracy is too low to judge labels.
    calibration: the photo near-duplicate rule's (`quality.photos.calibrate`); None for the digits rule.
    """
    name = _namer(sigs)
    findings = {"images": len(sigs.sample_id), **duplicate_findings(sigs, cfg, features, calibration)}
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
        "label_probe_accuracy": None,
        "label_issues_shown": 0,
    }
    if cfg.label_issues:
        findings.update(_label_issues(sigs, len(classes), cfg, name, pred_probs, features))
    return findings


def duplicate_findings(
    sigs: Signatures, cfg: QualityConfig, features: np.ndarray | None = None, calibration: photos.Calibration | None = None
) -> dict:
    """Exact and near-duplicate groups, the near pairs with their scores, and the leaks across splits.

    With a calibration the photo rule decides (features, when given, add candidates); else the digits rule.
    """
    name = _namer(sigs)
    exact = duplicates.exact_duplicate_groups(sigs.pixel_sha)
    if calibration is None:
        rule = duplicates.NearDuplicateRule(cfg.neighbours, max_changed_fraction=cfg.max_changed_fraction, align_radius=cfg.align_radius)
        near_pairs = duplicates.near_duplicate_pairs(sigs.analysis, sigs.pixel_sha, rule)
        score_name, rule_text = "changed_fraction", f"digits: at most {cfg.max_changed_fraction:.0%} of structure pixels changed"
    else:
        near_pairs, threshold = photos.near_duplicate_pairs(
            sigs.thumb, sigs.pixel_sha, calibration, cfg.neighbours, cfg.max_near_duplicate_fraction, features, cfg.registered_per_image
        )
        score_name, rule_text = "similarity", _photo_rule(calibration, threshold, cfg, features is not None)
    # Groups join exact and near copies (a noised copy of one of two exact twins makes one group of three);
    # a group is a near-duplicate group when its members are not all pixel-identical.
    exact_pairs = [(a, b) for g in exact for i, a in enumerate(g) for b in g[i + 1 :]]
    pairs = exact_pairs + [(i, j) for i, j, _ in near_pairs]
    groups = duplicates.duplicate_groups(len(sigs.sample_id), pairs)
    same_pixels = lambda a, b: sigs.pixel_sha[a] == sigs.pixel_sha[b]  # noqa: E731
    return {
        "exact_duplicates": [[name(m) for m in g] for g in exact],
        "near_duplicates": [[name(m) for m in g] for g in groups if len({sigs.pixel_sha[m] for m in g}) > 1],
        "near_duplicate_pairs": [{"a": name(i), "b": name(j), score_name: round(score, 4)} for i, j, score in near_pairs],
        "near_duplicate_rule": rule_text,
        "near_duplicate_calibration": None if calibration is None else asdict(calibration),
        "leaks": [
            {"a": name(a), "b": name(b), "kind": "exact" if same_pixels(a, b) else "near"}
            for a, b in duplicates.cross_split_pairs(pairs, sigs.split)
        ],
    }


def _photo_rule(calibration: photos.Calibration, threshold: float, cfg: QualityConfig, with_features: bool) -> str:
    """One line: the photo rule's threshold, where it came from, and what it costs on the planted edits."""
    raised = (
        f", raised from {calibration.threshold:.3f} so that at most {cfg.max_near_duplicate_fraction:.0%} of the images are flagged"
        if threshold > calibration.threshold
        else ""
    )
    candidates = "thumbnail index + the run's features" if with_features else "thumbnail index"
    return (
        f"photos: registered band similarity at 32 px >= {threshold:.3f} (per edit, the {calibration.quantile:.0%} quantile of "
        f"{calibration.planted} edits planted in this corpus, the lowest over edits{raised}; candidates from the {candidates})"
    )


def _namer(sigs: Signatures):
    """position -> {"split", "sample_id"}: how the report names a sample."""
    return lambda i: {"split": sigs.split[i], "sample_id": sigs.sample_id[i]}


@dataclass(frozen=True)
class _LabelSource:
    """Where the label check's probabilities come from, and how far to trust them."""

    positions: np.ndarray  # int64 [M]: the labelled samples judged (positions in the signatures)
    probs: np.ndarray  # float [M, C]
    accuracy: float  # the accuracy the gate judges (out of sample where the source allows)
    text: str  # "<source> (<its accuracy, and on what>)", the report's label_issues_from


def _label_issues(
    sigs: Signatures, num_classes: int, cfg: QualityConfig, name, pred_probs: np.ndarray | None, features: np.ndarray | None
) -> dict:
    """The label_issues* fields: ranked issues, or none and the plain reason why (too weak a classifier)."""
    labelled = np.flatnonzero(sigs.label >= 0)
    if len(labelled) == 0:
        return {"label_issues_from": "no labelled images"}
    num_classes = max(num_classes, int(sigs.label.max()) + 1)  # shards without class names
    try:
        source = _label_source(sigs, labelled, num_classes, pred_probs, features)
    except ValueError as exc:
        return {"label_issues_from": f"skipped: {exc}"}
    labels = sigs.label[source.positions]
    head = {"label_probe_accuracy": round(source.accuracy, 4), "label_issues_from": source.text}
    reason = weak_probe_reason(source.accuracy, labels, num_classes, cfg.min_probe_accuracy, "its")
    if reason:  # a weak classifier's disagreements are its own errors, not the labels': list none
        return head | {"label_issues_from": f"{source.text}; label issues not listed: {reason}"}
    ranked, suggested, quality = label_issues(labels, source.probs)
    issues = [
        {**name(int(source.positions[p])), "label": int(labels[p]), "suggested": int(g), "label_quality": round(float(q), 4)}
        for p, g, q in zip(ranked, suggested, quality)
    ]
    return head | {"label_issues": issues, "label_issues_shown": min(len(issues), cfg.label_issues_shown)}


def _label_source(
    sigs: Signatures, labelled: np.ndarray, num_classes: int, pred_probs: np.ndarray | None, features: np.ndarray | None
) -> _LabelSource:
    """Out-of-sample probabilities for the labelled samples: the fine-tuned classifier's, else a probe
    on the embeddings, else a kNN on the blurred analysis images. Raises ValueError when too few labels."""
    if pred_probs is not None:
        return _classifier_source(sigs, labelled, pred_probs[labelled])
    if features is not None:
        labelled = labelled[np.isfinite(features[labelled]).all(axis=1)]  # NaN rows: the embedder could not decode them
        if len(labelled) == 0:
            raise ValueError("the run's backbone embedded none of the labelled images")
        labels = sigs.label[labelled]
        probs = out_of_sample_probabilities(features[labelled], labels, num_classes, estimator=feature_probe())
        what = f"{FEATURE_PROBE}, {PROBE_FOLDS}-fold out of sample"
    else:
        labels = sigs.label[labelled]
        probs = out_of_sample_probabilities(label_features(sigs.analysis[labelled]), labels, num_classes, folds=PROBE_FOLDS)
        what = f"a 10-NN classifier on PCA-32 of the blurred images, {PROBE_FOLDS}-fold out of sample"
    accuracy = float((probs.argmax(axis=1) == labels).mean())
    return _LabelSource(labelled, probs, accuracy, f"{what} (accuracy {100 * accuracy:.1f}% on {len(labels)} labelled images)")


def _classifier_source(sigs: Signatures, labelled: np.ndarray, probs: np.ndarray) -> _LabelSource:
    """The fine-tuned classifier: its accuracy on the test split is out of sample (it never trains on
    test images), on the other splits it is not; the gate judges the test figure when there is one."""
    correct = probs.argmax(axis=1) == sigs.label[labelled]
    test = np.array([sigs.split[i] == "test" for i in labelled], dtype=bool)
    overall = f"{100 * correct.mean():.1f}% on all {len(labelled)} labelled images, not out of sample for those it was trained on"
    if test.any():
        accuracy = float(correct[test].mean())
        text = f"the fine-tuned classifier's probabilities (accuracy {100 * accuracy:.1f}% on the {int(test.sum())} labelled test images, out of sample; {overall})"
    else:
        accuracy = float(correct.mean())
        text = f"the fine-tuned classifier's probabilities (accuracy {overall})"
    return _LabelSource(labelled, probs, accuracy, text)


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
