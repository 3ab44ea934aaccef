import numpy as np

from rayssl.eval.probes import knn_accuracy, linear_probe_accuracy
from rayssl.eval.report import markdown_table


def _blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centers = np.eye(3, 5) * 5
    return centers[y] + rng.normal(size=(n, 5)), y


def test_probes_separate_clusters_and_fail_on_noise():
    (xtr, ytr), (xte, yte) = _blobs(90, 0), _blobs(30, 1)
    assert knn_accuracy(xtr, ytr, xte, yte, k=5) == 1.0
    assert linear_probe_accuracy(xtr, ytr, xte, yte) == 1.0
    noise = np.random.default_rng(2).normal(size=xtr.shape)
    assert knn_accuracy(noise, ytr, np.random.default_rng(3).normal(size=xte.shape), yte, k=5) < 0.7


def test_table_formats_percentages():
    table = markdown_table([{"features": "NAT", "knn_acc": 0.5, "linear_acc": 0.25}])
    assert "| NAT | 50.00% | 25.00% |" in table
