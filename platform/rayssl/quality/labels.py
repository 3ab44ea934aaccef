"""Likely label errors, through cleanlab, from out-of-sample predicted probabilities.

Confident learning is only as good as the classifier behind the probabilities: on CIFAR-10 a kNN on
blurred grey thumbnails (about chance) flagged 43% of the corpus. So every source of probabilities
states its accuracy, and `weak_probe_reason` refuses to list issues when that accuracy is too low to
judge a label.
"""

from __future__ import annotations

import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from scipy import ndimage
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

PROBE_FOLDS = 5  # stratified folds of every out-of-sample probe
# The probe on a run's embeddings (features_from). On all 60,000 CIFAR-10 images embedded by
# configs/simclr_cifar10_small_cnn.yaml (2 epochs, D = 128), 5-fold out of sample on a shared 2-core
# CPU: 20-NN distance-weighted 51.0% in 39 s (Euclidean on the unit vectors; this cosine-weighted
# probe: 51.7% in 62 s), 10-NN 49.3%, 50-NN 50.0%, standardised logistic regression 50.6% in 291 s.
# As accurate and several times faster: the kNN. (At ~51%, the gate lists no label issues there.)
PROBE_NEIGHBOURS = 20
FEATURE_PROBE = f"a {PROBE_NEIGHBOURS}-NN cosine classifier on the run's embeddings"


def feature_probe() -> BaseEstimator:
    """The classifier fit on L2-normalised embeddings [N, D] to judge their labels: distance-weighted
    kNN, so that its probabilities are not multiples of 1/k (cleanlab ranks by them)."""
    return KNeighborsClassifier(n_neighbors=PROBE_NEIGHBOURS, metric="cosine", weights="distance", algorithm="brute")


def out_of_sample_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    neighbours: int = 10,
    folds: int = 5,
    seed: int = 0,
    estimator: BaseEstimator | None = None,
) -> np.ndarray:
    """[N, C] class probabilities of each sample from a classifier that never saw it (stratified k-fold).

    features: float32 [N, D]; labels: int64 [N] in 0..C-1. The classifier is `estimator`, by default
    a `neighbours`-NN (the thumbnail path, when no fine-tuned run or embeddings are given).
    """
    counts = np.bincount(labels, minlength=num_classes)
    present = counts > 0
    if counts[present].min() < folds:
        raise ValueError(f"label issues need at least {folds} labelled images per class present, the smallest has {counts[present].min()}")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    model = estimator if estimator is not None else KNeighborsClassifier(n_neighbors=neighbours)
    probs = cross_val_predict(model, features, labels, cv=splitter, method="predict_proba")
    full = np.zeros((len(labels), num_classes))
    full[:, np.flatnonzero(present)] = probs  # predict_proba's columns are the classes seen, in order
    return full


def label_issues(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions of likely mislabelled samples, most suspicious first; the model's suggested label for
    each; each one's label quality in [0, 1], ascending).

    labels: int64 [N]; pred_probs: float [N, C], out of sample (cleanlab's confident learning needs that).
    Which samples are issues is confident learning's (prune by noise rate); their order is cleanlab's
    label-quality score (self-confidence: the probability of the given label), lowest first. A kNN's
    probabilities tie often (no neighbour has the label: 0), so ties go to cleanlab's normalised
    margin (how far another class leads), then to corpus order: the same report every run.
    """
    flagged = np.flatnonzero(find_label_issues(labels, pred_probs))
    quality = get_label_quality_scores(labels, pred_probs, method="self_confidence")[flagged]
    margin = get_label_quality_scores(labels, pred_probs, method="normalized_margin")[flagged]
    order = np.lexsort((flagged, margin, quality))  # the last key sorts first
    positions = flagged[order].astype(np.int64)
    return positions, pred_probs[positions].argmax(axis=1), quality[order]


def weak_probe_reason(accuracy: float, labels: np.ndarray, num_classes: int, min_accuracy: float, who: str = "the probe's") -> str | None:
    """Why a classifier of this accuracy cannot judge these labels, or None when it can.

    labels: int64 [N] (the labelled samples it was scored on). Two bars: `min_accuracy`, and "clearly
    above chance": it must make at most half the errors of always answering the most common class
    (whose accuracy is at least 1/num_classes). On a 95:5 corpus 80% is worse than that guess.
    """
    majority = float(np.bincount(labels, minlength=num_classes).max() / max(len(labels), 1))
    chance_bar = majority + (1 - majority) / 2
    if accuracy < min_accuracy:
        return f"{who} accuracy {100 * accuracy:.1f}% is below {100 * min_accuracy:.0f}%, too weak to judge labels"
    if accuracy < chance_bar:
        return (
            f"{who} accuracy {100 * accuracy:.1f}% is not clearly above chance (1/{num_classes} classes = {100 / num_classes:.1f}%, "
            f"the most common class {100 * majority:.1f}%; it needs {100 * chance_bar:.1f}%, half the errors of that guess), "
            "too weak to judge labels"
        )
    return None


def label_features(analysis: np.ndarray, dims: int = 32, seed: int = 0) -> np.ndarray:
    """[N, S, S] uint8 analysis images -> [N, dims] float32: PCA of the Gaussian-blurred (sigma 1 px) images.

    What the kNN label check classifies when no fine-tuned model is given. On a 5,300-image MNIST
    slice, blur + PCA-32 raised the kNN's out-of-sample accuracy from 89.6% (7x7 thumbnails) to 91.3%
    and the precision of the flipped-label findings from 59% to 73%.
    """
    flat = ndimage.gaussian_filter(analysis.astype(np.float32), sigma=(0, 1, 1)).reshape(len(analysis), -1) / 255.0
    dims = min(dims, *flat.shape)
    return PCA(dims, random_state=seed).fit_transform(flat).astype(np.float32)
