import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rayssl.methods.nat import NoiseAsTargets, merge_updates, nat_loss, reassign, targets_for


def test_loss_matches_hand_computation():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    # sample 0: (1-0)^2 + (0-1)^2 = 2; sample 1: 0 -> mean 1.0
    assert nat_loss(z, t).item() == 1.0


def test_targets_are_unit_norm_and_regenerable_row_by_row():
    rows = torch.arange(100)
    a = targets_for(rows, 16, seed=3)
    assert torch.equal(a, targets_for(rows, 16, seed=3))
    assert torch.allclose(a.norm(dim=1), torch.ones(100), atol=1e-6)
    assert not torch.equal(a, targets_for(rows, 16, seed=4))
    # a row's target does not depend on the other rows asked for, nor on how large N is
    assert torch.equal(targets_for(torch.tensor([1_279_999, 7]), 16, 3)[1], a[7])
    assert not torch.equal(a[0], a[1])


def test_targets_are_uniform_on_the_sphere():
    t = targets_for(torch.arange(20_000), 8, seed=0).numpy().astype(np.float64)
    # uniform on S^7: zero mean, covariance I/8, odd dimensions allowed too
    assert np.abs(t.mean(0)).max() < 0.01
    assert np.abs(np.cov(t.T) - np.eye(8) / 8).max() < 0.005
    assert targets_for(torch.arange(5), 7, 0).shape == (5, 7)


def test_reassign_is_optimal_permutation_of_held_targets():
    targets = torch.eye(3)
    z = torch.eye(3)[[2, 0, 1]]  # sample i points at target row (2, 0, 1)[i]
    assigned = torch.tensor([0, 1, 2])
    new = reassign(z, assigned, targets[assigned])
    assert new.tolist() == [2, 0, 1]


def test_reassign_lowers_batch_cost_and_keeps_table_a_bijection():
    torch.manual_seed(0)
    nat = NoiseAsTargets(num_samples=200, target_dim=8, seed=0)
    indices = torch.randperm(200)[:64]
    z = F.normalize(torch.randn(64, 8), dim=1)
    before = nat_loss(z, nat.targets(nat.table[indices]))
    loss, changed = nat.step_loss(z, indices, True, lambda t: t[None], batch_capacity=64)
    assert loss < before and changed > 0
    assert nat.table.dtype == torch.int32  # 4 bytes per sample: the whole NAT state
    assert torch.equal(torch.sort(nat.table).values, torch.arange(200, dtype=torch.int32))  # still a permutation
    untouched = torch.ones(200, dtype=torch.bool)
    untouched[indices] = False
    assert torch.equal(nat.table[untouched], NoiseAsTargets(200, 8, 0).table[untouched])


def test_merge_of_disjoint_worker_updates_matches_sequential_application():
    """Two workers reassign disjoint batches; the gathered merge equals applying both locally."""
    torch.manual_seed(1)
    workers = [NoiseAsTargets(50, 4, seed=7) for _ in range(2)]
    batches = [torch.arange(0, 20), torch.arange(20, 45)]  # 45 is a short last batch: padded
    zs = [F.normalize(torch.randn(len(b), 4), dim=1) for b in batches]
    news = [reassign(z, workers[0].table[b].long(), workers[0].targets(workers[0].table[b])).int() for z, b in zip(zs, batches)]
    capacity = 25
    pad = lambda t: torch.cat([t, torch.full((capacity - len(t),), -1)])  # noqa: E731
    gathered_idx = torch.stack([pad(b) for b in batches])
    gathered_new = torch.stack([pad(n) for n in news])
    for w in workers:
        merge_updates(w.table, gathered_idx, gathered_new)
    expected = NoiseAsTargets(50, 4, seed=7).table
    for b, n in zip(batches, news):
        expected[b] = n
    assert all(torch.equal(w.table, expected) for w in workers)  # identical everywhere
    assert torch.equal(torch.sort(expected).values, torch.arange(50, dtype=torch.int32))


def test_overlapping_updates_are_refused():
    table = torch.arange(4)
    try:
        merge_updates(table, torch.tensor([[0, 1], [1, 2]]), torch.tensor([[1, 0], [2, 1]]))
    except RuntimeError as exc:
        assert "overlap" in str(exc)
    else:
        raise AssertionError("overlapping updates were applied")
    assert torch.equal(table, torch.arange(4))


def test_state_dict_round_trip_and_size_check():
    nat = NoiseAsTargets(10, 4, 0)
    nat.table = torch.tensor([3, 1, 2, 0, 4, 5, 6, 7, 9, 8], dtype=torch.int32)
    other = NoiseAsTargets(10, 4, 0)
    other.load_state_dict(nat.state_dict())
    assert torch.equal(other.table, nat.table)
    with pytest.raises(ValueError, match="targets version 1"):  # a checkpoint of the stored-matrix release
        other.load_state_dict({"table": nat.table.long()})
    try:
        NoiseAsTargets(11, 4, 0).load_state_dict(nat.state_dict())
    except ValueError as exc:
        assert "10 entries" in str(exc)
    else:
        raise AssertionError("a table of the wrong size was loaded")


def test_reassign_keeps_assignment_when_features_are_not_finite():
    assigned = torch.tensor([2, 0, 1])
    z = torch.full((3, 3), float("nan"))
    assert torch.equal(reassign(z, assigned, torch.eye(3)[assigned]), assigned)
