"""k-center greedy (Sener & Savarese, ICLR 2018, "core-set" selection) on unit-norm embeddings (pure numpy).

Each pick is the candidate farthest from every labelled and already-picked row, which keeps the covering
radius (the largest distance from any row to its nearest labelled or picked row) within twice the best
possible for the rows picked (Gonzalez 1985) when every unlabelled row is a candidate. O(N D) per pick
(one matrix-vector product), O(N) memory besides the embeddings.

With nothing labelled, the first pick is the candidate nearest the mean embedding: deterministic, and a
typical image rather than whatever a random draw lands on; every later pick is the farthest one anyway.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from rayssl.selection.core import row_norms

BLOCK = 65_536  # rows per distance block to the labelled set


def _distance_to(x: np.ndarray, sq_norms: np.ndarray, row: int) -> np.ndarray:
    """float32 [N]: Euclidean distance from every row of x [N, D] to x[row] (|a|^2 + |b|^2 - 2 a.b, clipped at 0)."""
    sq = sq_norms + sq_norms[row] - 2 * (x @ x[row])
    return np.sqrt(np.maximum(sq, 0, out=sq), out=sq)


def _distance_to_labelled(x: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """float32 [N]: distance from every row of x [N, D] to its nearest labelled row (exact faiss search in blocks)."""
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(x[labelled]))
    nearest = np.empty(len(x), np.float32)
    for lo in range(0, len(x), BLOCK):
        sq = index.search(x[lo : lo + BLOCK], 1)[0][:, 0]  # faiss: squared distances
        nearest[lo : lo + BLOCK] = np.sqrt(np.maximum(sq, 0))
    return nearest


def kcenter_greedy(x: np.ndarray, budget: int, labelled: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """(picks int64 [budget], details) on x float32 [N, D] unit rows; labelled, candidates: bool [N].

    details: radius (covering radius of labelled + picks over every row), start ("labelled": the
    distances start from the labelled rows; "nearest_mean": nothing labelled, first pick nearest the mean)."""
    sq_norms = row_norms(x) ** 2
    available = candidates.copy()
    picks: list[int] = []
    if labelled.any():
        nearest, start = _distance_to_labelled(x, labelled), "labelled"
    else:
        mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
        closeness = 2 * (x @ mean) - sq_norms  # |x - mean|^2 less the constant |mean|^2, negated
        first = int(np.argmax(np.where(available, closeness, -np.inf)))
        picks.append(first)
        available[first] = False
        nearest, start = _distance_to(x, sq_norms, first), "nearest_mean"
    while len(picks) < budget:
        pick = int(np.argmax(np.where(available, nearest, -1.0)))  # picked and labelled rows are never candidates
        picks.append(pick)
        available[pick] = False
        np.minimum(nearest, _distance_to(x, sq_norms, pick), out=nearest)
    return np.array(picks, np.int64), {"radius": float(nearest.max()), "start": start}
