"""k-means, nearest neighbours and radius graphs on unit-norm embeddings with faiss, in bounded memory.

faiss's L2 metric gives SQUARED Euclidean distances; everything this module returns is plain Euclidean
distance except where a name says `sq`. No function builds an N x N matrix: searches run in blocks of
queries and faiss tiles the database itself.

k-means (`kmeans`): greedy k-means++ seeds (on at most KMEANS_PP_SAMPLE rows), then faiss's Lloyd
iterations on at most max(256 K, 50,000) seeded rows, then every row's nearest centroid. faiss rather
than scikit-learn's MiniBatchKMeans, measured on 100k x 512 unit-norm blobs on this 2-core machine
(bench/selection_scale.py; load 1.3-2.5): K = 150 (TypiClust's K at 50 labelled + budget 100): 3.5 s
against 6.6 s (batch 5,000, as the authors), inertia 85,883 against 85,944; K = 500: 19.4 s (4.2 s of
it k-means++ seeding on 20,000 rows, since cut to 10,000) against 11.1 s, inertia 59,014 against
59,426 (faiss with its own random seeds: 9.3 s, 60,021). What decided it: faiss's cost stops growing with N past its training
sample (only the final assignment is O(N K D)), where MiniBatchKMeans labels and re-checks every row;
faiss is already the neighbour library; scikit-learn's import alone takes 1.5-3 s here. Timings on this
machine vary 2-5x with other jobs' load. The k-means++ seeds matter at small K: faiss's random seeds can
put two centroids in one tight cluster and none in another.

Exact or approximate neighbours (`RowIndex.build`): up to EXACT_MAX_ROWS rows an exact IndexFlatL2;
above, an IndexIVFFlat with 4 sqrt(N) lists searched in IVF_NPROBE of them. 20,000 rather than ~200k:
on 100k x 512 blobs (2 cores) the exact radius search of every row would take ~200 s (1.0 s per 500
queries), the IVF one 8 s after a 6 s build, with recall 1.0 against exact on 500 queries (>= 0.95 on
the unit test's 2,000 rows); exact costs N^2 D, about 8 s at 20,000 rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

KMEANS_ITERATIONS = 20
KMEANS_POINTS_PER_CENTROID = 256  # faiss's own default training subsample per centroid
KMEANS_MIN_TRAIN = 50_000  # small K still trains on this many rows (cheap, and steadier than 256 K)
KMEANS_PP_SAMPLE = 10_000  # k-means++ seeding is K passes over its rows: kept small
EXACT_MAX_ROWS = 20_000
IVF_LISTS_PER_SQRT_N = 4
IVF_NPROBE = 8
IVF_TRAIN_PER_LIST = 16  # the coarse quantizer only routes searches: a small training sample is enough
IVF_KMEANS_ITERATIONS = 10
QUERY_BLOCK = 16_384  # rows per search call: bounds the [block, k] outputs
BLOCK_EDGES = 8_000_000  # a radius search block aims at this many edges (faiss's int64 + float32 each)
EDGE_CAP = 200_000_000  # int32 neighbours: 800 MB
RECALL_ROWS = 200  # rows whose balls are counted exactly to measure an IVF radius graph's recall
RECALL_TARGET = 0.95
SMALL_WORK = 1e9  # multiply-adds below which a faiss call runs on one thread (threads_for): ~0.1 s on one core


class GraphTooLargeError(ValueError):
    """The radius graph would hold more than EDGE_CAP edges."""


def faiss_seed(rng: np.random.Generator) -> int:
    """A seed for faiss (a C int) drawn from rng."""
    return int(rng.integers(0, 2**31 - 1))


def sample_rows(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """int64 [min(n, size)] sorted distinct rows of range(n), every row when size >= n."""
    if size >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size, replace=False))


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """int64 [N]: the nearest of centroids [K, D] to each row of x [N, D]."""
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    out = np.empty(len(x), np.int64)
    for lo in range(0, len(x), QUERY_BLOCK * 4):
        out[lo : lo + QUERY_BLOCK * 4] = index.search(x[lo : lo + QUERY_BLOCK * 4], 1)[1][:, 0]
    return out


def kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [k, D]: greedy k-means++ seeds among rows of x [n, D] (Arthur & Vassilvitskii 2007; 2 + ln k
    D^2-sampled trials per seed, the one that lowers the potential most is kept, as scikit-learn does).
    Written here rather than imported: scikit-learn's import alone takes seconds."""
    sq = np.einsum("ij,ij->i", x, x)
    trials = 2 + int(np.log(k))
    chosen = [int(rng.integers(len(x)))]
    closest = np.maximum(sq + sq[chosen[0]] - 2 * (x @ x[chosen[0]]), 0)  # squared distance to the nearest seed
    for _ in range(1, k):
        picks = np.searchsorted(np.cumsum(closest, dtype=np.float64), rng.random(trials) * closest.sum(dtype=np.float64))
        picks = np.minimum(picks, len(x) - 1)
        to_picks = np.maximum(sq[None, :] + sq[picks, None] - 2 * (x[picks] @ x.T), 0)  # [trials, n]
        after = np.minimum(closest[None, :], to_picks)
        best = int(np.argmin(after.sum(axis=1, dtype=np.float64)))
        chosen.append(int(picks[best]))
        closest = after[best]
    return x[chosen]


def kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(centroids float32 [k, D], assignment int64 [N]) of x [N, D] (N >= k), seeded.

    k-means++ seeds on a subsample, then faiss's Lloyd iterations on a larger one (module docstring)."""
    rng = np.random.default_rng(seed)
    train = x[sample_rows(len(x), max(KMEANS_POINTS_PER_CENTROID * k, KMEANS_MIN_TRAIN), rng)]
    init = kmeans_plusplus(train[sample_rows(len(train), max(KMEANS_PP_SAMPLE, k), rng)], k, rng)
    km = faiss.Kmeans(
        x.shape[1], k, niter=KMEANS_ITERATIONS, seed=faiss_seed(rng), min_points_per_centroid=1, max_points_per_centroid=len(train)
    )
    with threads_for(float(len(train)) * k * x.shape[1]):  # one iteration's assignment is one faiss call
        km.train(train, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
    centroids = trained(km)
    with threads_for(float(QUERY_BLOCK) * 4 * k * x.shape[1]):
        return centroids, nearest_centroid(x, centroids)


def trained(km: faiss.Kmeans) -> np.ndarray:
    """float32 [k, D]: the centroids of a trained faiss.Kmeans."""
    assert km.centroids is not None, "k-means was not trained"
    return km.centroids


@contextmanager
def threads_for(work: float) -> Iterator[None]:
    """faiss on one OpenMP thread while `work` (multiply-adds, roughly) is below SMALL_WORK, on its own
    setting otherwise: on small calls OpenMP's start-up and barriers cost more than the work, and far
    more when other jobs share the cores (k-means of 603 x 8: 0.12 s on the 2 threads of a loaded
    machine, 0.0004 s on one; a 667-row cluster's typicality took ~0.3 s per cluster on 2 threads)."""
    if work >= SMALL_WORK:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@dataclass
class RowIndex:
    """Every row of x in a faiss index, searchable by row: exact below EXACT_MAX_ROWS, IVF above."""

    index: Any  # faiss.IndexFlatL2 or faiss.IndexIVFFlat (whose *_preassigned methods faiss's stubs lack)
    probes: np.ndarray | None  # int64 [N, nprobe] the IVF lists each row is searched in; None when exact

    @property
    def description(self) -> str:
        if self.probes is None:
            return "exact (IndexFlatL2)"
        return f"IVF (IndexIVFFlat, nlist={self.index.nlist}, nprobe={self.index.nprobe})"

    @classmethod
    def build(cls, x: np.ndarray, seed: int) -> RowIndex:
        """x: float32 [N, D] C-contiguous. The IVF's coarse assignment of every row is kept (`probes`):
        adding and radius-searching the same rows then need one coarse search, not two."""
        n, d = x.shape
        if n <= EXACT_MAX_ROWS:
            flat = faiss.IndexFlatL2(d)
            flat.add(x)
            return cls(flat, None)
        nlist = int(round(IVF_LISTS_PER_SQRT_N * math.sqrt(n)))
        rng = np.random.default_rng(seed)
        coarse = faiss.Kmeans(d, nlist, niter=IVF_KMEANS_ITERATIONS, seed=faiss_seed(rng), min_points_per_centroid=1)
        coarse.train(x[sample_rows(n, IVF_TRAIN_PER_LIST * nlist, rng)])
        quantizer = faiss.IndexFlatL2(d)
        quantizer.add(trained(coarse))
        ivf = faiss.IndexIVFFlat(quantizer, d, nlist)
        ivf.nprobe = min(IVF_NPROBE, nlist)
        index = cls(ivf, np.empty((n, 0), np.int64))
        index.reprobe(x, ivf.nprobe, add=True)
        return index

    def reprobe(self, x: np.ndarray, nprobe: int, add: bool = False) -> None:
        """Route every row of x [N, D] to its nprobe nearest IVF lists (`probes`), and add the rows to
        their nearest list first when `add`: one coarse search serves both."""
        quantizer, self.index.nprobe = self.index.quantizer, nprobe
        self.probes = np.empty((len(x), nprobe), np.int64)
        for lo in range(0, len(x), QUERY_BLOCK):
            block = np.ascontiguousarray(x[lo : lo + QUERY_BLOCK])
            self.probes[lo : lo + len(block)] = quantizer.search(block, nprobe)[1]
            if add:
                lists = np.ascontiguousarray(self.probes[lo : lo + len(block), 0])  # named: swig_ptr does not keep its array alive
                self.index.add_core(len(block), faiss.swig_ptr(block), None, faiss.swig_ptr(lists))

    def knn(self, x: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances float32 [R, k], neighbour rows int64 [R, k]) of rows [R] of x, nearest first; the row
        itself is among them (distance 0). -1 (distance inf) where an IVF search found fewer than k."""
        dist = np.empty((len(rows), k), np.float32)
        found = np.empty((len(rows), k), np.int64)
        for lo in range(0, len(rows), QUERY_BLOCK):
            block = rows[lo : lo + QUERY_BLOCK]
            if self.probes is None:
                sq, ids = self.index.search(x[block], k)
            else:
                sq, ids = self.index.search_preassigned(x[block], k, self.probes[block], None)
            dist[lo : lo + len(block)] = np.where(ids >= 0, np.sqrt(np.maximum(sq, 0)), np.inf)
            found[lo : lo + len(block)] = ids
        return dist, found

    def nearest(self, queries: np.ndarray) -> np.ndarray:
        """float32 [Q]: the distance from each of queries [Q, D] (any vectors) to its nearest indexed row; inf
        where an IVF search found none."""
        out = np.empty(len(queries), np.float32)
        for lo in range(0, len(queries), QUERY_BLOCK):
            sq, ids = self.index.search(np.ascontiguousarray(queries[lo : lo + QUERY_BLOCK], dtype=np.float32), 1)
            out[lo : lo + len(ids)] = np.where(ids[:, 0] >= 0, np.sqrt(np.maximum(sq[:, 0], 0)), np.inf)
        return out

    def within(self, x: np.ndarray, rows: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """(lims int64 [R + 1], neighbour rows int64 [E]) closer than `radius` (Euclidean) to rows [R] of x."""
        sq = float(radius) ** 2  # faiss compares squared distances
        if self.probes is None:
            lims, _, ids = self.index.range_search(x[rows], sq)
        else:
            lims, _, ids = self.index.range_search_preassigned(x[rows], sq, self.probes[rows], None)
        return lims.astype(np.int64), ids


@dataclass(frozen=True)
class RadiusGraph:
    """Rows closer than `radius` to each row, itself left out, as CSR: row i's neighbours are
    neighbours[indptr[i]:indptr[i + 1]]."""

    indptr: np.ndarray  # int64 [N + 1]
    neighbours: np.ndarray  # int32 [E]
    radius: float

    @property
    def edges(self) -> int:
        return len(self.neighbours)

    def of(self, rows: np.ndarray) -> np.ndarray:
        """int32 [sum of degrees]: the neighbours of every row in rows [R] (repeats kept), gathered without a loop."""
        starts, counts = self.indptr[rows], np.diff(self.indptr)[rows]
        total = int(counts.sum())
        # position t of the output belongs to rows[i]: neighbours[starts[i] + t - (offset of rows[i] in the output)]
        shift = np.repeat(starts - (np.cumsum(counts) - counts), counts)
        return self.neighbours[shift + np.arange(total)]


def radius_graph(x: np.ndarray, index: RowIndex, radius: float, rng: np.random.Generator) -> RadiusGraph:
    """The RadiusGraph of x [N, D] at `radius`; GraphTooLargeError (before the full search when a
    seeded probe of rows already predicts it) when it would pass EDGE_CAP edges."""
    n = len(x)
    probe = sample_rows(n, 1_000, rng)
    degree = max(1.0, (index.within(x, probe, radius)[0][-1] - len(probe)) / len(probe))
    if degree * n > EDGE_CAP:
        raise GraphTooLargeError(_too_large(radius, int(degree * n), "predicted from a sample of 1,000 rows"))
    # Blocks of about BLOCK_EDGES edges: faiss returns them as int64 ids + float32 distances (12 B each).
    block = int(np.clip(BLOCK_EDGES / degree, 256, QUERY_BLOCK))
    counts, parts, total = np.zeros(n, np.int64), [], 0
    for lo in range(0, n, block):
        rows = np.arange(lo, min(n, lo + block))
        lims, ids = index.within(x, rows, radius)
        owner = np.repeat(rows, np.diff(lims))
        keep = ids != owner  # a row is in its own ball: left out here, counted by the caller
        counts[rows] = np.bincount(owner[keep] - lo, minlength=len(rows))
        parts.append(ids[keep].astype(np.int32))
        total += len(parts[-1])
        if total > EDGE_CAP:
            raise GraphTooLargeError(_too_large(radius, total, f"after {rows[-1] + 1:,} of {n:,} rows"))
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    return RadiusGraph(indptr, np.concatenate(parts) if parts else np.zeros(0, np.int32), float(radius))


def exact_ball_sizes(x: np.ndarray, rows: np.ndarray, radius: float) -> np.ndarray:
    """int64 [R]: how many other rows of x [N, D] (unit rows) are closer than radius to each of rows [R],
    counted exactly against the database in blocks (R x block distances at a time)."""
    sizes = np.zeros(len(rows), np.int64)
    for lo in range(0, len(x), QUERY_BLOCK * 4):
        sq = np.maximum(2 - 2 * (x[rows] @ x[lo : lo + QUERY_BLOCK * 4].T), 0)  # unit rows: |a - b|^2 = 2 - 2 a.b
        sizes += (sq < radius**2).sum(axis=1)
    return sizes - 1  # each row is in its own ball; graphs leave it out


def ball_recall(x: np.ndarray, graph: RadiusGraph, rng: np.random.Generator, rows: int = RECALL_ROWS) -> float:
    """The fraction of the true ball members (other rows closer than graph.radius) that graph holds, over
    a seeded sample of rows of x [N, D]. 1.0 for an exact index; an IVF searches only its nprobe nearest
    lists and loses the members that lie in others."""
    sample = sample_rows(len(x), rows, rng)
    true = int(exact_ball_sizes(x, sample, graph.radius).sum())
    return min(1.0, float(np.diff(graph.indptr)[sample].sum()) / true) if true else 1.0


def calibrate_nprobe(x: np.ndarray, index: RowIndex, radius: float, rng: np.random.Generator) -> float:
    """Double an IVF index's nprobe (re-routing every row, RowIndex.reprobe) until its radius search
    holds >= RECALL_TARGET of the true ball members on a seeded sample of rows, or every list is
    searched; returns the sample's recall at the nprobe kept (1.0 for an exact index). Why: a fixed
    nprobe of 8 lists of ~sqrt(N)/4 rows scans a few hundred rows per query; on 60,000 MNIST SimCLR
    embeddings it held 59% of the members of balls of ~60 rows (and 18% at ~550)."""
    if index.probes is None:
        return 1.0
    sample = sample_rows(len(x), RECALL_ROWS, rng)
    true = max(1, int(exact_ball_sizes(x, sample, radius).sum()))
    routed, nlist = index.index.nprobe, index.index.nlist
    nprobe = routed
    while True:
        index.index.nprobe = nprobe  # the preassigned search checks its probes' width against it
        probes = index.index.quantizer.search(np.ascontiguousarray(x[sample]), nprobe)[1]
        lims, _, _ = index.index.range_search_preassigned(x[sample], float(radius) ** 2, probes, None)
        recall = min(1.0, (int(lims[-1]) - len(sample)) / true)
        if recall >= RECALL_TARGET or nprobe >= nlist:
            break
        nprobe = min(nlist, nprobe * 2)
    if nprobe != routed:
        index.reprobe(x, nprobe)
    return recall


def _too_large(radius: float, edges: int, when: str) -> str:
    return (
        f"delta = {radius:.4f} is too large: the radius graph passes {EDGE_CAP:,} edges ({edges:,}, {when}); "
        "each ball holds too many rows (embeddings with little structure, or too few purity_clusters)"
    )
