"""The GPU benchmark suite: every GPU check in one command, each item in its own process with its own
time limit, written to one JSON and one markdown table (docs/gpu.md says how to run it and read it).

    .venv/bin/python bench/gpu.py                   # make bench-gpu: <= 8 min on one H100 + 16 cores
                                                    #   -> bench/results/gpu_<device>.{json,md}
    .venv/bin/python bench/gpu.py --tiny            # make bench-gpu-tiny: CPU, tiny models, 80 images, ~5 min on 2 cores
                                                    #   -> bench/out/gpu_cpu.{json,md} (never bench/results)
    .venv/bin/python bench/gpu.py --only mae,nat    # some of the items below

Items, in the issue's numbering (run in that order, except that few_labels runs last, on the time left):
  1 environment     GPU, driver, CUDA, cuDNN, NCCL, torch, Ray; torch.cuda.is_available() in a Ray Train worker
  2 mae             MAE ViT-B/16 (configs/mae_vitb16_gpu.yaml: mask 0.75, bf16): images/s from memory (the
                    model's ceiling) and through the Ray Data pipeline (the platform's figure), GPU utilisation
  3 nat             NAT ResNet-50 at 224 px (configs/nat_resnet50_gpu.yaml: bf16, channels_last): the same
  4 decode          nvJPEG (data.decode: device) against the CPU decode on every core, images/s at 224 px
  5 train_vs_plain  Ray Train against a plain loop on one GPU, the NAT step from memory: step-time ratio
  6 compile         torch.compile on against off for item 2's step: compile time and steady-state images/s
  7 few_labels      MNIST, 5 labels per class, the platform's best recipe (FixMatch) for the time left
  8 predict         `rayssl predict` (predict_run) of a ResNet-50 classifier over the corpus: images/s
  9 peers           SimCLR on CIFAR-10, RaySSL against LightlySSL's loop (bench/peers.py) on the GPU for equal wall
                    times: images/s of both, kNN at that time (skipped without the [bench] extra or the data)

How it runs: this process writes a synthetic ImageNet-like JPEG corpus (bench/synthetic_imagenet.py) as
shards on the local disk, has one local Ray started (no dashboard, a token of its own) and held by a small
process of its own (`--hold-ray`), then runs each item as `bench/gpu.py --item NAME` in its own process
group, attached to that Ray through RAY_ADDRESS, and kills it at its time limit. An item writes its
figures as it measures them, so one that fails or runs out of time keeps what it had and records
"failed: <reason>"; the next item runs regardless, on a new Ray if the last one died. The items run the
platform's own code: the training loop's step (rayssl.train.loop: device placement, channels_last, bf16
autocast, fused optimiser, torch.compile), its epochs over a Ray Train dataset shard fed by
rayssl.data.pipeline, the device decoder, predict_run and run_finetune.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import itertools
import json
import logging
import multiprocessing as mp
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.train
import ray.train.torch
import torch
from ray.train.torch import TorchTrainer

from rayssl.config import FinetuneConfig, PretrainConfig, RayInitConfig, StorageConfig, dump_yaml, load_config
from rayssl.data.decode import ImageSpec, decode_image
from rayssl.data.device_decode import DeviceDecoder
from rayssl.data.pipeline import ReadHeaders, image_dataset
from rayssl.data.shards import list_shards, write_shards
from rayssl.data.sources import RawSample, SourceData, load_source
from rayssl.eval.classifier import score_on_test_split
from rayssl.inference.export import ensure_export
from rayssl.inference.runs import read_run
from rayssl.logs import get_logger
from rayssl.train import checkpoints
from rayssl.train.launch import init_ray, run_dir_of, run_finetune

# The loop's private pieces, on purpose: timing the very step, epoch and runner `rayssl pretrain` runs
# (tests/integration/test_bench_gpu.py runs this script, so a refactor of the loop shows up there).
from rayssl.train.loop import _epochs, _RoundRunner, _RoundSums
from rayssl.train.pretrained import build_classifier
from rayssl.train.spec import WorkerSpec
from rayssl.train.steps import JobStep, build_job_step
from rayssl.train.workers import InProcessWorker, RayTrainWorker, Worker

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CLASSES = 10  # of the synthetic corpus: labels round-robin, so predict and the tiny fine-tuning have a 10-way head
ROUND = 1  # the round index the timed steps run as: NAT reassigns in rounds 0, 3, 6, ...; round 1 is a plain one
CONFIGS = {"mae": "configs/mae_vitb16_gpu.yaml", "nat": "configs/nat_resnet50_gpu.yaml"}
MNIST = "../shared/data/mnist"  # relative to the repository; bench/few_labels.py's headline data
CIFAR = "../shared/data/cifar10"  # the peers item's (bench/peers.py)


@dataclass(frozen=True)
class Scale:
    """Sizes, steps and the time budget of one mode (GPU or --tiny); each item has its own limits (Item)."""

    image_size: int
    train_images: int  # synthetic JPEGs in the corpus's train split (ImageNet-like sizes, ~100 KB each)
    test_images: int
    rows_per_shard: int  # small enough that Ray Data reads the corpus in parallel on every core
    warmup: int  # untimed steps first: cuDNN autotuning, allocator growth, torch.compile
    steps: int  # timed steps from memory
    pipeline_s: float  # timed seconds through Ray Data (0: the rest of one epoch after the warm-up)
    decode_images: int
    predict_passes: int  # the last one is timed: the first warms the OS cache and Ray's workers
    cpus_per_worker: int  # Ray's CPUs for the Train worker; Ray Data's decode gets the others
    budget_s: float  # the whole run
    mae: tuple[str, ...]  # config overrides
    nat: tuple[str, ...]
    predict: tuple[str, ...]
    few_labels: tuple[str, ...]
    peers_minutes: float  # each runner's wall time in the peers item, at most (bench/peers.py --minutes)


GPU = Scale(
    image_size=224,
    train_images=10_240,
    test_images=512,
    rows_per_shard=256,
    warmup=10,
    steps=40,
    pipeline_s=15.0,
    decode_images=8192,
    predict_passes=2,
    cpus_per_worker=2,
    budget_s=480.0,
    mae=(),
    nat=(),
    predict=("model.name=resnet50", "model.embed_dim=2048", "data.image_size=224", "data.crop=random_crop"),
    few_labels=("semisup.labels_per_class=5",),
    peers_minutes=1.0,
)
TINY = Scale(
    image_size=32,
    train_images=60,
    test_images=20,
    rows_per_shard=16,
    warmup=2,
    steps=4,
    pipeline_s=0.0,
    decode_images=60,
    predict_passes=1,
    cpus_per_worker=1,
    # A tiny run takes ~5 minutes on 2 free cores, ~9 with the peers item (LightlySSL installed): the limits only
    # catch a hang, on a busy machine too.
    budget_s=900.0,
    mae=(
        "data.image_size=32",
        "data.batch_size=8",
        "model.vit.patch_size=8",
        "model.vit.width=32",
        "model.vit.depth=2",
        "model.vit.heads=2",
        "mae.decoder_width=16",
        "mae.decoder_depth=1",
        "mae.decoder_heads=2",
    ),
    # A ResNet-50 step at 32 px takes ~0.2 s on a free core but seconds on a busy one: a small CNN keeps the
    # tiny run short; the GPU run is the config's ResNet-50.
    nat=("data.image_size=32", "data.batch_size=8", "model.name=cnn", "model.width=8", "model.embed_dim=32", "nat.target_dim=16"),
    predict=("data.image_size=32",),
    few_labels=(
        "semisup.labels_per_class=2",
        "semisup.val_per_class=1",
        "semisup.labelled_batch_size=8",
        "data.batch_size=8",
        "schedule.steps=20",
        "schedule.eval_every=10",
        "schedule.warmup_steps=2",
        "train.num_to_keep=2",
    ),
    # RaySSL's first epoch ends ~60 s after launch on 2 cores (Ray Train's start-up): the peer gets as long.
    peers_minutes=1.5,
)


@dataclass(frozen=True)
class Context:
    """What the driver hands an item's process (as JSON)."""

    item: str
    tiny: bool
    workdir: str  # this run's scratch directory (corpus, runs, results)
    shards: str  # the synthetic corpus's shards
    train_rows: int
    deadline: float  # time.time() at which the item is killed
    mnist: str
    cifar: str

    @property
    def scale(self) -> Scale:
        return TINY if self.tiny else GPU


