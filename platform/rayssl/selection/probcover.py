"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022, arXiv 2205.11320): pick the images whose
delta-balls cover the most of the data not covered yet (numpy + faiss).

delta, as in the paper, from cluster purity: k-means with `purity_clusters` clusters gives pseudo-labels;
a row is pure at delta when its (open) delta-ball holds no row of another cluster, i.e. when its distance
to the nearest row of another cluster is >= delta. The largest delta with purity >= PURITY is then the
m-th smallest of those distances, m = n - ceil(PURITY n) (about the 5th percentile), estimated on a
seeded sample of DELTA_SAMPLE rows. Each sampled row's distance to another cluster is read from its
DELTA_KNN nearest neighbours when one of them is of another cluster (nearest first, so the first such is
the nearest); the rows that see only their own cluster (most rows, when clusters hold many more rows
than DELTA_KNN) are searched against one index per other cluster (distance_to_other_cluster), so delta
is the rule's own value, not a bound. On the benchmarks' CPU-scale SimCLR embeddings that value is small
(MNIST: 0.086, balls of ~100 rows; 5% of rows have another class within their nearest-neighbour
distance, by the true labels as by k-means) and the greedy cover picks the densest digits first
(docs/selection.md); `delta` given to rayssl.selection.select replaces the rule.

Then the radius graph of every row (neighbours.radius_graph: sparse CSR, exact or IVF, never N x N;
GraphTooLargeError when delta gives too many edges) and greedy max coverage: rows in a labelled row's
ball start covered; each pick is the candidate whose ball (itself included) holds the most uncovered
rows. Every row counts towards coverage; only labelled rows' balls start covered and only candidates
are picked. When no candidate covers anything new, the rest of the budget is drawn uniformly from the
candidates left, as the paper does (details: random_fallback).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from rayssl.logs import get_logger
from rayssl.selection.neighbours import RadiusGraph, RowIndex, ball_recall, calibrate_nprobe, faiss_seed, kmeans, radius_graph, sample_rows

PURITY = 0.95
DELTA_SAMPLE = 10_000  # the 5th percentile's standard error in purity: sqrt(0.05 x 0.95 / 10,000) = 0.2%
DELTA_KNN = 50
ROW_BLOCK = 65_536
RECALL_WARN = 0.9


def largest_pure_delta(to_other: np.ndarray, purity: float = PURITY) -> float:
    """The largest delta at which a fraction >= purity of rows are pure, given to_other float [n]: each
    row's distance to its nearest row of another cluster (inf: none). A row is pure at delta iff
    to_other >= delta, so delta is the m-th smallest value, m = n - ceil(purity n)."""
    n = len(to_other)
    m = n - math.ceil(purity * n - 1e-9)  # impure rows allowed; 1e-9: 0.95 x 100 is 95.00000000000001
    return float(np.partition(to_other, m)[m])


def distance_to_other_cluster(x: np.ndarray, pseudo: np.ndarray, rows: np.ndarray, seed: int) -> np.ndarray:
    """float32 [R]: for each of rows [R] of x [N, D], the distance to its nearest row of another cluster of
    pseudo int64 [N] (inf when there is no other cluster). One RowIndex per cluster, searched by the rows of
    the other clusters: R x N distances in all at most, in blocks, never an R x N array."""
    out = np.full(len(rows), np.inf, np.float32)
    for cluster in np.unique(pseudo):
        queries = np.flatnonzero(pseudo[rows] != cluster)
        if len(queries):
            members = np.ascontiguousarray(x[pseudo == cluster])
            out[queries] = np.minimum(out[queries], RowIndex.build(members, seed).nearest(x[rows[queries]]))
    return out


def purity_delta(x: np.ndarray, pseudo: np.ndarray, index: RowIndex, rng: np.random.Generator) -> tuple[float, np.ndarray, dict[str, int]]:
    """(delta, to_other float32 [R]: each sampled row's distance to another cluster (a row is pure at
    any radius <= it), counts of sampled rows by how that distance was found) for x [N, D] with
    pseudo-labels pseudo int64 [N] (module docstring)."""
    rows = sample_rows(len(x), DELTA_SAMPLE, rng)
    dist, found = index.knn(x, rows, min(DELTA_KNN + 1, len(x)))  # + 1: each row finds itself
    valid = found >= 0
    other = valid & (pseudo[np.where(valid, found, 0)] != pseudo[rows][:, None])
    seen = other.any(axis=1)
    to_other = np.where(seen, dist[np.arange(len(rows)), other.argmax(axis=1)], np.inf)  # neighbours come nearest first
    unseen = np.flatnonzero(~seen)
    if len(unseen):
        to_other[unseen] = distance_to_other_cluster(x, pseudo, rows[unseen], faiss_seed(rng))
    found_by = {"neighbours": int(seen.sum()), "cluster_search": len(unseen)}
    return largest_pure_delta(to_other), to_other, found_by


