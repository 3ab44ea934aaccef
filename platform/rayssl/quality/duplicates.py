"""Exact and near duplicates, and the train/test leaks among them: pure functions on signatures.

Candidates for near duplicates come from exact nearest neighbours over 49-number thumbnails
(scikit-learn, brute force in chunked matrix products); each candidate pair is then decided on the
full analysis images by `changed_fractions`. In 49 dimensions a ball tree prunes almost nothing:
on 10,000 thumbnails it took 7.7 s against 0.58 s brute force, and the MNIST leak check (70,000
images) spent over 10 minutes in it. Brute force is O(N^2) arithmetic but BLAS-fast up to a few
hundred thousand images; beyond that an approximate index would be the next step.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.neighbors import NearestNeighbors

from rayssl.quality.signatures import changed_fractions, thumbnails


@dataclass(frozen=True)
class NearDuplicateRule:
    neighbours: int = 10  # candidates per image from the thumbnail index
    max_thumbnail_distance: float = 0.6  # only skips hopeless pairs; changed_fractions decides
    max_changed_fraction: float = 0.05  # the decision (planted copies <= 0.035, see signatures.CHANGE_LEVELS)
    align_radius: int = 2


def exact_duplicate_groups(pixel_sha: list[str]) -> list[list[int]]:
    """Groups (positions, ascending) of two or more samples with the same decoded pixels."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, digest in enumerate(pixel_sha):
        by_hash[digest].append(i)
    return sorted(group for group in by_hash.values() if len(group) > 1)


def near_duplicate_pairs(
    analysis: np.ndarray, pixel_sha: list[str], rule: NearDuplicateRule = NearDuplicateRule()
) -> list[tuple[int, int, float]]:
    """(i, j, changed fraction) with i < j for near-duplicate pairs that are not exact duplicates.

    analysis: uint8 [N, S, S] analysis images (see signatures.signature).
    """
    n = len(analysis)
    if n < 2:
        return []
    thumbs = thumbnails(analysis)
    index = NearestNeighbors(n_neighbors=min(rule.neighbours + 1, n), algorithm="brute").fit(thumbs)
    distance, neighbour = index.kneighbors(thumbs)
    rows = np.repeat(np.arange(n), neighbour.shape[1])
    cols, dist = neighbour.ravel(), distance.ravel()
    keep = (rows != cols) & (dist <= rule.max_thumbnail_distance)
    pairs = np.unique(np.sort(np.stack([rows[keep], cols[keep]], axis=1), axis=1), axis=0)
    if len(pairs) == 0:
        return []
    sha = np.asarray(pixel_sha)
    pairs = pairs[sha[pairs[:, 0]] != sha[pairs[:, 1]]]  # exact duplicates are reported as such
    scores = (
        np.concatenate(
            [
                changed_fractions(analysis[chunk[:, 0]], analysis[chunk[:, 1]], rule.align_radius)
                for chunk in np.array_split(pairs, max(1, len(pairs) // 4096))
            ]
        )
        if len(pairs)
        else np.zeros(0)
    )
    near = scores <= rule.max_changed_fraction
    return [(int(i), int(j), float(s)) for (i, j), s in zip(pairs[near], scores[near])]


def duplicate_groups(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components (two or more members) of the graph of duplicate pairs over n samples."""
    if not pairs:
        return []
    i, j = np.asarray(pairs).T
    _, component = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
    groups: dict[int, list[int]] = defaultdict(list)
    for position in np.unique(np.concatenate([i, j])):
        groups[int(component[position])].append(int(position))
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def cross_split_pairs(pairs: list[tuple[int, int]], split: list[str]) -> list[tuple[int, int]]:
    """The duplicate pairs whose two samples sit in different splits (direct pairs only: chaining
    near duplicates through a group would pair images that are not alike themselves)."""
    return [(a, b) for a, b in pairs if split[a] != split[b]]
