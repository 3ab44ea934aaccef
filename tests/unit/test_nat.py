import torch
import torch.nn.functional as F

from rayssl.methods.nat import (
    NoiseAsTargets,
    merge_updates,
    nat_loss,
    reassign,
    unit_sphere_targets,
)


def test_loss_matches_hand_computation():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    # sample 0: (1-0)^2 + (0-1)^2 = 2; sample 1: 0 -> mean 1.0
    assert nat_loss(z, t).item() == 1.0


def test_targets_are_unit_norm_and_regenerable():
    a, b = unit_sphere_targets(100, 16, seed=3), unit_sphere_targets(100, 16, seed=3)
    assert torch.equal(a, b)
    assert torch.allclose(a.norm(dim=1), torch.ones(100), atol=1e-6)
    assert not torch.equal(a, unit_sphere_targets(100, 16, seed=4))


def test_reassign_is_optimal_permutation_of_held_targets():
    targets = torch.eye(3)
    z = torch.eye(3)[[2, 0, 1]]  # sample i points at target row (2, 0, 1)[i]
    assigned = torch.tensor([0, 1, 2])
    new = reassign(z, assigned, targets)
    assert new.tolist() == [2, 0, 1]


def test_reassign_lowers_batch_cost_and_keeps_table_a_bijection():
    torch.manual_seed(0)
    nat = NoiseAsTargets(num_samples=200, target_dim=8, seed=0)
    indices = torch.randperm(200)[:64]
    z = F.normalize(torch.randn(64, 8), dim=1)
    before = nat_loss(z, nat.targets[nat.table[indices]])
    loss, changed = nat.step_loss(z, indices, True, lambda t: t[None], batch_capacity=64)
    assert loss < before and changed > 0
    assert torch.equal(torch.sort(nat.table).values, torch.arange(200))  # still a permutation
    untouched = torch.ones(200, dtype=torch.bool)
    untouched[indices] = False
    assert torch.equal(nat.table[untouched], NoiseAsTargets(200, 8, 0).table[untouched])


def test_merge_of_disjoint_worker_updates_matches_sequential_application():
    """Two workers reassign disjoint batches; the gathered merge equals applying both locally."""
    torch.manual_seed(1)
    workers = [NoiseAsTargets(50, 4, seed=7) for _ in range(2)]
    batches = [torch.arange(0, 20), torch.arange(20, 45)]  # 45 is a short last batch: padded
    zs = [F.normalize(torch.randn(len(b), 4), dim=1) for b in batches]
    news = [reassign(z, workers[0].table[b], workers[0].targets) for z, b in zip(zs, batches)]
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
    assert torch.equal(torch.sort(expected).values, torch.arange(50))


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
    nat.table = torch.tensor([3, 1, 2, 0, 4, 5, 6, 7, 9, 8])
    other = NoiseAsTargets(10, 4, 0)
    other.load_state_dict(nat.state_dict())
    assert torch.equal(other.table, nat.table)
    try:
        NoiseAsTargets(11, 4, 0).load_state_dict(nat.state_dict())
    except ValueError as exc:
        assert "10 entries" in str(exc)
    else:
        raise AssertionError("a table of the wrong size was loaded")


def test_reassign_keeps_assignment_when_features_are_not_finite():
    assigned = torch.tensor([2, 0, 1])
    z = torch.full((3, 3), float("nan"))
    assert torch.equal(reassign(z, assigned, torch.eye(3)), assigned)
