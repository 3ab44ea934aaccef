"""Ray Train's step against the same step in a plain torchrun-style DDP loop, side by side in one run.

Both run the identical loop body (`train_steps`): 2 processes, gloo, one thread each, the VGG-style
CNN at 32 px on a batch of in-memory tensors (no data loading at all), AdamW. The plain loop is
started with torch.multiprocessing and a FileStore rendezvous; the Ray Train loop by a TorchTrainer
with 2 workers (ray.train.torch.prepare_model wraps the model in DDP). Reported: median step time
of rank 0 after warm-up, and the ratio Ray Train / plain. Target: <= 1.05. Next to the wall-clock
step, the CPU time of the training thread per step (time.thread_time): equal CPU times with a
higher wall time mean the step waited for a core (Ray's own processes on a small machine), not
that Ray Train's step does more work.

    .venv/bin/python bench/train_overhead.py [--steps 60] [--batch 128]
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
    args = parser.parse_args()
    runs = {"plain DDP (before)": plain_ddp(args.steps, args.batch), "Ray Train": ray_train(args.steps, args.batch),
            "plain DDP (after)": plain_ddp(args.steps, args.batch)}  # before and after: the machine's drift
    wall = {name: statistics.median(t[0] for t in times) for name, times in runs.items()}
    cpu = {name: statistics.median(t[1] for t in times) for name, times in runs.items()}
    print(f"2 workers x 1 thread, batch {args.batch} per worker, {args.steps} steps after {WARMUP} warm-up")
    print("| loop | median step (wall) | median step (CPU of the training thread) |\n|---|---:|---:|")
    for name in runs:
        print(f"| {name} | {1e3 * wall[name]:.1f} ms | {1e3 * cpu[name]:.1f} ms |")
    plain_wall, plain_cpu = (wall["plain DDP (before)"] + wall["plain DDP (after)"]) / 2, (cpu["plain DDP (before)"] + cpu["plain DDP (after)"]) / 2
    print(f"Ray Train / plain DDP: {wall['Ray Train'] / plain_wall:.3f} wall, {cpu['Ray Train'] / plain_cpu:.3f} CPU time")


if __name__ == "__main__":
    main()
