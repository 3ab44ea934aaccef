"""NAT state per worker and reassignment cost against the corpus size N (ImageNet: 1.28 M).

For N = 60,000 (MNIST) and N = 1,281,167 (ImageNet-1k train) with d = 128: the bytes a worker holds
for NAT (the int32 assignment table; targets are regenerated from (seed, row)), the process's RSS
growth while building that state, what the old stored [N, d] float32 matrix would
take, and the milliseconds of one reassignment at B = 256 (targets of the batch's rows + Hungarian
+ table update), side by side in one run. Target: < 50 MB of NAT state at 1.28 M; reassign time
independent of N (ratio ~1).

    .venv/bin/python bench/nat_scale.py
"""

from __future__ import annotations

import time

import psutil
import torch
import torch.nn.functional as F

from rayssl.methods.nat import NoiseAsTargets

D, B = 128, 256


def rss_bytes() -> int:
    """This process's resident set size."""
    return psutil.Process().memory_info().rss


def reassign_ms(nat: NoiseAsTargets, n: int, repeats: int = 20) -> float:
    g = torch.Generator().manual_seed(0)
    times = []
    for _ in range(repeats):
        indices = torch.randperm(n, generator=g)[:B]
        z = F.normalize(torch.randn(B, D, generator=g), dim=1)
        start = time.perf_counter()
        nat.step_loss(z, indices, True, lambda t: t[None], batch_capacity=B)
        times.append(time.perf_counter() - start)
    return 1e3 * sorted(times)[len(times) // 2]  # median


def main() -> None:
    rows = []
    for n in (60_000, 1_281_167):
        before = rss_bytes()
        nat = NoiseAsTargets(n, D, seed=0)
        grown = rss_bytes() - before
        state = sum(t.numel() * t.element_size() for t in nat.state_dict().values())
        rows.append((n, state / 2**20, max(grown, 0) / 2**20, n * D * 4 / 2**20, reassign_ms(nat, n)))
    print(f"NAT, d = {D}, B = {B}, threads = {torch.get_num_threads()}")
    print("| N | NAT state per worker | RSS growth while building | a stored [N, d] float32 matrix | reassign at B = 256 |")
    print("|---:|---:|---:|---:|---:|")
    for n, state, grown, matrix, ms in rows:
        print(f"| {n:,} | {state:.1f} MB | {grown:.1f} MB | {matrix:.0f} MB | {ms:.2f} ms |")
    print(f"reassign ms ratio, N = 1.28 M / N = 60 k: {rows[1][4] / rows[0][4]:.2f}")


if __name__ == "__main__":
    main()
