"""Cold-start selection (rayssl.selection): TypiClust and ProbCover pick one typical image per cluster and
steer away from what is labelled, k-center greedy matches brute force and its 2x bound, ProbCover's delta
is the purity rule's, random is seeded, bad inputs fail in one line. Small arrays, no Ray, no torch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from rayssl import selection
from rayssl.selection import neighbours
from rayssl.selection.neighbours import GraphTooLargeError, RadiusGraph, RowIndex, ball_recall, radius_graph
from rayssl.selection.probcover import greedy_cover, purity_delta
from rayssl.selection.typiclust import typicality

PER_CLUSTER = 200


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def three_clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 [603, 8] unit rows, truth int [603]): three Gaussian clusters of 200 around e0 + 0.6 e_j
    (sigma 0.15 per dimension: neighbouring clusters nearly touch, so ProbCover's delta is below a
    cluster's width) and three outliers (-1) on the far side of the sphere."""
    rng = np.random.default_rng(seed)
    eye = np.eye(8, dtype=np.float32)
    blobs = [eye[0] + 0.6 * eye[j] + 0.15 * rng.standard_normal((PER_CLUSTER, 8)).astype(np.float32) for j in (1, 2, 3)]
    outliers = np.stack([-eye[0] + eye[j] for j in (4, 5, 6)])
    return unit(np.concatenate([*blobs, outliers])), np.repeat([0, 1, 2, -1], [PER_CLUSTER] * 3 + [3])