class Skipped(Exception):
    """An item that cannot run here, with why: recorded as "skipped: <why>", not as a failure."""


class Recorder:
    """An item's figures, rewritten to its result file at every update: what was measured survives a kill."""

    def __init__(self, path: Path) -> None:
        self.path, self.values = path, dict[str, Any]()

    def __call__(self, **values: Any) -> None:
        self.values.update(values)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.values, indent=1))
        tmp.replace(self.path)  # atomic: the driver never reads half a file

    def phase(self, name: str) -> None:
        """Seconds from the process's start to the end of phase `name`: where an item's time went."""
        self(phases_s={**self.values.get("phases_s", {}), name: round(time.time() - psutil.Process().create_time(), 1)})


# --- NVML: GPU names, driver, utilisation ------------------------------------------------------------------


def nvml() -> Any | None:
    """The NVML bindings, initialised: pynvml (nvidia-ml-py) if installed, else the copy Ray ships and counts
    GPUs with; None without either or without an NVIDIA driver."""
    try:
        import pynvml
    except ImportError:
        try:
            from ray._private.thirdparty import pynvml
        except ImportError:
            return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    return pynvml


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def visible_gpu(lib: Any) -> Any:
    """NVML's handle of this process's first CUDA device: NVML counts physical GPUs, whatever CUDA_VISIBLE_DEVICES
    (which Ray sets for its GPU workers) says."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
    if first.startswith(("GPU-", "MIG-")):
        return lib.nvmlDeviceGetHandleByUUID(first)
    return lib.nvmlDeviceGetHandleByIndex(int(first))


class GpuUtilisation:
    """NVML's GPU utilisation (% of time a kernel was running), sampled every 0.1 s on a thread while in the
    `with` block; mean(windows) averages the samples taken inside the timed windows."""

    def __init__(self, device: torch.device) -> None:
        self.samples: list[tuple[float, int]] = []
        self.lib, self.handle, self.why_not = None, None, ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        if device.type != "cuda":
            self.why_not = "skipped: no CUDA"
        elif (lib := nvml()) is None:
            self.why_not = "unavailable: NVML does not load"
        else:
            self.lib, self.handle = lib, visible_gpu(lib)

    def __enter__(self) -> GpuUtilisation:
        if self.handle is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _sample(self) -> None:
        assert self.lib is not None
        while not self._stop.wait(0.1):
            self.samples.append((time.perf_counter(), int(self.lib.nvmlDeviceGetUtilizationRates(self.handle).gpu)))

    def mean(self, windows: list[tuple[float, float]]) -> float | str:
        if self.why_not:
            return self.why_not
        inside = [u for t, u in self.samples if any(a <= t <= b for a, b in windows)]
        return round(float(np.mean(inside)), 1) if inside else "unavailable: no sample inside the timed steps"


# --- the machine -----------------------------------------------------------------------------------------------


def _version(fn: Callable[[], Any]) -> str:
    try:
        value = fn()
    except Exception as exc:  # a CPU-only machine: the library is missing or refuses
        return f"unavailable ({type(exc).__name__})"
    return "unavailable" if value is None else str(value)


def _cudnn() -> str:
    v = torch.backends.cudnn.version()  # e.g. 92400 = 9.24.0 (major * 10000 + minor * 100 + patch since cuDNN 9)
    return "none" if v is None else f"{v // 10000}.{v % 10000 // 100}.{v % 100}"


def gpu_inventory() -> tuple[str, list[dict[str, Any]]]:
    """(driver version, [{"name", "memory_gib"}] per GPU) through NVML, without a CUDA context in this process."""
    lib = nvml()
    if lib is None:
        return "none", []
    gpus = []
    for i in range(lib.nvmlDeviceGetCount()):
        handle = lib.nvmlDeviceGetHandleByIndex(i)
        gpus.append(
            {"name": _text(lib.nvmlDeviceGetName(handle)), "memory_gib": round(lib.nvmlDeviceGetMemoryInfo(handle).total / 2**30, 1)}
        )
    return _text(lib.nvmlSystemGetDriverVersion()), gpus


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine_header(tiny: bool) -> dict[str, Any]:
    """Device, driver and library versions for the results' header (CUDA, cuDNN, NCCL: those torch was built with)."""
    driver, gpus = gpu_inventory()
    return {
        "device": gpus[0]["name"] if gpus else "cpu",
        "device_memory_gib": gpus[0]["memory_gib"] if gpus else None,
        "gpus": gpus,
        "driver": driver,
        "cuda": torch.version.cuda or "none",
        "cudnn": _version(_cudnn),
        "nccl": _version(lambda: ".".join(map(str, torch.cuda.nccl.version()))),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mode": "tiny (CPU, tiny models)" if tiny else "GPU",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


# --- the corpus ------------------------------------------------------------------------------------------------


def _jpeg(seed: int) -> bytes:
    from synthetic_imagenet import synthetic_jpeg  # bench/, on sys.path as this script's folder

    return synthetic_jpeg(np.random.default_rng(seed))


def write_corpus(root: Path, scale: Scale) -> dict[str, Any]:
    """Synthetic ImageNet-like JPEGs (bench/synthetic_imagenet.py) as shards under root/shards, written by the
    platform's write_shards: train and test splits, labels round-robin over CLASSES classes."""
    started = time.perf_counter()
    # fork: this process has started no thread and no Ray yet, and the children run numpy and PIL only.
    with mp.get_context("fork").Pool(os.cpu_count()) as pool:
        jpegs = pool.imap(_jpeg, range(scale.train_images + scale.test_images), chunksize=8)

        def split(name: str, first: int, count: int) -> Iterator[RawSample]:
            for i in range(first, first + count):  # write_shards reads the splits one after the other, in order
                yield RawSample(f"{name}/img_{i:07d}.jpg", next(jpegs), i % CLASSES)

        data = SourceData(
            {"train": split("train", 0, scale.train_images), "test": split("test", scale.train_images, scale.test_images)},
            [f"class_{c:02d}" for c in range(CLASSES)],
        )
        uri = str(root / "shards")
        write_shards(data, uri, rows_per_shard=scale.rows_per_shard, source_name="synthetic_imagenet")
    size = sum(p.stat().st_size for p in Path(uri).rglob("*.parquet"))
    return {
        "shards": uri,
        "train": scale.train_images,
        "test": scale.test_images,
        "mb": round(size / 1e6, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def corpus_files(shards: str, n: int) -> list[bytes]:
    """The first n encoded images of the corpus's train split."""
    files: list[bytes] = []
    for shard in list_shards(shards, "train"):
        # use_threads=False: the decode item forks a pool after this, and pyarrow's threads should not exist by then
        files += pq.read_table(shard.uri, columns=["image"], use_threads=False).column("image").to_pylist()
        if len(files) >= n:
            break
    return files[:n]


# --- timing the platform's step ----------------------------------------------------------------------------------


@dataclass
class Loop:
    """The training loop's pieces for one job on one worker, as rayssl.train.loop builds them."""

    spec: WorkerSpec
    job: JobStep
    runner: _RoundRunner
    worker: Worker


def build_loop(cfg: PretrainConfig, worker: Worker, num_samples: int) -> Loop:
    spec = WorkerSpec(cfg, run_dir_of(cfg), num_samples)
    torch.manual_seed(cfg.train.seed)
    job = build_job_step(cfg, num_samples, None)
    return Loop(spec, job, _RoundRunner(job, worker, spec, get_logger(worker.rank)), worker)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release_gpu() -> None:
    """Free what the last figure left on the GPU: the next one may run in another process (a Ray Train worker)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float | str:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else "skipped: no CUDA"


def memory_batch(cfg: PretrainConfig, device: torch.device, num_samples: int) -> dict[str, torch.Tensor]:
    """One batch as the stream hands it to the step, already on the device: images in [-1, 1] (training's
    normalisation) and sample indices."""
    b, c, s = cfg.data.batch_size, cfg.data.channels, cfg.data.image_size
    images = torch.rand(b, c, s, s, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return {"index": (torch.arange(b) % num_samples).to(device), "image": images.to(device)}


def timed_steps(loop: Loop, batches: Iterator[dict[str, torch.Tensor]], warmup: int, steps: int) -> dict[str, Any]:
    """images/s of `steps` steps of the loop's own step (forward, loss, backward, optimiser) after `warmup` untimed ones."""
    device, sums = loop.worker.device, _RoundSums(loop.worker.device)
    started = time.perf_counter()
    for step in range(warmup):
        loop.runner._step(next(batches), ROUND, step, sums)
    sync(device)
    warm = time.perf_counter() - started
    images = 0
    with GpuUtilisation(device) as util:
        start = time.perf_counter()
        for step in range(warmup, warmup + steps):
            batch = next(batches)
            loop.runner._step(batch, ROUND, step, sums)
            images += len(batch["index"])
        sync(device)
        end = time.perf_counter()
    return {
        "images_per_s": images / (end - start),
        "step_ms": 1e3 * (end - start) / steps,
        "warmup_s": round(warm, 2),
        "gpu_util_pct": util.mean([(start, end)]),
        "peak_gib": peak_gib(device),
        "torch_threads": torch.get_num_threads(),
    }


def memory_figure(cfg: PretrainConfig, worker: Worker, num_samples: int, warmup: int, steps: int) -> dict[str, Any]:
    """The model's ceiling: the platform's step on one synthetic batch held on the device (no data loading)."""
    loop = build_loop(cfg, worker, num_samples)
    return timed_steps(loop, itertools.repeat(memory_batch(cfg, worker.device, num_samples)), warmup, steps)


def _close(batches: object) -> None:
    """Close a pass over a Ray Data iterator left mid-way, so it stops prefetching (as rayssl.train.steps does)."""
    close = getattr(batches, "close", None)
    if close is not None:
        close()


def pipeline_rate(loop: Loop, warmup: int, seconds: float) -> dict[str, Any]:
    """images/s of the platform's step fed by its own epochs over this worker's dataset shard (rayssl.train.loop._epochs:
    Ray Data decode and augmentation, or the device decoder), timed after the first `warmup` batches of each epoch until
    `seconds` of timed steps (0: the rest of one epoch). The epochs' start-up is left out, and reported: an ImageNet
    epoch pays it once per 1.28 M images, these epochs of a few thousand every few seconds."""
    device, sums, epoch_fn = loop.worker.device, _RoundSums(loop.worker.device), _epochs(loop.spec, loop.worker)
    windows: list[tuple[float, float]] = []
    images, step, epochs, starts = 0, 0, 0, []
    with GpuUtilisation(device) as util:
        while not windows or sum(b - a for a, b in windows) < seconds:
            # iter(): Ray Data hands back an iterable; the generator it makes is what close() stops mid-epoch
            asked, window_start, batches = time.perf_counter(), None, iter(loop.job.round_batches(epoch_fn, ROUND, device))
            try:
                for i, batch in enumerate(batches):
                    if i == 0:
                        starts.append(time.perf_counter() - asked)
                    loop.runner._step(batch, ROUND, step, sums)
                    step += 1
                    if i + 1 == warmup:
                        sync(device)
                        window_start = time.perf_counter()
                    elif window_start is not None:
                        images += len(batch["index"])
                        if seconds and sum(b - a for a, b in windows) + time.perf_counter() - window_start >= seconds:
                            break
            finally:
                _close(batches)
            if window_start is None:
                raise RuntimeError(f"an epoch had no more batches than the {warmup} warm-up steps: make the corpus larger")
            sync(device)
            windows.append((window_start, time.perf_counter()))
            epochs += 1
    timed = sum(b - a for a, b in windows)
    return {
        "images_per_s": images / timed,
        "timed_s": round(timed, 2),
        "epochs": epochs,
        "first_batch_s": [round(s, 2) for s in starts],
        "gpu_util_pct": util.mean(windows),
        "peak_gib": peak_gib(device),
        "torch_threads": torch.get_num_threads(),
    }


# --- Ray Train: one worker, as `rayssl pretrain` starts it ------------------------------------------------------


def connect() -> None:
    """Attach to the suite's Ray (RAY_ADDRESS), as the platform's commands do under `ray job submit`."""
    init_ray(RayInitConfig())


def _write(config: dict[str, Any], result: dict[str, Any]) -> None:
    Path(config["out"]).write_text(json.dumps(result))


def _environment_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: what torch sees there."""
    _write(
        config,
        {
            "cuda_available": torch.cuda.is_available(),
            "device": str(ray.train.torch.get_device()),
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)"),
        },
    )


def _memory_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: memory_figure inside the worker group."""
    _write(config, memory_figure(config["cfg"], RayTrainWorker(), config["num_samples"], config["warmup"], config["steps"]))


def _pipeline_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: pipeline_rate over its shard of the dataset."""
    loop = build_loop(config["cfg"], RayTrainWorker(), config["num_samples"])
    _write(config, pipeline_rate(loop, config["warmup"], config["seconds"]))


def fit_one_worker(
    ctx: Context, loop_fn: Callable[[dict[str, Any]], None], config: dict[str, Any], use_gpu: bool, cpus: float, dataset: Any = None
) -> dict[str, Any]:
    """Run loop_fn in a one-worker TorchTrainer and return what the worker wrote (Train v2 hands back metrics only
    with a checkpoint)."""
    connect()
    name = f"{ctx.item}_{loop_fn.__name__.strip('_')}"
    out = Path(ctx.workdir) / f"{name}.json"
    out.unlink(missing_ok=True)
    TorchTrainer(
        loop_fn,
        train_loop_config={**config, "out": str(out)},
        scaling_config=ray.train.ScalingConfig(num_workers=1, use_gpu=use_gpu, resources_per_worker={"CPU": cpus}),
        run_config=ray.train.RunConfig(name=name, storage_path=str(Path(ctx.workdir) / "ray_train")),
        datasets={"train": dataset} if dataset is not None else {},
    ).fit()
    return json.loads(out.read_text())


# --- the items ---------------------------------------------------------------------------------------------------


def use_gpu(ctx: Context) -> bool:
    return not ctx.tiny and torch.cuda.is_available()


def pretrain_config(ctx: Context, method: str, *extra: str) -> PretrainConfig:
    """configs/{mae_vitb16,nat_resnet50}_gpu.yaml on the synthetic corpus, one worker, this mode's sizes."""
    return load_config(
        PretrainConfig,
        REPO / CONFIGS[method],
        [
            f"data.shards={ctx.shards}",
            f"run.storage_path={ctx.workdir}/runs",
            f"run.name={ctx.item}_{method}",
            "train.num_workers=1",
            f"train.use_gpu={str(use_gpu(ctx)).lower()}",
            f"train.cpus_per_worker={ctx.scale.cpus_per_worker}",
            *getattr(ctx.scale, method),
            *extra,
        ],
    )


def in_process(cfg: PretrainConfig) -> InProcessWorker:
    """The loop's worker in this process (no Ray): the plain loop, with the CPU threads Ray gives a Train worker
    (OMP_NUM_THREADS = its CPUs), so that the two differ by Ray only."""
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    return InProcessWorker(cfg, run_dir_of(cfg), None, lambda metrics: None)


def item_environment(ctx: Context, rec: Recorder) -> None:
    rec(torch_cuda_available=torch.cuda.is_available(), cudnn=_version(_cudnn), torch=torch.__version__, ray=ray.__version__)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        rec(
            device_name=props.name,
            memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            bf16=torch.cuda.is_bf16_supported(),
            device_count=torch.cuda.device_count(),
        )
    elif not ctx.tiny:  # NVML found a GPU (the driver checks that), torch cannot use it: every item would run on the CPU
        raise RuntimeError(f"torch.cuda.is_available() is False (torch built for CUDA {torch.version.cuda}): a driver too old?")
    else:
        rec(device_name="cpu", memory_gib="skipped: no CUDA", capability="skipped: no CUDA")
    rec.phase("torch")
    seen = fit_one_worker(ctx, _environment_worker, {}, use_gpu(ctx), ctx.scale.cpus_per_worker)
    rec(
        train_worker_cuda_available=seen["cuda_available"],
        train_worker_device=seen["device"],
        train_worker_visible_devices=seen["visible_devices"],
    )
    if use_gpu(ctx) and not seen["cuda_available"]:
        raise RuntimeError("torch.cuda.is_available() is False in a Ray Train worker given a GPU")


def settings(cfg: PretrainConfig) -> dict[str, Any]:
    t = cfg.train
    on_gpu = t.use_gpu and torch.cuda.is_available()
    return {
        "model": cfg.model.name,
        "batch_size": cfg.data.batch_size,
        "image_size": cfg.data.image_size,
        "precision": t.precision if on_gpu else "fp32 (CPU)",
        "channels_last": t.channels_last and on_gpu,
        "fused_optimizer": t.fused_optimizer and on_gpu,
        "compile": t.compile,
        "decode": cfg.data.decode,
        "prefetch_batches": t.prefetch_batches,
        "cpus_per_worker": t.cpus_per_worker,
    }


def model_figures(ctx: Context, rec: Recorder, method: str) -> None:
    """Items 2 and 3: the step from memory (in this process), then fed by Ray Data in a Ray Train worker."""
    cfg, scale = pretrain_config(ctx, method), ctx.scale
    rec(settings=settings(cfg))
    memory = memory_figure(cfg, in_process(cfg), ctx.train_rows, scale.warmup, scale.steps)
    rec(
        memory_images_per_s=memory["images_per_s"],
        memory_step_ms=memory["step_ms"],
        memory_gpu_util_pct=memory["gpu_util_pct"],
        memory_peak_gib=memory["peak_gib"],
        memory_torch_threads=memory["torch_threads"],
    )
    rec.phase("memory")
    release_gpu()
    connect()
    dataset = image_dataset(cfg.data, "train", run_dir_of(cfg), cfg.storage, augment=True, encoded=cfg.data.decode == "device")
    config = {"cfg": cfg, "num_samples": ctx.train_rows, "warmup": scale.warmup, "seconds": scale.pipeline_s}
    pipe = fit_one_worker(ctx, _pipeline_worker, config, cfg.train.use_gpu, cfg.train.cpus_per_worker, dataset)
    rec(
        pipeline_images_per_s=pipe["images_per_s"],
        pipeline_over_memory=pipe["images_per_s"] / memory["images_per_s"],
        pipeline_gpu_util_pct=pipe["gpu_util_pct"],
        pipeline_timed_s=pipe["timed_s"],
        pipeline_epochs=pipe["epochs"],
        pipeline_first_batch_s=pipe["first_batch_s"],
        pipeline_torch_threads=pipe["torch_threads"],
    )
    rec.phase("pipeline")


def item_mae(ctx: Context, rec: Recorder) -> None:
    model_figures(ctx, rec, "mae")


def item_nat(ctx: Context, rec: Recorder) -> None:
    model_figures(ctx, rec, "nat")


_FILES: list[bytes] = []  # filled before the decode pool forks: each child reads its copy, nothing is pickled


def _decode_slice(args: tuple[int, int, ImageSpec]) -> int:
    """Decode every `step`-th file of _FILES from `first`; how many."""
    first, step, spec = args
    torch.set_num_threads(1)  # one process per core
    files = _FILES[first::step]
    for data in files:
        decode_image(data, spec)
    return len(files)


def cpu_decode_rate(files: list[bytes], spec: ImageSpec, processes: int) -> float:
    """images/s of the Ray Data CPU stage's decode (rayssl.data.decode: crop box, DCT-scaled JPEG decode, resize),
    one process per core."""
    _FILES[:] = files
    # fork: this item has run no torch op and holds no Ray connection yet; the children decode only.
    with mp.get_context("fork").Pool(processes) as pool:
        pool.map(_decode_slice, [(0, len(files), spec)] * processes)  # first-call set-up, untimed
        start = time.perf_counter()
        done = sum(pool.map(_decode_slice, [(i, processes, spec) for i in range(processes)], chunksize=1))
        return done / (time.perf_counter() - start)


def _rows(files: list[bytes]) -> pa.Table:
    """Shard rows of `files`, as Ray Data hands them to the header stage."""
    n = len(files)
    return pa.table(
        {"sample_id": [str(i) for i in range(n)], "index": np.arange(n), "image": files, "label": [None] * n},
        schema=pa.schema([("sample_id", pa.string()), ("index", pa.int64()), ("image", pa.binary()), ("label", pa.int64())]),
    )


def device_decode_rate(files: list[bytes], spec: ImageSpec, device: torch.device, run_dir: str, batch: int = 256) -> tuple[float, float]:
    """(images/s of the header stage on one core, images/s of the worker's decode on `device`): data.decode: device
    split as the platform splits it, ReadHeaders in the Ray Data CPU stage, DeviceDecoder on the worker (nvJPEG on CUDA)."""
    headers = ReadHeaders(spec, "train", run_dir, StorageConfig())
    decoder = DeviceDecoder(spec, None, "train", run_dir, StorageConfig())
    tables = [_rows(files[i : i + batch]) for i in range(0, len(files), batch)]
    start = time.perf_counter()
    rows = [headers(t) for t in tables]
    header_rate = len(files) / (time.perf_counter() - start)
    decoder(rows[0], device)  # warm-up: CUDA context, nvJPEG handles
    sync(device)
    start = time.perf_counter()
    for r in rows:
        decoder(r, device)
    sync(device)
    return header_rate, len(files) / (time.perf_counter() - start)


def item_decode(ctx: Context, rec: Recorder) -> None:
    scale, cores = ctx.scale, os.cpu_count() or 1
    files = corpus_files(ctx.shards, scale.decode_images)
    spec = ImageSpec(scale.image_size, 3, "random_crop")
    cpu = cpu_decode_rate(files, spec, cores)
    rec(images=len(files), image_size=scale.image_size, mean_kb=round(float(np.mean([len(f) for f in files])) / 1e3, 1))
    rec(cpu_processes=cores, cpu_images_per_s=cpu)
    rec.phase("CPU decode")
    device = torch.device("cuda") if use_gpu(ctx) else torch.device("cpu")
    header_rate, device_rate = device_decode_rate(files, spec, device, str(Path(ctx.workdir) / "runs" / "decode"))
    rec(header_images_per_s=header_rate)
    if device.type == "cuda":
        rec(nvjpeg_images_per_s=device_rate, nvjpeg_over_cpu=device_rate / cpu)
    else:  # the same code on the CPU device (libjpeg-turbo), so the path runs; nvJPEG needs CUDA
        rec(nvjpeg_images_per_s="skipped: no CUDA", nvjpeg_over_cpu="skipped: no CUDA", device_path_cpu_images_per_s=device_rate)


def item_train_vs_plain(ctx: Context, rec: Recorder) -> None:
    """Plain, Ray Train, plain: the Ray Train step against the mean of the plain runs around it (drift cancels)."""
    cfg, scale = pretrain_config(ctx, "nat"), ctx.scale
    rec(settings=settings(cfg))

    def plain() -> float:
        step_ms = memory_figure(cfg, in_process(cfg), ctx.train_rows, scale.warmup, scale.steps)["step_ms"]
        release_gpu()
        return step_ms

    before = plain()
    rec(plain_step_ms_before=before)
    rec.phase("plain before")
    config = {"cfg": cfg, "num_samples": ctx.train_rows, "warmup": scale.warmup, "steps": scale.steps}
    ray_ms = fit_one_worker(ctx, _memory_worker, config, cfg.train.use_gpu, cfg.train.cpus_per_worker)["step_ms"]
    rec(ray_train_step_ms=ray_ms)
    rec.phase("Ray Train")
    after = plain()
    ratio = ray_ms / ((before + after) / 2)
    rec(plain_step_ms_after=after, plain_step_ms=(before + after) / 2, ratio=ratio, within_2_5_percent=ratio <= 1.025)


def compile_backend(tiny: bool) -> Any:
    """torch.compile as the loop calls it. Tiny: backend aot_eager (Dynamo and AOTAutograd trace the model, no C++
    code generation, which takes minutes on a small CPU); the GPU run compiles with the default, inductor."""
    if not tiny:
        return contextlib.nullcontext()
    return mock.patch.object(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))


def item_compile(ctx: Context, rec: Recorder) -> None:
    scale = ctx.scale
    rec(backend="aot_eager (tiny)" if ctx.tiny else "inductor", warmup_steps=scale.warmup)
    figures = {}
    for name, compiled in (("eager", "false"), ("compiled", "true")):
        cfg = pretrain_config(ctx, "mae", f"train.compile={compiled}")
        with compile_backend(ctx.tiny):
            figures[name] = memory_figure(cfg, in_process(cfg), ctx.train_rows, scale.warmup, scale.steps)
        release_gpu()
        rec(**{f"{name}_images_per_s": figures[name]["images_per_s"], f"{name}_warmup_s": figures[name]["warmup_s"]})
        rec.phase(name)
    rec(
        compile_s=figures["compiled"]["warmup_s"] - figures["eager"]["warmup_s"],
        speedup=figures["compiled"]["images_per_s"] / figures["eager"]["images_per_s"],
    )


def fresh_classifier(ctx: Context, overrides: tuple[str, ...]) -> str:
    """A fine-tuned run directory (config.yaml + one checkpoint) of an untrained classifier: speed needs no training."""
    cfg = load_config(
        FinetuneConfig,
        REPO / "configs/semisup_cifar10.yaml",
        [f"data.shards={ctx.shards}", f"run.storage_path={ctx.workdir}/runs", "run.name=predict", *overrides],
    )
    run_dir = Path(run_dir_of(cfg))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    torch.manual_seed(0)
    meta = {"epoch": 0, "global_step": 0, "metrics": {}}
    checkpoints.save_local(run_dir / "checkpoint_bench", build_classifier(cfg).state_dict(), {}, {}, meta)
    return str(run_dir)


def item_predict(ctx: Context, rec: Recorder) -> None:
    from predict_throughput import ray_predict  # bench/predict_throughput.py: predict_run, timed as there

    connect()
    run_dir = fresh_classifier(ctx, ctx.scale.predict)
    rec(model=read_run(run_dir, StorageConfig()).cfg.model.name, gpus_in_cluster=int(ray.cluster_resources().get("GPU", 0)))
    started = time.perf_counter()
    ensure_export(read_run(run_dir, StorageConfig()))  # predict exports on its first call: timed apart
    rec(export_s=round(time.perf_counter() - started, 1))
    rec.phase("export")
    for p in range(ctx.scale.predict_passes):
        images, seconds = ray_predict(run_dir, ctx.shards, str(Path(ctx.workdir) / f"predict_{p}"), 256, None)
        rec(images=images, images_per_s=images / seconds, **{f"pass_{p}_s": round(seconds, 2)})
        rec.phase(f"pass {p}")


class _OutOfTime(Exception):
    pass


def finetune_until(cfg: FinetuneConfig, stop_at: float) -> None:
    """run_finetune in this process (its one-worker path, as a sweep's trials run), stopped after the first round that
    ends past stop_at: the round's checkpoint is written before its report."""

    def report(metrics: dict[str, Any]) -> None:
        if time.time() > stop_at:
            raise _OutOfTime

    try:
        run_finetune(cfg, show_progress=False, report=report)
    except _OutOfTime:
        pass


def few_label_shards(ctx: Context, rec: Recorder) -> tuple[str, str]:
    """(shards, what they are): MNIST built from ctx.mnist, or in --tiny the synthetic corpus (the path, not accuracy)."""
    if ctx.tiny:
        return ctx.shards, "synthetic corpus, labels without signal (checks the path, not the accuracy)"
    if not Path(ctx.mnist).is_dir():
        raise Skipped(f"no data at {ctx.mnist}")
    started, out = time.perf_counter(), str(Path(ctx.workdir) / "mnist_shards")
    write_shards(load_source("mnist", ctx.mnist), out, rows_per_shard=10_000, source_name="mnist")
    rec(shards_build_s=round(time.perf_counter() - started, 1))
    return out, "MNIST"


def item_few_labels(ctx: Context, rec: Recorder) -> None:
    from few_labels import SETTINGS  # bench/few_labels.py: the headline's rows

    recipe = SETTINGS["mnist_5labels"].variants["+ FixMatch"]  # its best row (98.79 +- 0.18% on 2 CPU cores)
    shards, data = few_label_shards(ctx, rec)
    overrides = [*recipe.overrides, "semisup.label_seed=0", f"data.shards={shards}", f"run.storage_path={ctx.workdir}/runs"]
    overrides += ["run.name=few_labels", f"train.use_gpu={str(use_gpu(ctx)).lower()}", *ctx.scale.few_labels]
    cfg = load_config(FinetuneConfig, REPO / "configs/semisup_mnist.yaml", overrides)
    rec(data=data, recipe="+ FixMatch (bench/few_labels.py), its first candidate", overrides=overrides, recipe_steps=cfg.schedule.steps)
    started = time.perf_counter()
    # Scoring reads the test split through Ray Data: keep time for it.
    finetune_until(cfg, ctx.deadline - min(30 if ctx.tiny else 45, 0.4 * (ctx.deadline - time.time())))
    train_s = time.perf_counter() - started
    rec.phase("fine-tuning")
    checkpoint = checkpoints.latest_checkpoint(run_dir_of(cfg), cfg.storage)
    if checkpoint is None:
        raise RuntimeError("no checkpoint before the time limit")
    meta = checkpoints.read_meta(checkpoint, cfg.storage)
    steps = meta["global_step"]
    rec(steps_run=steps, finished=steps >= cfg.schedule.steps, train_s=round(train_s, 1), steps_per_s=steps / train_s)
    rec(val_acc_pct=100 * meta["metrics"].get("val_acc", float("nan")))
    rec(test_acc_pct=100 * score_on_test_split(cfg, checkpoint, run_dir_of(cfg)))


PEERS_EVAL_S = (60, 45)  # (GPU, tiny): kept after both runs for peers.evaluate (kNN of both runs' checkpoints)


def item_peers(ctx: Context, rec: Recorder) -> None:
    """bench/peers.py's comparison for the time this item has: on the GPU (one worker, batch 512) or, --tiny, on
    the CPU with its 1,024 images; records both rates, their ratio and both kNN accuracies at the equal wall time."""
    import peers  # bench/peers.py: the same comparison as bench/results/peers.md, shorter

    if why := peers.lightly_missing():
        raise Skipped(why)
    if not Path(ctx.cifar).is_dir():
        raise Skipped(f"no data at {ctx.cifar}")
    out, device = Path(ctx.workdir) / "peers", "cuda" if use_gpu(ctx) else "cpu"
    shards = ["--shards", str(out / "cifar10_shards")]
    if not ctx.tiny:  # --tiny writes its own 1,024 rows
        started = time.perf_counter()
        write_shards(load_source("cifar10", ctx.cifar), shards[1], rows_per_shard=5_000, source_name="cifar10")
        rec(shards_build_s=round(time.perf_counter() - started, 1))
    # Equal wall times, one runner after the other; what is left after both goes to scoring their checkpoints.
    minutes = min(ctx.scale.peers_minutes, (ctx.deadline - time.time() - PEERS_EVAL_S[ctx.tiny]) / 120)
    if minutes < 0.25:
        raise Skipped(f"out of time ({minutes * 60:.0f} s per runner left, too short for an epoch)")
    argv = ["--minutes", f"{minutes:.2f}", "--cifar", ctx.cifar, "--out", str(out), "--device", device, *shards]
    s = peers.settings_of(peers.parse_args([*argv, *(["--tiny"] if ctx.tiny else [])]))
    rec(minutes_per_runner=round(minutes, 2), global_batch=s.global_batch, peer_loader_workers=s.loader_workers, device=device)
    result = peers.compare(s)
    at = f"{s.minutes[-1]:g}min"
    rec(**{key: result[key] for key in ("images_per_s_rayssl", "images_per_s_peer", "rayssl_over_peer", "knn_random_init")})
    rec(knn_rayssl=result[f"knn_rayssl_at_{at}"], knn_peer=result[f"knn_peer_at_{at}"])
    rec(epochs_rayssl=result[f"epochs_rayssl_at_{at}"], epochs_peer=result[f"epochs_peer_at_{at}"])
    if missing := [runner for runner in ("rayssl", "peer") if not result[f"epochs_{runner}_at_{at}"]]:
        raise RuntimeError(f"no epoch of {' and '.join(missing)} ended within {minutes:.2f} min: see {out}/*.log")


# --- the items' table ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    number: int  # in the list
    key: str
    title: str
    anchor: str
    run: Callable[[Context, Recorder], None]
    figures: tuple[tuple[str, str], ...]  # (result key, label) in the markdown table
    limit_s: tuple[float, float]  # (GPU, tiny): the most it may take
    reserve_s: tuple[float, float]  # (GPU, tiny): kept for it while the items before it run


UTIL = "GPU utilisation (NVML), %"
# The two training items' figures (mae, nat): the same rates, ratio and utilisation for each model.
TRAINING_FIGURES = (
    ("memory_images_per_s", "images/s from memory"),
    ("pipeline_images_per_s", "images/s through Ray Data (synthetic JPEGs)"),
    ("pipeline_over_memory", "pipeline / memory"),
    ("memory_gpu_util_pct", f"{UTIL}, from memory"),
    ("pipeline_gpu_util_pct", f"{UTIL}, through Ray Data"),
)

ITEMS = (
    Item(
        1,
        "environment",
        "Environment",
        "torch.cuda.is_available() is True in a Ray Train worker",
        item_environment,
        (
            ("device_name", "device"),
            ("memory_gib", "memory, GiB"),
            ("capability", "compute capability"),
            ("train_worker_cuda_available", "torch.cuda.is_available() in a Ray Train worker"),
        ),
        (60, 120),
        (20, 20),
    ),
    Item(
        2,
        "mae",
        "MAE ViT-B/16, mask 0.75, bf16",
        "~313 img/s on an A6000 (published MAE ViT-B runs); aim >= 2,000 img/s from memory on an H100, pipeline / memory >= 0.9",
        item_mae,
        TRAINING_FIGURES,
        (110, 180),
        (50, 40),
    ),
    Item(
        3,
        "nat",
        "NAT ResNet-50, 224 px, bf16, channels_last",
        "2,470 img/s on one A100-80GB (ResNet-50 training, DALI + AMP, NVIDIA DeepLearningExamples)",
        item_nat,
        TRAINING_FIGURES,
        (110, 180),
        (50, 40),
    ),
    Item(
        4,
        "decode",
        "JPEG decode (224 px; --tiny: 32 px)",
        "nvJPEG against the CPU decode on every core of this machine",
        item_decode,
        (
            ("cpu_images_per_s", "CPU decode, every core, images/s"),
            ("nvjpeg_images_per_s", "nvJPEG (data.decode: device), images/s"),
            ("nvjpeg_over_cpu", "nvJPEG / CPU"),
            ("header_images_per_s", "header stage of data.decode: device, one core, images/s"),
        ),
        (60, 90),
        (20, 15),
    ),
    Item(
        5,
        "train_vs_plain",
        "Ray Train against a plain loop, one GPU",
        "Ray's own figure: within 2.5% of plain",
        item_train_vs_plain,
        (("plain_step_ms", "plain loop step, ms"), ("ray_train_step_ms", "Ray Train step, ms"), ("ratio", "Ray Train / plain")),
        (90, 150),
        (40, 30),
    ),
    Item(
        6,
        "compile",
        "torch.compile, item 2's step",
        "compile time, and the steady-state rate on against off",
        item_compile,
        (
            ("eager_images_per_s", "eager, images/s"),
            ("compiled_images_per_s", "compiled, images/s"),
            ("speedup", "compiled / eager"),
            ("compile_s", "compile time, s"),
        ),
        (150, 150),
        (40, 25),
    ),
    Item(
        8,
        "predict",
        "rayssl predict",
        "predict_run of a ResNet-50 classifier over the corpus (CPU figure: bench/results/predict_throughput.md)",
        item_predict,
        (("images_per_s", "images/s"), ("images", "images"), ("export_s", "export, s")),
        (90, 150),
        (40, 40),
    ),
    Item(
        9,
        "peers",
        "SimCLR on CIFAR-10 against LightlySSL's loop (bench/peers.py)",
        "RaySSL >= 1.0x the peer's images/s, kNN at equal wall time within the peer's spread (2 CPU cores: 1.26x, 51.57% vs 50.48%)",
        item_peers,
        (
            ("images_per_s_rayssl", "RaySSL, images/s"),
            ("images_per_s_peer", "LightlySSL's loop, images/s"),
            ("rayssl_over_peer", "RaySSL / peer"),
            ("knn_rayssl", "RaySSL kNN at the equal wall time"),
            ("knn_peer", "LightlySSL kNN at the equal wall time"),
            ("minutes_per_runner", "minutes per runner"),
        ),
        (190, 300),
        (40, 60),
    ),
    Item(
        7,
        "few_labels",
        "Few-label accuracy, MNIST, 5 labels per class",
        "99.14% (arXiv 1711.04313); this platform's FixMatch row: 98.79 +- 0.18% after 9,000 steps on 2 CPU cores",
        item_few_labels,
        (
            ("test_acc_pct", "test accuracy, %"),
            ("steps_run", "steps run"),
            ("recipe_steps", "steps of the recipe"),
            ("steps_per_s", "steps/s"),
        ),
        (float("inf"), float("inf")),
        (50, 60),
    ),
)
BY_KEY = {item.key: item for item in ITEMS}
# Reserves are kept back for the items still to run: together they must leave the corpus, Ray's start and the
# first item a quarter of the budget.
assert all(sum(item.reserve_s[tiny] for item in ITEMS) <= 0.75 * scale.budget_s for tiny, scale in ((False, GPU), (True, TINY)))


# --- the driver ------------------------------------------------------------------------------------------------------


def run_child(key: str, ctx_path: str, result_path: str) -> int:
    """An item's process: run it, record its status."""
    ctx = Context(**json.loads(Path(ctx_path).read_text()))
    rec = Recorder(Path(result_path))
    rec(status="running")
    rec.phase("imports")
    try:
        BY_KEY[key].run(ctx, rec)
        rec(status="ok")
        return 0
    except Skipped as why:
        rec(status=f"skipped: {why}")
        return 0
    except Exception as exc:
        traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        rec(status=f"failed: {type(exc).__name__}: {first}")
        return 1
    finally:
        if ray.is_initialized():
            ray.shutdown()  # ends this job: Ray stops its workers and frees their GPU memory


def _kill_group(child: subprocess.Popen) -> None:
    """The item's process and everything it started outside Ray (its Ray workers end with its job)."""
    for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
        try:
            os.killpg(child.pid, sig)
            child.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def run_item(item: Item, ctx: Context, logs: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run one item in its own process group until its deadline; its figures, status, wall time and limit."""
    ctx_path, result_path = Path(ctx.workdir) / f"{item.key}.context.json", Path(ctx.workdir) / f"{item.key}.result.json"
    ctx_path.write_text(json.dumps(dataclasses.asdict(ctx)))
    limit, started, reason = ctx.deadline - time.time(), time.perf_counter(), ""
    command = [sys.executable, str(Path(__file__).resolve()), "--item", item.key, "--context", str(ctx_path), "--result", str(result_path)]
    with open(logs / f"{item.key}.log", "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
        try:
            code = child.wait(timeout=limit)
            reason = f"exit code {code} (log: {logs / item.key}.log)" if code else ""
        except subprocess.TimeoutExpired:
            _kill_group(child)
            reason = f"timed out after {limit:.0f} s"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    if reason and result.get("status", "running") == "running":
        result["status"] = f"failed: {reason}"
    elif reason and result["status"] == "ok":
        result["note"] = f"finished its figures, then {reason}"
    return {**result, "seconds": round(time.perf_counter() - started, 1), "limit_s": round(limit)}


def hold_ray(tiny: bool) -> None:
    """The suite's one local Ray (`--hold-ray`), held by this process until its stdin closes: when the driver ends, or
    dies. No dashboard; token authentication (RayHead's token); ray.init binds the machine's address (it maps 127.0.0.1
    to it), as the integration tests' local Ray does."""
    if tiny:  # Train's controller polls its worker every 2 s, and a tiny run waits for those polls (tests/conftest.py)
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    ray.init(
        address="local",
        num_cpus=4 if tiny else os.cpu_count(),
        num_gpus=0 if tiny else None,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    print(f"gcs_address={ray.get_runtime_context().gcs_address}", flush=True)
    os.dup2(2, 1)  # anything printed from now on goes to the log, not into the driver's unread pipe
    sys.stdin.read()
    ray.shutdown()


class RayHead:
    """The holder process of the suite's Ray. Items attach to it through RAY_ADDRESS; the driver never does, because
    Ray ends a driver whose cluster has died: a Ray that dies fails the item running on it, and the driver starts
    another for the items after it."""

    def __init__(self, tiny: bool, log: Path, workdir: Path) -> None:
        self.tiny, self.log, self.starts = tiny, log, 0
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        # Token authentication with a token of its own, as tests/integration/heads.py does: never ~/.ray/auth_token.
        token = workdir / "ray_auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "PYTHONUNBUFFERED": "1"}

    def ensure(self) -> dict[str, str]:
        """A live Ray (started now if there is none, or the last one died); the items' environment for it."""
        if self.proc is None or self.proc.poll() is not None:
            with open(self.log, "a") as log:
                command = [sys.executable, str(Path(__file__).resolve()), "--hold-ray", "tiny" if self.tiny else "gpu"]
                # Its own session: a Ctrl-C of the driver's terminal ends the holder through its stdin, in order.
                self.proc = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                    cwd=REPO,
                    env=self.env,
                    start_new_session=True,
                )
            assert self.proc.stdout is not None
            lines = (line.strip() for line in self.proc.stdout)  # until the address, or the holder's end
            self.address = next((line.split("=", 1)[1] for line in lines if line.startswith("gcs_address=")), "")
            self.starts += 1
            if not self.address:
                raise RuntimeError(f"Ray did not start (log: {self.log})")
        return {**self.env, "RAY_ADDRESS": self.address}

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the holder shuts its Ray down
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "/")


def status_cell(result: dict[str, Any]) -> str:
    status = result.get("status", "not run")
    if "seconds" not in result:
        return fmt(status)
    return fmt(f"{status}, {result['seconds']:.0f} s of {result['limit_s']} s")


def markdown(report: dict[str, Any]) -> str:
    h = report["header"]
    memory = f" ({h['device_memory_gib']} GiB)" if h["device_memory_gib"] else ""
    lines = [
        f"# GPU benchmark suite: {h['device']}",
        "",
        f"Device {h['device']}{memory}, driver {h['driver']}, CUDA {h['cuda']}, cuDNN {h['cudnn']}, NCCL {h['nccl']}, "
        f"torch {h['torch']}, Ray {h['ray']}; {h['cpus']} CPUs ({h['cpu_model']}); mode {h['mode']}; "
        f"{report['total_s'] / 60:.1f} min in all (budget {report['budget_s'] / 60:.1f} min); {h['date']}."
        + (
            " Tiny run: every model shrunk and on the CPU (settings in the JSON); its figures say only that each item runs."
            if report["tiny"]
            else ""
        ),
        "",
        "| # | item | figure | value | anchor | status |",
        "|---:|---|---|---:|---|---|",
    ]
    for item in sorted((BY_KEY[k] for k in report["items"]), key=lambda i: i.number):
        result = report["items"][item.key]
        for j, (key, label) in enumerate(item.figures):
            first = j == 0
            lines.append(
                f"| {item.number if first else ''} | {item.title if first else ''} | {label} | {fmt(result.get(key))} "
                f"| {item.anchor if first else ''} | {status_cell(result) if first else ''} |"
            )
    corpus = report["corpus"]
    lines += [
        "",
        f"Corpus: {corpus['train']:,} train + {corpus['test']:,} test synthetic ImageNet-like JPEGs ({corpus['mb']:,} MB, "
        f"written in {corpus['seconds']} s). Every figure of every item, with its settings, is in the JSON next to this page.",
        "",
        f"Reproduce: `{report['command']}` (docs/gpu.md).",
        "",
    ]
    return "\n".join(lines)


def write_report(out: Path, stem: str, report: dict[str, Any]) -> None:
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(report))


def item_limit(i: int, items: list[Item], started: float, budget: float, tiny: bool, time_scale: float) -> float:
    """Its own limit, less what the items after it keep in reserve, within the budget's remainder."""
    left = budget - (time.time() - started)
    reserve = sum(later.reserve_s[tiny] for later in items[i + 1 :]) * time_scale
    return min(items[i].limit_s[tiny] * time_scale, left - reserve)


def run_suite(args: argparse.Namespace) -> Path:
    """Corpus, Ray, each item in turn; the report rewritten after each item. Returns the JSON's path."""
    started, tiny = time.time(), args.tiny
    scale, header = TINY if tiny else GPU, machine_header(tiny)
    if not tiny and not header["gpus"]:
        raise SystemExit("no NVIDIA GPU found (NVML): run with --tiny on a machine without one")
    items = [BY_KEY[k] for k in args.only.split(",")] if args.only else list(ITEMS)
    items.sort(key=lambda i: ITEMS.index(i))
    out = Path(args.out or (BENCH / "out" if tiny else BENCH / "results")).resolve()
    logs = Path(args.logs or (out / "gpu_logs" if tiny else BENCH / "out" / "gpu_logs"))
    out.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rayssl_gpu_bench_", dir=args.workdir)).resolve()  # items run elsewhere
    budget, stem = scale.budget_s * args.time_scale, f"gpu_{slug(header['device'])}"
    report: dict[str, Any] = {"header": header, "tiny": tiny, "command": " ".join(["python", *sys.argv]), "budget_s": budget, "items": {}}
    head = RayHead(tiny, logs / "ray.log", work)  # started with the first item
    try:
        report["corpus"] = write_corpus(work, scale)
        print(f"corpus: {json.dumps(report['corpus'])}", flush=True)
        for i, item in enumerate(items):
            limit = item_limit(i, items, started, budget, tiny, args.time_scale)
            if limit < 10:
                left = budget - (time.time() - started)
                result: dict[str, Any] = {"status": f"skipped: out of time ({left:.0f} s of the budget left, kept for the items after it)"}
            else:
                shards, deadline = report["corpus"]["shards"], time.time() + limit
                ctx = Context(item.key, tiny, str(work), shards, scale.train_images, deadline, args.mnist, args.cifar)
                result = run_item(item, ctx, logs, head.ensure())
            report["items"][item.key] = result
            report["total_s"] = round(time.time() - started, 1)
            report["ray_starts"] = head.starts  # more than 1: a Ray died during an item and was started again
            write_report(out, stem, report)
            print(f"[{i + 1}/{len(items)}] {item.key}: {status_cell(result)}", flush=True)
    finally:
        head.stop()
        if not args.keep_workdir:
            shutil.rmtree(work, ignore_errors=True)
    return out / f"{stem}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny models, a few dozen images (~5 min on 2 cores)")
    parser.add_argument("--out", help="where gpu_<device>.{json,md} go (default: bench/results; --tiny: bench/out)")
    parser.add_argument("--only", help=f"comma-separated items, of: {','.join(BY_KEY)}")
    parser.add_argument("--mnist", default=str((REPO / MNIST).resolve()), help="MNIST's IDX files, for few_labels (default: %(default)s)")
    parser.add_argument("--cifar", default=str((REPO / CIFAR).resolve()), help="CIFAR-10's binary files, for peers (default: %(default)s)")
    parser.add_argument("--logs", help="each item's log (default: bench/out/gpu_logs; --tiny: <out>/gpu_logs)")
    parser.add_argument("--workdir", help="where the corpus and runs go, on a local disk (default: the system's temp dir)")
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply every time limit and the budget (a busy machine)")
    parser.add_argument("--item", help=argparse.SUPPRESS)  # an item's own process (run_item)
    parser.add_argument("--hold-ray", choices=["gpu", "tiny"], help=argparse.SUPPRESS)  # the Ray holder (RayHead)
    parser.add_argument("--context", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hold_ray:
        return hold_ray(args.hold_ray == "tiny")
    if args.item:
        sys.exit(run_child(args.item, args.context, args.result))
    if args.only and (unknown := set(args.only.split(",")) - set(BY_KEY)):
        parser.error(f"unknown items {sorted(unknown)}; choose from {','.join(BY_KEY)}")
    path = run_suite(args)
    print(path.with_suffix(".md").read_text())
    print(f"written: {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
