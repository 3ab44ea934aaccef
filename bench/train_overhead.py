"""Ray Train's step against the same step in a plain torchrun-style DDP loop, side by side in one run.

Both run the identical loop body (`train_steps`): 2 processes, gloo, one thread each, the VGG-style
CNN at 32 px on a batch of in-memory tensors (no data loading at all), AdamW. The plain loop is
started with torch.multiprocessing and a FileStore rendezvous; the Ray Train loop by a TorchTrainer
with 2 workers (ray.train.torch.prepare_model wraps the model in DDP). Reported: median step time
of rank 0 after warm-up, and the ratio Ray Train / plain: each of --rounds Ray Train runs against
the two plain runs around it, then the median over rounds. Target: <= 1.05. Next to the wall-clock
step, the CPU time of the training thread per step (time.thread_time): equal CPU times with a
higher wall time mean the step waited for a core (Ray's own processes on a small machine), not
that Ray Train's step does more work.

    .venv/bin/python bench/train_overhead.py [--steps 60] [--batch 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from rayssl.models.backbones import SmallCNN

WARMUP = 5


def train_steps(steps: int, batch: int, wrap) -> list[tuple[float, float]]:
    """The shared loop: (wall seconds, thread CPU seconds) per optimiser step (after WARMUP steps).
    `wrap` puts the model in DDP."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = wrap(torch.nn.Sequential(SmallCNN(3, 32, 128), torch.nn.Linear(128, 10)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    times = []
    for step in range(WARMUP + steps):
        start, cpu_start = time.perf_counter(), time.thread_time()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if step >= WARMUP:
            times.append((time.perf_counter() - start, time.thread_time() - cpu_start))
    return times


def _plain_worker(rank: int, world: int, store: str, steps: int, batch: int, out: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    times = train_steps(steps, batch, torch.nn.parallel.DistributedDataParallel)
    if rank == 0:
        torch.save(times, out)
    dist.destroy_process_group()


def plain_ddp(steps: int, batch: int) -> list[tuple[float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.pt")
        mp.start_processes(_plain_worker, args=(2, os.path.join(tmp, "store"), steps, batch, out), nprocs=2, start_method="spawn")
        return torch.load(out)


def _ray_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    times = train_steps(config["steps"], config["batch"], lambda m: ray.train.torch.prepare_model(m))
    if ray.train.get_context().get_world_rank() == 0:  # Ray Train's Result carries checkpointed metrics only
        torch.save(times, config["out"])
    ray.train.report({})


def ray_train(steps: int, batch: int) -> list[tuple[float, float]]:
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    ray.init(address="local", num_cpus=2, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "times.pt")
            trainer = TorchTrainer(_ray_worker, train_loop_config={"steps": steps, "batch": batch, "out": out},
                                   scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
                                   run_config=ray.train.RunConfig(storage_path=tmp, name="overhead"))
            trainer.fit()
            return torch.load(out)
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="Ray Train runs, each between two plain DDP runs")
    args = parser.parse_args()
    # plain, Ray, plain, Ray, ..., plain: each Ray Train run is held to the mean of the plain runs just
    # before and after it, so the machine's drift between runs (up to ~10% here) cancels instead of
    # landing on one side of a single ratio.
    plain = [plain_ddp(args.steps, args.batch)]
    ray_runs = []
    for _ in range(args.rounds):
        ray_runs.append(ray_train(args.steps, args.batch))
        plain.append(plain_ddp(args.steps, args.batch))

    def medians(times: list[tuple[float, float]]) -> tuple[float, float]:
        return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)

    print(f"2 workers x 1 thread, batch {args.batch} per worker, {args.steps} steps after {WARMUP} warm-up, {args.rounds} rounds")
    print("| run | median step (wall) | median step (CPU of the training thread) |\n|---|---:|---:|")
    for i, times in enumerate(plain):
        wall, cpu = medians(times)
        print(f"| plain DDP {i} | {1e3 * wall:.1f} ms | {1e3 * cpu:.1f} ms |")
        if i < len(ray_runs):
            wall, cpu = medians(ray_runs[i])
            print(f"| Ray Train {i} | {1e3 * wall:.1f} ms | {1e3 * cpu:.1f} ms |")
    ratios = []  # (wall, CPU) of each Ray Train run against its two neighbours
    for i, times in enumerate(ray_runs):
        (wall, cpu), before, after = medians(times), medians(plain[i]), medians(plain[i + 1])
        ratios.append((wall / ((before[0] + after[0]) / 2), cpu / ((before[1] + after[1]) / 2)))
    for name, column in (("wall", 0), ("CPU time", 1)):
        values = [r[column] for r in ratios]
        print(f"Ray Train / plain DDP, {name}: median {statistics.median(values):.3f} over {len(values)} rounds "
              f"(range {min(values):.3f}-{max(values):.3f})")


if __name__ == "__main__":
    main()
