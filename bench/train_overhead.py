"""Ray Train's step against the same step in a plain torchrun-style DDP loop, side by side in one run.

Both run the identical loop body (`train_steps`): 2 processes, gloo, one thread each, the VGG-style
CNN at 32 px on a batch of in-memory tensors (no data loading at all), AdamW. The plain loop is
started with torch.multiprocessing and a FileStore rendezvous; the Ray Train loop by a TorchTrainer
with 2 workers (ray.train.torch.prepare_model wraps the model in DDP). Reported: median step time
of rank 0 after warm-up, and the ratio Ray Train / plain: each of --rounds Ray Train runs against
the two plain runs around it, then the median over rounds. Target: <= 1.05.

Next to the wall-clock step, two figures say where a gap comes from:
- the CPU time of the training thread per step (time.thread_time): equal CPU times with a higher
  wall time mean the step waited for a core, not that Ray Train's step does more work;
- the cores kept busy by every other process during the timed steps (psutil): Ray's own daemons
  (GCS, raylet, dashboard and its agent, the Train controller) against the plain loop's idle parent.
Each round runs Ray twice, as ray.init() starts it (with the dashboard, which `ray job submit`
needs) and with include_dashboard=False, so the dashboard's share of a 2-core machine is measured,
not guessed.

    .venv/bin/python bench/train_overhead.py [--steps 60] [--batch 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time

import psutil
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from rayssl.models.backbones import SmallCNN

WARMUP = 5


@dataclasses.dataclass
class Timing:
    steps: list[tuple[float, float]]  # (wall seconds, training-thread CPU seconds) per timed step, rank 0
    others_busy_cores: float  # CPU seconds of every other process during the timed steps / their wall seconds


def cpu_seconds_by_pid(exclude: set[int]) -> dict[int, float]:
    """user + system CPU seconds of every process on the machine but `exclude` (one psutil pass)."""
    seconds = {}
    for proc in psutil.process_iter(["pid", "cpu_times"]):
        if proc.info["pid"] not in exclude and proc.info["cpu_times"] is not None:
            seconds[proc.info["pid"]] = proc.info["cpu_times"].user + proc.info["cpu_times"].system
    return seconds


def train_steps(steps: int, batch: int, wrap) -> Timing:
    """The shared loop, after the process group is up: per optimiser step after WARMUP steps, and the
    other processes' CPU over the timed steps. `wrap` puts the model in DDP."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = wrap(torch.nn.Sequential(SmallCNN(3, 32, 128), torch.nn.Linear(128, 10)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    trainers: list[int] = [0] * dist.get_world_size()
    dist.all_gather_object(trainers, os.getpid())  # the training processes: not "other" CPU
    times, others_before, window_start = [], {}, 0.0
    for step in range(WARMUP + steps):
        if step == WARMUP:
            others_before, window_start = cpu_seconds_by_pid(set(trainers)), time.perf_counter()
        start, cpu_start = time.perf_counter(), time.thread_time()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if step >= WARMUP:
            times.append((time.perf_counter() - start, time.thread_time() - cpu_start))
    window = time.perf_counter() - window_start
    # A process started inside the window counts from zero; one that ended inside it is lost (rare: none of Ray's daemons).
    others = sum(after - others_before.get(pid, 0.0) for pid, after in cpu_seconds_by_pid(set(trainers)).items())
    return Timing(times, others / window)


def _plain_worker(rank: int, world: int, store: str, steps: int, batch: int, out: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    timing = train_steps(steps, batch, torch.nn.parallel.DistributedDataParallel)
    if rank == 0:
        torch.save(dataclasses.asdict(timing), out)  # plain types: a Ray worker cannot unpickle this script's classes
    dist.destroy_process_group()


def plain_ddp(steps: int, batch: int) -> Timing:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.pt")
        mp.start_processes(_plain_worker, args=(2, os.path.join(tmp, "store"), steps, batch, out), nprocs=2, start_method="spawn")
        return Timing(**torch.load(out))


def _ray_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    timing = train_steps(config["steps"], config["batch"], lambda m: ray.train.torch.prepare_model(m))
    if ray.train.get_context().get_world_rank() == 0:  # Ray Train's Result carries checkpointed metrics only
        torch.save(dataclasses.asdict(timing), config["out"])
    ray.train.report({})


def ray_train(steps: int, batch: int, dashboard: bool) -> Timing:
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    ray.init(address="local", num_cpus=2, log_to_driver=False, include_dashboard=dashboard)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "times.pt")
            trainer = TorchTrainer(
                _ray_worker,
                train_loop_config={"steps": steps, "batch": batch, "out": out},
                scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
                run_config=ray.train.RunConfig(storage_path=tmp, name="overhead"),
            )
            trainer.fit()
            return Timing(**torch.load(out))
    finally:
        ray.shutdown()


RAY_KINDS = {"Ray Train": True, "Ray Train, no dashboard": False}  # name -> include_dashboard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of (Ray Train, Ray Train without dashboard), each between two plain DDP runs"
    )
    args = parser.parse_args()
    # plain, Ray, Ray without dashboard, plain, ...: each Ray Train run is held to the mean of the plain
    # runs just before and after its round, so the machine's drift between runs (up to ~10% here)
    # cancels instead of landing on one side of a single ratio.
    plain = [plain_ddp(args.steps, args.batch)]
    rounds: list[dict[str, Timing]] = []
    for _ in range(args.rounds):
        rounds.append({kind: ray_train(args.steps, args.batch, dashboard) for kind, dashboard in RAY_KINDS.items()})
        plain.append(plain_ddp(args.steps, args.batch))

    def medians(timing: Timing) -> tuple[float, float]:
        return statistics.median(t[0] for t in timing.steps), statistics.median(t[1] for t in timing.steps)

    print(f"2 workers x 1 thread, batch {args.batch} per worker, {args.steps} steps after {WARMUP} warm-up, {args.rounds} rounds")
    print("| run | median step (wall) | median step (CPU of the training thread) | other processes (cores busy) |\n|---|---:|---:|---:|")
    for i, timing in enumerate(plain):
        for name, run in [
            (f"plain DDP {i}", timing),
            *((f"{kind} {i}", rounds[i][kind]) for kind in (RAY_KINDS if i < len(rounds) else ())),
        ]:
            wall, cpu = medians(run)
            print(f"| {name} | {1e3 * wall:.1f} ms | {1e3 * cpu:.1f} ms | {run.others_busy_cores:.2f} |")
    for kind in RAY_KINDS:
        ratios = []  # (wall, CPU) of each round's run against the round's two plain neighbours
        for i, runs in enumerate(rounds):
            (wall, cpu), before, after = medians(runs[kind]), medians(plain[i]), medians(plain[i + 1])
            ratios.append((wall / ((before[0] + after[0]) / 2), cpu / ((before[1] + after[1]) / 2)))
        for name, column in (("wall", 0), ("CPU time", 1)):
            values = [r[column] for r in ratios]
            print(
                f"{kind} / plain DDP, {name}: median {statistics.median(values):.3f} over {len(values)} rounds "
                f"(range {min(values):.3f}-{max(values):.3f})"
            )


if __name__ == "__main__":
    main()
