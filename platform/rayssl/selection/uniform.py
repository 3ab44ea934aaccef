"""Random selection: `budget` candidate rows drawn uniformly without replacement, seeded (pure numpy)."""

from __future__ import annotations

import numpy as np


def random_picks(candidates: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """int64 [budget] distinct rows where candidates (bool [N]) is True, in draw order."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.flatnonzero(candidates), budget, replace=False).astype(np.int64)
