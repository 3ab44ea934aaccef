"""What every selection strategy shares: the result type and the checks of `select`'s inputs (pure numpy)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Rows are normalised in blocks: a whole [N, D] temporary (x * x, x / norm) would double the memory of
# a 1M x 512 float32 matrix (2 GB) for the length of one line.
ROW_BLOCK = 65_536
# Rows whose norm is this close to 1 are used as they are (no normalised copy of the matrix).
UNIT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Selection:
    indices: np.ndarray  # int64 [B] positions into the embedding rows, in pick order, unique
    clusters: np.ndarray  # int64 [B] the cluster each pick stands for (grouping for a contact sheet); -1 where the strategy has none
    details: dict[str, Any] = field(default_factory=dict)  # what a report prints (K, delta, purity, covered fraction, seconds per phase)


def row_norms(x: np.ndarray) -> np.ndarray:
    """float32 [N]: the L2 norm of each row of x [N, D], computed block by block."""
    norms = np.empty(len(x), np.float32)
    for lo in range(0, len(x), ROW_BLOCK):
        block = x[lo : lo + ROW_BLOCK]
        norms[lo : lo + ROW_BLOCK] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return norms


def checked_norms(x: np.ndarray) -> np.ndarray:
    """float32 [N] row norms of x [N, D]; ValueError naming the first row that is all zeros or not finite."""
    norms = row_norms(x)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
    if len(bad):
        row = int(bad[0])
        what = "all zeros" if norms[row] == 0 else "not finite"
        raise ValueError(f"embedding row {row} is {what} ({len(bad)} such row(s)): it has no direction to normalise")
    return norms


def unit_rows(x: np.ndarray, in_place: bool = False) -> np.ndarray:
    """float32 [N, D] C-contiguous, every row of x scaled to unit L2 norm: x itself when it already is,
    else a copy (x itself, scaled, when in_place: for an array the caller already copied)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = checked_norms(x)
    if np.all(np.abs(norms - 1) <= UNIT_TOLERANCE):
        return x
    out = x if in_place else np.empty_like(x)
    for lo in range(0, len(x), ROW_BLOCK):
        np.divide(x[lo : lo + ROW_BLOCK], norms[lo : lo + ROW_BLOCK, None], out=out[lo : lo + ROW_BLOCK])
    return out


def check_embeddings(embeddings: np.ndarray) -> tuple[np.ndarray, bool]:
    """(the embeddings as a C-contiguous float32 [N, D] array, whether that is a copy); ValueError unless
    2-d with at least one row and column."""
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"embeddings must be a 2-d array [N, D] with N, D >= 1, got shape {x.shape}")
    converted = np.ascontiguousarray(x, dtype=np.float32)
    return converted, converted is not x and not np.shares_memory(converted, x)


def mask_or_default(mask: np.ndarray | None, n: int, name: str, default: np.ndarray) -> np.ndarray:
    """A bool [n] copy of `mask` (`default` when None); ValueError unless it is a bool array of shape (n,).

    A bool dtype is required: an index array of length n would otherwise be read as a mask."""
    if mask is None:
        return default.copy()
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.shape != (n,):
        raise ValueError(f"{name} must be a bool mask of shape ({n},) (one per embedding row), got {mask.dtype} {mask.shape}")
    return mask.copy()


def check_budget(budget: int, candidates: np.ndarray) -> int:
    """budget as an int; ValueError unless 1 <= budget <= the number of candidate rows."""
    available = int(candidates.sum())
    if isinstance(budget, bool) or int(budget) != budget:
        raise ValueError(f"budget must be a whole number, got {budget!r}")
    if budget < 1 or budget > available:
        raise ValueError(f"budget must be between 1 and the {available} candidate rows (not labelled, pickable), got {budget}")
    return int(budget)
