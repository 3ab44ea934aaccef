"""The exactly-once ledger of a pretraining run (pure torch, no Ray).

Per epoch it records how many samples were trained and a sketch of which: for each of two linear
hashes h_k(i) = (a_k * i + b_k) mod P over the sample index i (P = 2^31 - 1, a prime), the sum of
h_k over every trained sample, mod P. The sketch is O(1) in memory and adds up across workers
with an all-reduce. Compared with the sketch of the set every sample exactly once (minus the
quarantined ones), it shows:

- samples lost or trained twice in total: the count differs;
- one sample trained twice and another lost (same count): the sums differ by a_k (i - j) != 0
  mod P, always, since P is prime; many such errors cancel in both sums only with probability
  about 1/P^2.

The ledger of every finished epoch is saved in the checkpoint's meta.json, so the committed state
after a worker crash, a node loss or a killed driver can be checked: a redone epoch is counted
from its start in the new attempt, and an epoch that never reached a checkpoint is not in it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

PRIME = 2**31 - 1
# (a, b) of the two hashes: fixed, so ledgers of different runs and attempts compare.
HASHES = ((1_103_515_245 % PRIME, 12_345), (69_069, 1_013_904_223 % PRIME))


def sketch_of(indices: torch.Tensor) -> torch.Tensor:
    """int64 [B] sample indices (0 <= i < 2^31) -> int64 [3]: count, sum h_1 mod P, sum h_2 mod P.

    Every product a * i stays below 2^62 and a batch's sum below 2^63 for B < 2^31, so int64 never overflows.
    """
    i = indices.to(torch.int64)
    sums = [((a * i + b) % PRIME).sum() % PRIME for a, b in HASHES]
    return torch.stack([torch.tensor(len(i), dtype=torch.int64, device=i.device), *sums])


def combine(*sketches: torch.Tensor) -> torch.Tensor:
    """The sketch of the union (as multisets) of what the sketches describe."""
    total = torch.stack(list(sketches)).sum(0)
    total[1:] %= PRIME
    return total


def expected_sketch(num_samples: int, excluded: Iterable[int] = ()) -> torch.Tensor:
    """The sketch of 0..num_samples-1, each exactly once, without the `excluded` (quarantined) indices."""
    keep = torch.ones(num_samples, dtype=torch.bool)
    keep[torch.as_tensor(sorted(set(excluded)), dtype=torch.int64)] = False
    return sketch_of(torch.arange(num_samples)[keep])


def entry(epoch: int, sketch: torch.Tensor, quarantined_ids: list[str]) -> dict:
    """One epoch's ledger line, as saved in meta.json."""
    count, h1, h2 = (int(v) for v in sketch)
    return {"epoch": epoch, "samples": count, "sketch": [h1, h2], "quarantined": sorted(quarantined_ids)}


def audit(ledger: list[dict], num_samples: int, quarantined_indices: Iterable[int] = ()) -> list[dict]:
    """Per epoch: samples trained, expected, their difference, and whether the sketch says every
    non-quarantined sample was trained exactly once ("exactly_once")."""
    expected = expected_sketch(num_samples, quarantined_indices)
    rows = []
    for e in ledger:
        got = torch.tensor([e["samples"], *e["sketch"]], dtype=torch.int64)
        rows.append(
            {
                "epoch": e["epoch"],
                "samples": e["samples"],
                "expected": int(expected[0]),
                "difference": e["samples"] - int(expected[0]),
                "exactly_once": bool(torch.equal(got, expected)),
            }
        )
    return rows
