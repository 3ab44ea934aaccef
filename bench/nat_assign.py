"""NAT reassignment cost vs one training step of the backbone, side by side in one run.

For each batch size B: time of one reassignment (score matmul + Hungarian + table update, as in
NoiseAsTargets.step_loss) divided by one forward+backward of the backbone on the same batch.
Target: < 0.1 at B = 256. Uses the MNIST config's backbone and N = 60,000 targets.

    .venv/bin/python bench/nat_assign.py
"""

from __future__ import annotations

import time

import torch

from rayssl.config import PretrainConfig, load_config
from rayssl.methods.nat import NATHead, NoiseAsTargets, nat_loss
from rayssl.models import build_backbone

N = 60_000


def best_of(fn, repeats: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    cfg = load_config(PretrainConfig, "configs/nat_mnist.yaml")
    torch.manual_seed(0)
    net = NATHead(build_backbone(cfg.model, cfg.data.channels, cfg.data.image_size), cfg.model.embed_dim, cfg.nat.target_dim)
    optimizer = torch.optim.AdamW(net.parameters())
    nat = NoiseAsTargets(N, cfg.nat.target_dim, seed=0)
    print(
        f"backbone: {cfg.model.name} width {cfg.model.width}, {cfg.data.image_size}px, N={N}, d={cfg.nat.target_dim}, threads={torch.get_num_threads()}"
    )
    print("| B | reassign ms | fwd+bwd ms | ratio |\n|---:|---:|---:|---:|")
    for b in (128, 256, 512, 1024):
        x = torch.randn(b, cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
        indices = torch.randperm(N)[:b]
        with torch.no_grad():
            z = net(x)

        def step() -> None:
            optimizer.zero_grad()
            loss = nat_loss(net(x), nat.targets(nat.table[indices]))  # noqa: B023  (timed within this iteration)
            loss.backward()
            optimizer.step()

        def reassignment() -> None:
            nat.step_loss(z, indices, True, lambda t: t[None], batch_capacity=b)  # noqa: B023  (timed within this iteration)

        t_step, t_assign = best_of(step), best_of(reassignment)
        print(f"| {b} | {1e3 * t_assign:.1f} | {1e3 * t_step:.1f} | {t_assign / t_step:.3f} |", flush=True)
    assert torch.equal(torch.sort(nat.table).values, torch.arange(N, dtype=torch.int32))


if __name__ == "__main__":
    main()
