"""Hungarian-matched accuracy and the metrics on classes never labelled, against hand-made confusion matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rayssl.eval.matching import matched_accuracy, metrics_on_classes


def test_matched_accuracy_of_a_hand_made_confusion_matrix():
    # rows: true classes, columns: predicted. The classifier calls class 0 "1" and class 1 "0".
    confusion = np.array([[0, 8, 2], [9, 1, 0], [0, 0, 10]])
    accuracy, assignment = matched_accuracy(confusion)
    assert accuracy == pytest.approx((8 + 9 + 10) / 30)  # 0.9, against 11/30 on the diagonal
    assert assignment.tolist() == [1, 0, 2]


def test_matching_is_optimal_where_greedy_is_not():
    # Greedy takes the largest cell (5, row 0 -> 0) and is left with row 1 -> 1 (0): 5 of 13.
    # The best one-to-one matching crosses over: 4 + 4 = 8 of 13.
    accuracy, assignment = matched_accuracy(np.array([[5, 4], [4, 0]]))
    assert accuracy == pytest.approx(8 / 13) and assignment.tolist() == [1, 0]


def test_images_predicted_outside_the_columns_count_as_wrong():
    # 2 true classes matched among 3 predicted columns; 10 more images went to a class not listed.
    accuracy, assignment = matched_accuracy(np.array([[0, 6, 1], [2, 0, 7]]), images=26)
    assert accuracy == pytest.approx((6 + 7) / 26) and assignment.tolist() == [1, 2]
    with pytest.raises(ValueError, match="P >= T"):
        matched_accuracy(np.ones((3, 2), dtype=int))


def test_metrics_on_the_classes_never_labelled():
    # Classes 2 and 3 were never labelled. Three images of 2, two of 3, and two of class 0 (ignored).
    labels = np.array([2, 2, 2, 3, 3, 0, 0])
    predicted = np.array([3, 3, 1, 2, 3, 0, 2])  # 2 is mostly called "3"; one 2 went to class 1 (outside 2-3)
    logits = np.full((7, 4), 0.0)
    logits[np.arange(7), predicted] = math.log(5.0)  # softmax: 5/8 on the prediction, 1/8 on each other class
    m = metrics_on_classes(logits, labels, [2, 3])
    # confusion over predicted {2, 3}: class 2 -> (0, 2), class 3 -> (1, 1); best matching 2 -> 3, 3 -> 2: 2 + 1 of 5
    assert m["images"] == 5 and m["matched_accuracy"] == pytest.approx(3 / 5) and m["matching"] == {2: 3, 3: 2}
    assert m["accuracy"] == pytest.approx(1 / 5)  # only the one 3 predicted as 3
    assert m["predicted_among_them"] == pytest.approx(4 / 5)  # the 2 predicted as 1 is outside
    # -log p(true): 1 image of 5 predicted right (-log 5/8), 4 wrong (-log 1/8)
    assert m["cross_entropy"] == pytest.approx((math.log(8 / 5) + 4 * math.log(8)) / 5)
    assert metrics_on_classes(logits, labels, [1]) == {"classes": [1], "images": 0}
