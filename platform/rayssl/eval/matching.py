"""Accuracy on classes that never had a labelled image, up to a renaming of the classes.

When a run sees labelled images of some classes only (semisup.labelled_classes, e.g. the inverted
VAE's protocol: digits 0-4 labelled, 5-9 known from label-only records), nothing in an unsupervised
objective ties the index 7 to what a 7 looks like: every bound is unchanged when the unlabelled
classes are permuted among themselves. Raw accuracy on those classes then measures luck. The
Hungarian-matched accuracy measures whether the classifier groups them consistently: the accuracy
after the best one-to-one assignment of the true classes to predicted classes
(scipy.optimize.linear_sum_assignment on the confusion matrix), as in clustering evaluations.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import log_softmax


def matched_accuracy(confusion: np.ndarray, images: int | None = None) -> tuple[float, np.ndarray]:
    """The accuracy after the best one-to-one assignment of true classes (rows) to predicted classes (columns).

    confusion: int [T, P] counts, P >= T, rows the true classes, columns the predicted classes the
    assignment may use; images: how many images the rows stand for (default: confusion.sum(); more
    when some were predicted as a class outside the columns, which count as wrong).
    Returns (accuracy, assignment int [T]: the column each row's class is matched to)."""
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] > confusion.shape[1]:
        raise ValueError(f"confusion must be [T, P] with P >= T, got shape {confusion.shape}")
    total = int(confusion.sum()) if images is None else images
    rows, columns = linear_sum_assignment(confusion, maximize=True)
    assignment = np.empty(confusion.shape[0], dtype=np.int64)
    assignment[rows] = columns
    return (float(confusion[rows, columns].sum() / total) if total else float("nan")), assignment


def metrics_on_classes(logits: np.ndarray, labels: np.ndarray, classes: list[int]) -> dict[str, Any]:
    """How a classifier does on the test images of `classes` only.

    logits float [N, K], labels int [N] (every test image); classes: the class ids to score (e.g. those
    that had no labelled image). Predictions are the argmax over all K classes; an image of these
    classes predicted as another class counts as wrong in every accuracy here.
    - matched_accuracy: after the best one-to-one renaming of these classes among themselves;
    - matching: {true class: the predicted class it is matched to};
    - accuracy: without renaming;
    - predicted_among_them: the fraction predicted as one of these classes (the matched accuracy's
      ceiling: an image sent to another class is wrong under every renaming);
    - cross_entropy: mean -log softmax(logits)[true class] in nats (the full softmax; Gemp et al.'s figure);
    - images: how many test images these classes have."""
    ids = np.asarray(classes, dtype=np.int64)
    keep = np.isin(labels, ids)
    if not keep.any():
        return {"classes": list(map(int, ids)), "images": 0}
    y, z = labels[keep], np.asarray(logits, dtype=np.float64)[keep]
    predicted = z.argmax(axis=1)
    # confusion[i, j]: images of class ids[i] predicted as ids[j]
    confusion = (y[:, None] == ids[None, :]).T.astype(np.int64) @ (predicted[:, None] == ids[None, :]).astype(np.int64)
    matched, assignment = matched_accuracy(confusion, images=len(y))
    return {
        "classes": list(map(int, ids)),
        "images": int(len(y)),
        "matched_accuracy": matched,
        "matching": {int(ids[i]): int(ids[j]) for i, j in enumerate(assignment)},
        "accuracy": float((predicted == y).mean()),
        "predicted_among_them": float(np.isin(predicted, ids).mean()),
        "cross_entropy": float(-log_softmax(z, axis=1)[np.arange(len(y)), y].mean()),
    }