def central(x: np.ndarray, truth: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """bool [N]: the rows among the `fraction` of their cluster closest to its (normalised) mean."""
    out = np.zeros(len(x), bool)
    for c in (0, 1, 2):
        members = np.flatnonzero(truth == c)
        centre = unit(x[members].mean(axis=0, keepdims=True))
        closest = np.argsort(np.linalg.norm(x[members] - centre, axis=1))[: int(fraction * len(members))]
        out[members[closest]] = True
    return out


@pytest.mark.parametrize("strategy", ["typiclust", "probcover"])
def test_one_typical_pick_per_cluster_never_an_outlier(strategy):
    x, truth = three_clusters()
    picked = selection.select(strategy, x, 3, purity_clusters=3)
    assert sorted(truth[picked.indices].tolist()) == [0, 1, 2]  # one per cluster, no outlier (-1)
    assert central(x, truth)[picked.indices].all()  # each among the closest 10% to its cluster's centre
    assert picked.indices.dtype == np.int64 and picked.clusters.dtype == np.int64
    assert len(set(picked.clusters.tolist())) == 3  # each pick stands for its own cluster


# TypiClust makes labelled + budget clusters: 5 labelled would split each cluster in two or three and
# leave parts of cluster 0 without a labelled member. ProbCover needs enough labelled balls to cover it.
@pytest.mark.parametrize(("strategy", "n_labelled"), [("typiclust", 1), ("probcover", 5)])
def test_picks_avoid_the_labelled_cluster(strategy, n_labelled):
    x, truth = three_clusters()
    labelled = np.zeros(len(x), bool)
    labelled[np.random.default_rng(1).choice(np.flatnonzero(truth == 0), n_labelled, replace=False)] = True
    picked = selection.select(strategy, x, 2, labelled=labelled, purity_clusters=3)
    assert sorted(truth[picked.indices].tolist()) == [1, 2]
    assert not labelled[picked.indices].any()


@pytest.mark.parametrize("strategy", selection.STRATEGIES)
def test_only_candidates_are_picked(strategy):
    x, truth = three_clusters()
    labelled = np.zeros(len(x), bool)
    labelled[:3] = True
    candidates = truth != 1  # cluster 1 plays a validation set: in the data, never picked
    candidates[1] = True  # labelled and candidate: labelled wins
    picked = selection.select(strategy, x, 6, labelled=labelled, candidates=candidates, purity_clusters=3)
    assert len(np.unique(picked.indices)) == 6
    assert (truth[picked.indices] != 1).all() and not labelled[picked.indices].any()


def test_random_is_seeded_and_marks_no_cluster():
    x, _ = three_clusters()
    a, b, c = (selection.select("random", x, 20, seed=s) for s in (7, 7, 8))
    assert a.indices.tolist() == b.indices.tolist() and a.indices.tolist() != c.indices.tolist()
    assert (a.clusters == -1).all()


def brute_kcenter(x: np.ndarray, budget: int, labelled: np.ndarray) -> list[int]:
    """k-center greedy from the full distance matrix (labelled rows non-empty)."""
    dist = cdist(x.astype(np.float64), x.astype(np.float64))
    nearest, picks = dist[:, labelled].min(axis=1), []
    for _ in range(budget):
        score = np.where(labelled, -1.0, nearest)
        score[picks] = -1.0
        picks.append(int(np.argmax(score)))
        nearest = np.minimum(nearest, dist[:, picks[-1]])
    return picks


def test_kcenter_radius_and_picks_match_brute_force():
    rng = np.random.default_rng(3)
    x = unit(rng.standard_normal((300, 8)))
    labelled = np.zeros(300, bool)
    labelled[rng.choice(300, 10, replace=False)] = True
    picked = selection.select("kcenter", x, 7, labelled=labelled)
    assert picked.indices.tolist() == brute_kcenter(x, 7, labelled)
    centres = np.concatenate([picked.indices, np.flatnonzero(labelled)])
    radius = cdist(x.astype(np.float64), x[centres].astype(np.float64)).min(axis=1).max()
    assert picked.details["radius"] == pytest.approx(radius, rel=1e-5)
    assert picked.details["start"] == "labelled"


@pytest.mark.parametrize("seed", range(4))
def test_kcenter_within_twice_the_optimal_radius(seed):
    x = unit(np.random.default_rng(seed).standard_normal((12, 3)))
    dist = cdist(x.astype(np.float64), x.astype(np.float64))
    optimum = min(dist[:, list(c)].min(axis=1).max() for c in itertools.combinations(range(12), 3))
    picked = selection.select("kcenter", x, 3)
    assert picked.details["start"] == "nearest_mean"
    assert optimum - 1e-6 <= picked.details["radius"] <= 2 * optimum + 1e-6


def test_embeddings_are_normalised_inside_select():
    x, _ = three_clusters()
    scaled = x * np.random.default_rng(4).uniform(0.1, 10, (len(x), 1)).astype(np.float32)
    assert selection.select("kcenter", scaled, 5).indices.tolist() == selection.select("kcenter", x, 5).indices.tolist()
    assert (
        selection.select("typiclust", scaled.astype(np.float64), 3).indices.tolist() == selection.select("typiclust", x, 3).indices.tolist()
    )


def test_delta_is_the_largest_with_purity_095():
    """Unit circle: cluster 1 is one point at angle 0, cluster 0 points at angles 0.01 i (i = 1..99): a row's
    distance to the other cluster is 2 sin(0.01 i / 2) (2 sin(0.005) for the lone point). 5 of 100 rows may
    be impure: the lone point and i = 1..4, so delta = 2 sin(0.025), where exactly 95% are pure."""
    angles = np.concatenate([[0.0], 0.01 * np.arange(1, 100)])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    pseudo = np.array([1] + [0] * 99)
    delta, to_other, found_by = purity_delta(x, pseudo, RowIndex.build(x, 0), np.random.default_rng(0))
    purity = float(np.mean(to_other >= delta))
    # rows near the lone point see it among their 50 neighbours; rows far along the arc need the cluster search
    assert found_by["neighbours"] > 0 and found_by["cluster_search"] > 0 and sum(found_by.values()) == 100
    assert delta == pytest.approx(2 * np.sin(0.025), rel=1e-4)

    def brute_purity(radius: float) -> float:  # open balls, as faiss's range search
        dist = cdist(x.astype(np.float64), x.astype(np.float64))
        return float(np.mean([(pseudo[dist[i] < radius] == pseudo[i]).all() for i in range(len(x))]))

    assert brute_purity(delta) == purity == pytest.approx(0.95)
    assert brute_purity(delta * 1.001) < 0.95


def test_delta_searches_the_other_clusters_when_no_neighbour_is_of_another_cluster():
    """Two clusters of 300 rows far apart: no row sees the other cluster among its 50 neighbours, so every
    row's distance to it comes from the per-cluster search, and delta is their exact 5th percentile."""
    rng = np.random.default_rng(5)
    x = unit(np.concatenate([np.eye(4)[i] + 0.1 * rng.standard_normal((300, 4)) for i in (0, 1)]))
    pseudo = np.repeat([0, 1], 300)
    delta, to_other, found_by = purity_delta(x, pseudo, RowIndex.build(x, 0), np.random.default_rng(0))
    purity = float(np.mean(to_other >= delta))
    assert found_by == {"neighbours": 0, "cluster_search": 600}
    between = cdist(x.astype(np.float64), x.astype(np.float64))[pseudo[:, None] != pseudo[None, :]].reshape(600, 300).min(axis=1)
    assert delta == pytest.approx(np.sort(between)[30], rel=1e-5) and purity == pytest.approx(0.95)


def test_a_given_delta_replaces_the_purity_rule_and_its_purity_is_measured():
    x, truth = three_clusters()
    ruled = selection.select("probcover", x, 3, purity_clusters=3).details
    given = selection.select("probcover", x, 3, purity_clusters=3, delta=0.05).details
    assert ruled["delta_from"] == "purity rule" and given["delta_from"] == "given"
    assert given["delta"] == 0.05 and given["purity_rule_delta"] == pytest.approx(ruled["delta"])
    assert given["mean_degree"] < ruled["mean_degree"]  # smaller balls than the rule's
    assert given["purity"] >= ruled["purity"]  # a smaller radius is never less pure


def test_ball_recall_counts_the_rows_a_graph_lost():
    rng = np.random.default_rng(8)
    x = unit(rng.standard_normal((500, 3)))
    graph = radius_graph(x, RowIndex.build(x, 0), 0.5, np.random.default_rng(0))
    assert ball_recall(x, graph, np.random.default_rng(1), rows=500) == 1.0
    keep_first_half = [graph.neighbours[a : a + (b - a) // 2] for a, b in zip(graph.indptr[:-1], graph.indptr[1:], strict=True)]
    halved = np.concatenate([[0], np.cumsum([len(k) for k in keep_first_half])])
    truncated = RadiusGraph(halved, np.concatenate(keep_first_half), graph.radius)
    expected = truncated.edges / graph.edges
    assert ball_recall(x, truncated, np.random.default_rng(1), rows=500) == pytest.approx(expected)


def brute_cover(x: np.ndarray, radius: float, budget: int, labelled: np.ndarray) -> list[int]:
    balls = cdist(x.astype(np.float64), x.astype(np.float64)) < radius
    covered, picks = balls[labelled].any(axis=0) | labelled, []
    for _ in range(budget):
        gain = (balls & ~covered).sum(axis=1)
        gain[labelled] = -1
        gain[picks] = -1
        picks.append(int(np.argmax(gain)))
        covered |= balls[picks[-1]]
    return picks


def test_greedy_cover_matches_brute_force_and_falls_back_to_random():
    rng = np.random.default_rng(6)
    x = unit(rng.standard_normal((400, 3)))
    labelled = np.zeros(400, bool)
    labelled[:4] = True
    graph = radius_graph(x, RowIndex.build(x, 0), 0.5, rng)
    picks, details = greedy_cover(graph, 6, labelled, ~labelled, np.random.default_rng(0))
    assert picks.tolist() == brute_cover(x, 0.5, 6, labelled)
    assert details["random_fallback"] == 0 and details["covered_fraction"] > details["covered_before"] > 0
    assert details["gain_corrections"] == 0  # the exact graph is symmetric: every gain kept up to date
    # a budget past full coverage: the picks left are random candidates
    picks, details = greedy_cover(graph, 300, labelled, ~labelled, np.random.default_rng(0))
    assert details["covered_fraction"] == 1.0 and details["random_fallback"] > 0
    assert len(set(picks.tolist())) == 300 and not labelled[picks].any()


def test_radius_graph_exact_and_ivf(monkeypatch):
    rng = np.random.default_rng(7)
    x = unit(rng.standard_normal((30, 16))[rng.integers(0, 30, 2000)] + 0.2 * rng.standard_normal((2000, 16)))
    exact = radius_graph(x, RowIndex.build(x, 0), 0.5, np.random.default_rng(0))
    within = cdist(x.astype(np.float64), x.astype(np.float64)) < 0.5
    np.fill_diagonal(within, False)  # a row is left out of its own list
    assert np.diff(exact.indptr).tolist() == within.sum(axis=1).tolist()
    assert all(
        set(exact.neighbours[exact.indptr[i] : exact.indptr[i + 1]].tolist()) == set(np.flatnonzero(within[i]).tolist())
        for i in range(0, 2000, 97)
    )
    monkeypatch.setattr(neighbours, "EXACT_MAX_ROWS", 100)
    index = RowIndex.build(x, 0)
    assert index.probes is not None and index.description.startswith("IVF")
    approx = radius_graph(x, index, 0.5, np.random.default_rng(0))
    exact_pairs, approx_pairs = (np.repeat(np.arange(2000), np.diff(g.indptr)) * 2000 + g.neighbours for g in (exact, approx))
    assert exact.edges > 50_000 and np.isin(approx_pairs, exact_pairs).all()  # no false edge
    assert approx.edges >= 0.95 * exact.edges  # recall
    monkeypatch.setattr(neighbours, "EDGE_CAP", 1000)
    with pytest.raises(GraphTooLargeError, match="too large"):
        radius_graph(x, index, 0.5, np.random.default_rng(0))


def test_typicality_is_one_over_mean_distance_to_k_nearest():
    x, truth = three_clusters()
    members = np.flatnonzero(truth == 0)
    scored = members[:15]
    dist = np.sort(cdist(x[scored].astype(np.float64), x[members].astype(np.float64)), axis=1)[:, 1:21]  # itself left out
    assert typicality(x, members, scored, np.random.default_rng(0)) == pytest.approx(1 / dist.mean(axis=1), rel=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": 0}, "budget must be between 1 and the 603"),
        ({"budget": 604}, "budget must be between 1 and the 603"),
        ({"budget": 2, "candidates": np.zeros(603, bool) | (np.arange(603) == 5)}, "between 1 and the 1 candidate"),
        ({"labelled": np.zeros(602, bool)}, r"labelled must be a bool mask of shape \(603,\)"),
        ({"candidates": np.arange(603)}, "candidates must be a bool mask"),
        ({"strategy": "coreset"}, "strategy must be one of random, kcenter, typiclust, probcover"),
        ({"strategy": "probcover", "purity_clusters": 1}, "purity_clusters must be between 2"),
        ({"strategy": "probcover", "delta": 2.5}, r"delta must be in \(0, 2\]"),
        ({"embeddings": np.zeros(8, np.float32)}, r"2-d array \[N, D\]"),
    ],
)
def test_bad_inputs_fail_in_one_line(kwargs, message):
    x, _ = three_clusters()
    args = {"strategy": "kcenter", "embeddings": x, "budget": 3, **kwargs}
    with pytest.raises(ValueError, match=message) as caught:
        selection.select(args.pop("strategy"), args.pop("embeddings"), args.pop("budget"), **args)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("strategy", selection.STRATEGIES)
def test_a_zero_row_is_named(strategy):
    x, _ = three_clusters()
    x[17] = 0
    with pytest.raises(ValueError, match="embedding row 17 is all zeros"):
        selection.select(strategy, x, 3)
