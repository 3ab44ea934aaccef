"""The exactly-once ledger's sketch (rayssl.train.ledger) against hand-computed values."""

from __future__ import annotations

import torch

from rayssl.train import ledger
from rayssl.train.ledger import HASHES, PRIME


def test_sketch_by_hand():
    (a1, b1), (a2, b2) = HASHES
    got = ledger.sketch_of(torch.tensor([0, 2, 5]))
    assert got.tolist() == [3, (b1 + (2 * a1 + b1) + (5 * a1 + b1)) % PRIME, (b2 + (2 * a2 + b2) + (5 * a2 + b2)) % PRIME]


def test_workers_add_up_to_the_whole_epoch():
    rank0, rank1 = ledger.sketch_of(torch.tensor([4, 0, 2])), ledger.sketch_of(torch.tensor([1, 5, 3]))
    assert torch.equal(ledger.combine(rank0, rank1), ledger.expected_sketch(6))


def test_audit_finds_loss_duplicates_and_a_swap_and_excuses_quarantine():
    def line(indices: list[int]) -> dict:
        return ledger.entry(0, ledger.sketch_of(torch.tensor(indices)), [])

    rows = ledger.audit([line([0, 1, 2, 3]), line([0, 1, 2]), line([0, 1, 2, 3, 3]), line([0, 1, 2, 2])], 4)
    assert [r["exactly_once"] for r in rows] == [True, False, False, False]
    assert [r["difference"] for r in rows] == [0, -1, 1, 0]  # the swap (3 lost, 2 twice) keeps the count
    (excused,) = ledger.audit([line([0, 1, 3])], 4, quarantined_indices=[2])
    assert excused["exactly_once"] and excused["expected"] == 3