def _uncovered_in_balls(graph: RadiusGraph, covered: np.ndarray) -> np.ndarray:
    """int64 [N]: for every row, the uncovered rows in its ball, itself included; row blocks, O(block) memory."""
    n = len(covered)
    out = (~covered).astype(np.int64)
    for lo in range(0, n, ROW_BLOCK):
        hi = min(n, lo + ROW_BLOCK)
        a, b = graph.indptr[lo], graph.indptr[hi]
        running = np.zeros(b - a + 1, np.int64)
        np.cumsum(~covered[graph.neighbours[a:b]], out=running[1:])
        out[lo:hi] += running[graph.indptr[lo + 1 : hi + 1] - a] - running[graph.indptr[lo:hi] - a]
    return out


def greedy_cover(
    graph: RadiusGraph, budget: int, labelled: np.ndarray, candidates: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """(picks int64 [budget], details) of greedy max coverage on graph; labelled, candidates: bool [N].

    gain[r] (uncovered rows in r's ball) is kept up to date by subtracting, for each newly covered row,
    one from its neighbours (the graph is symmetric: r is in y's ball iff y is in r's); the pick's gain is
    checked against its ball before it is taken (details: gain_corrections, 0 on a symmetric graph), so an
    asymmetric IVF edge cannot make a pick's gain wrong, only, rarely, another row's gain too low."""
    n = len(labelled)
    covered = labelled.copy()
    for lo in range(0, n, ROW_BLOCK):  # blocks: the gathered neighbours of many labelled rows can be large
        covered[graph.of(np.flatnonzero(labelled[lo : lo + ROW_BLOCK]) + lo)] = True
    before = float(covered.mean())
    gain = _uncovered_in_balls(graph, covered)
    available, corrections = candidates.copy(), 0
    picks: list[int] = []
    while len(picks) < budget:
        pick = int(np.argmax(np.where(available, gain, -1)))
        if gain[pick] <= 0 or not available[pick]:
            break  # nothing new to cover
        ball = np.concatenate([[pick], graph.of(np.array([pick]))])
        new = ball[~covered[ball]]
        if len(new) != gain[pick]:  # stale after an asymmetric edge: correct it and choose again
            gain[pick], corrections = len(new), corrections + 1
            continue
        picks.append(pick)
        available[pick] = False
        covered[new] = True
        gain[new] -= 1  # their own balls
        gain -= np.bincount(graph.of(new), minlength=n)  # the balls they are in
    fallback = budget - len(picks)
    if fallback:
        picks.extend(rng.choice(np.flatnonzero(available), fallback, replace=False).tolist())
    cover = {
        "covered_before": before,
        "covered_fraction": float(covered.mean()),
        "random_fallback": fallback,
        "gain_corrections": corrections,
    }
    return np.array(picks, np.int64), cover


def probcover(
    x: np.ndarray,
    budget: int,
    labelled: np.ndarray,
    candidates: np.ndarray,
    seed: int,
    purity_clusters: int,
    given_delta: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(picks int64 [budget], their pseudo-label clusters int64 [budget], details) on x float32 [N, D] unit
    rows; labelled, candidates: bool [N]; purity_clusters: k-means clusters for delta (2 <= it <= N);
    given_delta: the radius to use instead (its purity is still measured and reported)."""
    rng = np.random.default_rng((seed, 2))
    seconds = {}
    t = time.perf_counter()
    _, pseudo = kmeans(x, purity_clusters, seed)
    seconds["kmeans"], t = time.perf_counter() - t, time.perf_counter()
    index = RowIndex.build(x, int(rng.integers(0, 2**31 - 1)))
    seconds["index"], t = time.perf_counter() - t, time.perf_counter()
    purity_rule_delta, to_other, found_by = purity_delta(x, pseudo, index, rng)
    delta = purity_rule_delta if given_delta is None else float(given_delta)
    seconds["delta"], t = time.perf_counter() - t, time.perf_counter()
    calibrate_nprobe(x, index, delta, rng)
    seconds["nprobe"], t = time.perf_counter() - t, time.perf_counter()
    graph = radius_graph(x, index, delta, rng)
    description, recall = index.description, 1.0 if index.probes is None else ball_recall(x, graph, rng)
    if recall < RECALL_WARN:
        get_logger().warning(
            f"probcover: the IVF radius graph holds {recall:.0%} of the delta = {delta:.3f} balls' rows; coverage counts are low"
        )
    del index  # the IVF holds a copy of the embeddings: free it before the greedy
    seconds["graph"], t = time.perf_counter() - t, time.perf_counter()
    picks, cover = greedy_cover(graph, budget, labelled, candidates, rng)
    seconds["greedy"] = time.perf_counter() - t
    details = {
        "delta": delta,
        "delta_from": "purity rule" if given_delta is None else "given",
        "purity_rule_delta": purity_rule_delta,
        "purity": float(np.mean(to_other >= delta)),
        "purity_target": PURITY,
        "distance_to_other_found_by": found_by,
        "purity_clusters": purity_clusters,
        "neighbours": description,
        "ball_recall": recall,
        "edges": graph.edges,
        "mean_degree": graph.edges / len(x),  # neighbours per row, itself excluded
        **cover,
        "seconds": {name: round(s, 3) for name, s in seconds.items()},
    }
    return picks, pseudo[picks].astype(np.int64), details
