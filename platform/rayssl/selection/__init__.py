"""Cold-start selection: which images to label, from their embeddings (numpy + faiss + scikit-learn; no
Ray, no torch).

    select("typiclust", embeddings [N, D], budget) -> Selection(indices [B], clusters [B], details)

Strategies: "random" (uniform, seeded), "kcenter" (k-center greedy, Sener & Savarese 2018),
"typiclust" (Hacohen et al. 2022), "probcover" (Yehuda et al. 2022); one module each, this one checks
the inputs and dispatches. The embeddings are L2-normalised here, every strategy sees unit rows
(distances are then Euclidean between unit vectors, in [0, 2]); rows already of unit norm are used
without a copy. Memory: besides the embeddings, O(N) for random and k-center, plus one cluster's
[<= 20,000, D] copy for TypiClust and, for ProbCover, a copy of the embeddings inside faiss's index
(freed before the greedy) and the sparse radius graph (<= 200M int32 edges).
"""

from __future__ import annotations

import time

import numpy as np

from rayssl.selection.core import Selection, check_budget, check_embeddings, checked_norms, mask_or_default, unit_rows
from rayssl.selection.kcenter import kcenter_greedy
from rayssl.selection.neighbours import GraphTooLargeError, threads_for
from rayssl.selection.probcover import probcover
from rayssl.selection.typiclust import typiclust
from rayssl.selection.uniform import random_picks

STRATEGIES = ("random", "kcenter", "typiclust", "probcover")

__all__ = ["STRATEGIES", "GraphTooLargeError", "Selection", "select"]


def select(
    strategy: str,
    embeddings: np.ndarray,
    budget: int,
    *,
    labelled: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
    seed: int = 0,
    purity_clusters: int = 10,
    delta: float | None = None,
) -> Selection:
    """`budget` rows of embeddings (float [N, D], L2-normalised here) to label next, by `strategy`.

    labelled: bool [N] rows already labelled: covered (k-center distances start from them, TypiClust
    counts them as their clusters' labelled members, ProbCover's balls around them start covered), never
    picked. candidates: bool [N] rows that may be picked (default: every row not labelled); rows neither
    labelled nor candidates (a validation set) still count in densities, clusters and graphs, but are
    never picked and cover nothing. seed: every random choice (k-means, subsamples, random picks).
    purity_clusters: ProbCover's k-means clusters whose purity sets delta. delta: ProbCover's ball radius
    (Euclidean, on unit rows: 0 < delta <= 2) when given, in place of the purity rule (the authors' code
    takes it as a parameter; the rule gives tiny balls on embeddings whose classes touch).

    ValueError (one line) on an unknown strategy, a malformed array or mask, a zero or non-finite row,
    budget < 1 or above the number of candidates, purity_clusters outside [2, N], delta outside (0, 2]; GraphTooLargeError
    (a ValueError) when ProbCover's delta would give more than 200M edges.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    start = time.perf_counter()
    x, copied = check_embeddings(embeddings)
    n = len(x)
    labelled = mask_or_default(labelled, n, "labelled", np.zeros(n, bool))
    candidates = mask_or_default(candidates, n, "candidates", ~labelled) & ~labelled  # labelled rows are never picked
    budget = check_budget(budget, candidates)
    if strategy == "probcover" and not 2 <= purity_clusters <= n:
        raise ValueError(f"purity_clusters must be between 2 and the {n} embedding rows, got {purity_clusters}")
    if delta is not None and not 0 < delta <= 2:
        raise ValueError(f"delta must be in (0, 2] (distances between unit rows), got {delta}")
    clusters: np.ndarray | None = None
    details: dict = {}
    if strategy == "random":
        checked_norms(x)  # the same inputs fail for every strategy, though random never reads them
        picks = random_picks(candidates, budget, seed)
    else:
        with threads_for(float(n) * n * x.shape[1]):  # an all-pairs bound: tiny inputs run on one thread throughout
            if strategy == "kcenter":
                picks, details = kcenter_greedy(unit_rows(x, in_place=copied), budget, labelled, candidates)
            elif strategy == "typiclust":
                picks, clusters, details = typiclust(unit_rows(x, in_place=copied), budget, labelled, candidates, seed)
            else:
                picks, clusters, details = probcover(
                    unit_rows(x, in_place=copied), budget, labelled, candidates, seed, purity_clusters, delta
                )
    # Every strategy's contract, checked once here: a broken pick must not reach the annotators.
    if len(picks) != budget or len(np.unique(picks)) != budget or not candidates[picks].all():
        raise RuntimeError(f"{strategy} broke its contract: {len(picks)} picks, {len(np.unique(picks))} distinct, not all candidates")
    summary = {
        "strategy": strategy,
        "n": n,
        "dim": x.shape[1],
        "budget": budget,
        "labelled": int(labelled.sum()),
        "candidates": int(candidates.sum()),
    }
    details = {**summary, **details, "seconds_total": round(time.perf_counter() - start, 3)}
    return Selection(picks.astype(np.int64), np.full(budget, -1, np.int64) if clusters is None else clusters.astype(np.int64), details)
