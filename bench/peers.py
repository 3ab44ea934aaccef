"""SimCLR on CIFAR-10, RaySSL against a peer on the same cores: LightlySSL's loop (its NTXentLoss, its
SimCLR transform, a torch DataLoader). The same backbone and projection head (configs/
simclr_cifar10_small_cnn.yaml: small_cnn of width 32, RaySSL's head 512 -> 128 for both, so that a
step costs the same; LightlySSL's SimCLRProjectionHead would add a batch norm), the same global batch
(data.batch_size x train.num_workers images, two views each), views (crop 0.08-1, flip, colour
jitter s = 0.5 with p = 0.8, greyscale p = 0.2, no blur; LightlySSL normalises to [-1, 1] as RaySSL
does), optimiser (AdamW, optim.lr and weight_decay, no schedule) and temperature.

RaySSL runs as `rayssl pretrain --no-eval` (Ray Data views, 2 Ray Train workers, a checkpoint per
epoch); the peer as one process with the DataLoader's workers. Each runs in its own child process,
one after the other, until the last of --minutes (wall time from the child's launch: imports, Ray's
start-up, data loading and every epoch's start count), and is then stopped. "At T minutes" is, for
both, the newest epoch-end checkpoint written by T. Steady-state images/s (images, not views): the
median over epochs after the first of each epoch's rate. kNN (k = eval.knn_k, cosine) on the
backbone's frozen features, fit on the first eval.max_train_samples train images and scored on the
test split, by the project's own evaluation (rayssl.eval.features + rayssl.eval.probes), for both.

    pip install -e '.[bench]'    # lightly; never a main dependency
    .venv/bin/rayssl shards build --source cifar10 --path ../shared/data/cifar10 --out data/shards/cifar10
    .venv/bin/python bench/peers.py [--minutes 5 15]   # about 2 x 15 + 3 min; bench/results/peers.{json,md}
    .venv/bin/python bench/peers.py --tiny             # 2-3 min, start-ups mostly: 1,024 images, batch 64; bench/out/peers_tiny/
    .venv/bin/python bench/peers.py --device cuda --minutes 1   # one GPU: one worker, batch 512 (make bench-gpu's item 9)

On a GPU (--device cuda) both runners train on it with the step RaySSL's loop takes there (bf16 autocast,
channels_last, fused AdamW: train.precision, channels_last, fused_optimizer), RaySSL with one Ray Train
worker, the peer with its DataLoader's workers on every core; the global batch is 512.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rayssl.config import PretrainConfig, StorageConfig, load_config
from rayssl.data.shards import write_shards
from rayssl.data.sources import SourceData, cifar10_arrays, load_source
from rayssl.eval.features import extract_features
from rayssl.eval.probes import knn_accuracy
from rayssl.methods import build_method
from rayssl.models import build_backbone, feature_dim
from rayssl.models.contrastive import ContrastiveNet
from rayssl.train.launch import init_ray
from rayssl.train.pretrained import load_pretrained_backbone

CONFIG = "configs/simclr_cifar10_small_cnn.yaml"
CIFAR = "../shared/data/cifar10"
TINY_ROWS = (1024, 512)  # train, test images of the tiny shards
GPU_OVERRIDES = ["data.batch_size=512", "train.num_workers=1"]  # --device cuda: one worker, one GPU, SimCLR's usual batch


@dataclass(frozen=True)
class Settings:
    minutes: list[float]
    shards: str
    out: Path  # runs, the tiny shards, and (tiny) the results
    results: Path  # where peers.{json,md} go
    overrides: list[str]  # on CONFIG, for both runners
    loader_workers: int
    cifar: str  # the raw CIFAR-10 files the peer reads
    tiny: bool = False
    device: str = "cpu"  # "cuda": both runners train on the GPU
    cfg: PretrainConfig = field(init=False)

    def __post_init__(self) -> None:
        overrides = [f"data.shards={self.shards}", *self.overrides, f"train.use_gpu={str(self.device == 'cuda').lower()}"]
        object.__setattr__(self, "cfg", load_config(PretrainConfig, CONFIG, overrides))

    @property
    def deadline_s(self) -> float:
        return 60 * max(self.minutes)

    @property
    def global_batch(self) -> int:
        return self.cfg.data.batch_size * self.cfg.train.num_workers


def settings_of(args: argparse.Namespace) -> Settings:
    """Full run: CIFAR-10 shards, results in bench/results. Tiny: 1,024 train images, batch 64, bench/out/peers_tiny.
    --device cuda adds GPU_OVERRIDES; --out replaces the output folder (results go there too)."""
    gpu = GPU_OVERRIDES if args.device == "cuda" else []
    if not args.tiny:
        out, results = (Path(args.out), Path(args.out)) if args.out else (Path("bench/out/peers"), Path("bench/results"))
        return Settings(args.minutes, args.shards, out, results, gpu, args.loader_workers, args.cifar, device=args.device)
    out = Path(args.out or "bench/out/peers_tiny")
    shards = tiny_shards(args.cifar, out / "shards")
    overrides = ["data.batch_size=64", f"eval.max_train_samples={TINY_ROWS[0]}", *gpu[1:]]
    return Settings(args.minutes, shards, out, out, overrides, args.loader_workers, args.cifar, tiny=True, device=args.device)


def tiny_shards(cifar: str, out: Path) -> str:
    """The first TINY_ROWS train and test images of CIFAR-10 as shards (the rows the peer reads too)."""
    if not (out / "manifest.json").exists():
        source = load_source("cifar10", cifar)
        splits = {split: itertools.islice(source.splits[split], n) for split, n in zip(("train", "test"), TINY_ROWS)}
        write_shards(SourceData(splits, source.classes), str(out), rows_per_shard=256, source_name="cifar10")
    return str(out)


def device_name(device: str) -> str:
    """What both runners trained on: the GPU if they used one, and the CPU's model and core count."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line), "")
    cpu = f"cpu: {model or platform.processor()}, {os.cpu_count()} logical cores"
    if device == "cuda":
        return f"{torch.cuda.get_device_name(0)} ({cpu})"
    return cpu + (f"; {torch.cuda.get_device_name(0)} present, not used" if torch.cuda.is_available() else "")


def stop_session(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """End a child started in its own session, and what it started there: SIGINT (Ray shuts its
    local instance down on the way out), then SIGTERM, then SIGKILL, to that process group only."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue


def run_rayssl(s: Settings) -> list[dict[str, Any]]:
    """`rayssl pretrain` until the deadline; each epoch-end checkpoint: {epoch, wall_s (from launch),
    images_per_s (that epoch's, all workers), checkpoint (its URI)}."""
    name, storage_path = "peers_rayssl", s.out / "runs"
    shutil.rmtree(storage_path / name, ignore_errors=True)  # a fresh run, never a resumed one
    sets = [*s.overrides, f"run.name={name}", f"run.storage_path={storage_path}", "train.epochs=10000", "train.num_to_keep=10000"]
    command = [str(Path(sys.executable).with_name("rayssl")), "pretrain", "--config", CONFIG, "--no-eval"]
    command += [arg for value in [f"data.shards={s.shards}", *sets] for arg in ("--set", value)]
    log = (s.out / "rayssl.log").open("w")
    launched = time.time()
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while proc.poll() is None and time.time() - launched < s.deadline_s:
            time.sleep(1.0)
        ended_early = proc.poll()  # it runs until stopped (10,000 epochs): an exit of its own is a failure
    finally:
        stop_session(proc)
        log.close()
    if ended_early is not None:
        raise RuntimeError(f"rayssl pretrain exited ({ended_early}) before the deadline: see {s.out / 'rayssl.log'}")
    return epoch_checkpoints(storage_path / name, launched)


def epoch_checkpoints(run_dir: Path, launched: float) -> list[dict[str, Any]]:
    """A run's checkpoints, by epoch: {epoch (epochs done), wall_s (meta.json's mtime less `launched`, a
    time.time()), images_per_s (that epoch's, all workers), checkpoint (its folder)}."""
    found = []
    for meta_path in run_dir.glob("checkpoint_*/meta.json"):  # meta.json is written last: the checkpoint is complete then
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError:  # cut short when the run was stopped: after the deadline, so not needed
            continue
        rate = meta.get("metrics", {}).get("images_per_s")
        found.append(
            {
                "epoch": meta["epoch"],
                "wall_s": meta_path.stat().st_mtime - launched,
                "images_per_s": rate,
                "checkpoint": str(meta_path.parent),
            }
        )
    return sorted(found, key=lambda c: c["epoch"])


def run_peer(s: Settings) -> list[dict[str, Any]]:
    """This script's --peer-run child until the deadline; its epoch ends, as run_rayssl's."""
    out = s.out / "peer"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    launched = time.time()
    command = [sys.executable, __file__, "--peer-run", str(out), "--deadline", str(launched + s.deadline_s)]
    command += ["--loader-workers", str(s.loader_workers), "--cifar", s.cifar, "--device", s.device, "--out", str(s.out)]
    command += ["--tiny"] if s.tiny else []
    with (s.out / "peer.log").open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=s.deadline_s + 300)  # it stops itself at the deadline
        finally:
            stop_session(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"the LightlySSL loop failed ({proc.returncode}): see {s.out / 'peer.log'}")
    epochs = json.loads((out / "epochs.json").read_text())
    return [{**e, "wall_s": e["end"] - launched} for e in epochs]


def cifar_images(root: str, rows: int | None) -> np.ndarray:
    """CIFAR-10's train images, uint8 [N, 32, 32, 3], in the shards' order (the first `rows` of them)."""
    batches = None if rows is None else -(-rows // 10_000)  # 10,000 images per file
    return np.ascontiguousarray(cifar10_arrays(root, "train", batches)[0][:rows])


class TwoViews(torch.utils.data.Dataset):
    """uint8 [N, 32, 32, 3] images -> (view 1, view 2), float32 [3, 32, 32] each, by LightlySSL's SimCLRTransform."""

    def __init__(self, images: np.ndarray, transform: Any) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        first, second = self.transform(Image.fromarray(self.images[i]))
        return first, second


def peer_loader(s: Settings, images: np.ndarray) -> torch.utils.data.DataLoader:
    """LightlySSL's SimCLR views of RaySSL's data.augment (normalised to [-1, 1] as RaySSL's are), in a DataLoader."""
    from lightly.transforms import SimCLRTransform

    a = s.cfg.data.augment
    transform = SimCLRTransform(
        input_size=s.cfg.data.image_size,
        cj_prob=0.8,  # RaySSL's colour jitter: p = 0.8, strengths 0.8 s (brightness, contrast, saturation) and 0.2 s (hue)
        cj_strength=a.color_jitter,
        min_scale=a.crop_scale_min,
        random_gray_scale=a.grayscale_p,
        gaussian_blur=a.blur_p,
        hf_prob=0.5 if a.horizontal_flip else 0.0,
        normalize={"mean": [0.5] * 3, "std": [0.5] * 3},
    )
    return torch.utils.data.DataLoader(
        TwoViews(images, transform),
        batch_size=s.global_batch,
        shuffle=True,
        drop_last=True,
        num_workers=s.loader_workers,
        pin_memory=s.device == "cuda",
    )


def peer_step(s: Settings) -> tuple[ContrastiveNet, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """The peer's model on s.device and its training step: (view 1, view 2), float32 [B, 3, H, W] each on
    the CPU -> the batch's NT-Xent loss (detached, on the device). On a GPU the step is the one RaySSL's
    loop takes there: train.precision's autocast, channels_last and the fused AdamW when the config says so."""
    from lightly.loss import NTXentLoss

    device, train = torch.device(s.device), s.cfg.train
    cuda = device.type == "cuda"
    torch.manual_seed(train.seed)
    c, model_cfg = s.cfg.contrastive, s.cfg.model
    backbone = build_backbone(model_cfg, 3, s.cfg.data.image_size)
    model = ContrastiveNet(backbone, feature_dim(model_cfg), c.projection_hidden, c.projection_dim).to(device)
    memory_format = torch.channels_last if cuda and train.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    o = s.cfg.optim
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=o.lr, eps=o.eps, weight_decay=o.weight_decay, fused=(cuda and train.fused_optimizer) or None
    )
    criterion = NTXentLoss(temperature=c.temperature)

    def step(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        views = torch.cat([first, second]).to(device, non_blocking=True).contiguous(memory_format=memory_format)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and train.precision == "bf16"):
            z = model(views).float()  # one forward over both views: batch norm sees 2B images, as RaySSL's step
            loss = criterion(z[: len(first)], z[len(first) :])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return model, step


def peer_main(args: argparse.Namespace) -> None:
    """The peer's child: LightlySSL's loop until --deadline; after each whole epoch, the backbone's
    weights (epoch_<k>.pt) and a line of epochs.json {epoch, end (time.time()), images_per_s, loss}."""
    s, out = settings_of(args), Path(args.peer_run)
    images = cifar_images(s.cifar, TINY_ROWS[0] if s.tiny else None)
    (model, step), loader, epochs = peer_step(s), peer_loader(s, images), []
    model.train()
    while time.time() < args.deadline:
        started, seen, loss_sum = time.time(), 0, torch.zeros((), device=s.device)
        for first, second in loader:
            if time.time() >= args.deadline:
                break  # the epoch is not finished: no checkpoint, as RaySSL's run stopped mid-epoch
            loss = step(first, second)
            seen, loss_sum = seen + len(first), loss_sum + loss * len(first)  # summed where it is, read once an epoch
        else:
            torch.save(model.backbone.state_dict(), out / f"epoch_{len(epochs) + 1}.pt")
            end = time.time()
            epochs.append(
                {"epoch": len(epochs) + 1, "end": end, "images_per_s": seen / (end - started), "loss": float(loss_sum) / max(seen, 1)}
            )
            (out / "epochs.json").write_text(json.dumps(epochs, indent=1))
            continue
        break
    (out / "epochs.json").write_text(json.dumps(epochs, indent=1))


def newest_by(epochs: list[dict[str, Any]], seconds: float) -> dict[str, Any] | None:
    """The newest epoch end at or before `seconds` of wall time; None before the first."""
    done = [e for e in epochs if e["wall_s"] <= seconds]
    return done[-1] if done else None


def steady_rate(epochs: list[dict[str, Any]]) -> float | None:
    """Median images/s over the epochs after the first (it pays the start-up); the first if it is the only one."""
    rates = [e["images_per_s"] for e in epochs if e.get("images_per_s")]
    return float(np.median(rates[1:] if len(rates) > 1 else rates)) if rates else None


def backbone_of(s: Settings, runner: str, epoch: dict[str, Any]) -> torch.nn.Module:
    """The backbone an epoch-end checkpoint holds: RaySSL's through the platform's loader, the peer's from its weights."""
    if runner == "rayssl":
        return load_pretrained_backbone(epoch["checkpoint"], StorageConfig())[0]
    net = build_backbone(s.cfg.model, s.cfg.data.channels, s.cfg.data.image_size)
    net.load_state_dict(torch.load(s.out / "peer" / f"epoch_{epoch['epoch']}.pt", map_location="cpu", weights_only=True))
    return net


def evaluate(s: Settings, runs: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """kNN accuracy of every backbone picked at one of s.minutes, and of the random init, by name ("rayssl epoch 3")."""
    torch.manual_seed(s.cfg.train.seed)  # the initialisation both runs started from, as `rayssl eval` builds it
    backbones = {"random init": build_method(s.cfg, num_samples=0).backbone()}
    for runner, epochs in runs.items():
        for minutes in s.minutes:
            epoch = newest_by(epochs, 60 * minutes)
            if epoch is not None and f"{runner} epoch {epoch['epoch']}" not in backbones:
                backbones[f"{runner} epoch {epoch['epoch']}"] = backbone_of(s, runner, epoch)
    init_ray(s.cfg.ray)
    run_dir, storage_cfg = str(s.out / "eval"), StorageConfig()
    train_x, train_y = extract_features(backbones, s.cfg.data, "train", run_dir, storage_cfg, limit=s.cfg.eval.max_train_samples)
    test_x, test_y = extract_features(backbones, s.cfg.data, "test", run_dir, storage_cfg)
    return {name: knn_accuracy(train_x[name], train_y, test_x[name], test_y, s.cfg.eval.knn_k) for name in backbones}


def summary(s: Settings, runs: dict[str, list[dict[str, Any]]], knn: dict[str, float]) -> dict[str, Any]:
    """The JSON: device, both steady-state rates, and per wall time both kNN accuracies and epochs done."""
    import lightly

    rates = {runner: steady_rate(epochs) for runner, epochs in runs.items()}
    result: dict[str, Any] = {
        "device": device_name(s.device),
        "config": CONFIG,
        "overrides": s.overrides,
        "tiny": s.tiny,
        "minutes": s.minutes,
        "global_batch": s.global_batch,
        "views": 2,
        "rayssl_train_workers": s.cfg.train.num_workers,
        "peer_loader_workers": s.loader_workers,
        "images_per_s_rayssl": rates["rayssl"],
        "images_per_s_peer": rates["peer"],
        "rayssl_over_peer": rates["rayssl"] / rates["peer"] if rates["rayssl"] and rates["peer"] else None,
        "knn_random_init": knn["random init"],
        "knn_k": s.cfg.eval.knn_k,
        "versions": {"lightly": lightly.__version__, "torch": torch.__version__},
    }
    for minutes in s.minutes:
        for runner, epochs in runs.items():
            epoch = newest_by(epochs, 60 * minutes)
            result[f"knn_{runner}_at_{minutes:g}min"] = knn[f"{runner} epoch {epoch['epoch']}"] if epoch else None
            result[f"epochs_{runner}_at_{minutes:g}min"] = epoch["epoch"] if epoch else 0
    result["epochs"] = runs
    return result


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def markdown(r: dict[str, Any]) -> str:
    """The results page: what was run, the comparison table (docs/benchmarks.md copies it), every epoch."""
    ratio = f"{r['rayssl_over_peer']:.2f}x" if r["rayssl_over_peer"] else "–"
    rate = {runner: "–" if r[f"images_per_s_{runner}"] is None else f"{r[f'images_per_s_{runner}']:.0f}" for runner in ("rayssl", "peer")}
    lines = [
        f"SimCLR on CIFAR-10{' (tiny: 1,024 images, batch 64)' if r['tiny'] else ''}, {r['device']}: RaySSL (`rayssl pretrain`, "
        f"{r['rayssl_train_workers']} Ray Train workers) against LightlySSL {r['versions']['lightly']}'s loop (NTXentLoss, "
        f"SimCLRTransform, a DataLoader with {r['peer_loader_workers']} workers); the same small_cnn, head, views, AdamW and "
        f"global batch ({r['global_batch']} images x {r['views']} views); one run each. kNN (k = {r['knn_k']}) on frozen "
        'features; "at T min": the newest epoch-end checkpoint by T minutes of wall time from launch.',
        "",
        "| figure | RaySSL | LightlySSL's loop | RaySSL vs peer |",
        "|---|---:|---:|---:|",
        f"| steady-state images/s | {rate['rayssl']} | {rate['peer']} | {ratio} |",
    ]
    for minutes in r["minutes"]:
        ours, peer = r[f"knn_rayssl_at_{minutes:g}min"], r[f"knn_peer_at_{minutes:g}min"]
        gap = f"{100 * (ours - peer):+.2f} points" if ours is not None and peer is not None else "–"
        lines.append(
            f"| kNN at {minutes:g} min (epochs done) | {_pct(ours)} ({r[f'epochs_rayssl_at_{minutes:g}min']}) "
            f"| {_pct(peer)} ({r[f'epochs_peer_at_{minutes:g}min']}) | {gap} |"
        )
    lines += [f"| kNN of the backbone at its random init | {_pct(r['knn_random_init'])} | {_pct(r['knn_random_init'])} | |", ""]
    lines += ["Every epoch end (wall time from launch):", "", "| runner | epoch | ends at | images/s |", "|---|---:|---:|---:|"]
    for runner, epochs in r["epochs"].items():
        lines += [f"| {runner} | {e['epoch']} | {e['wall_s']:.0f} s | {e['images_per_s'] or 0:.0f} |" for e in epochs]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", help="equal wall times (default 5 15; --tiny: 0.5 0.75)")
    parser.add_argument("--tiny", action="store_true", help="1,024 images, batch 64, short times; results in bench/out/peers_tiny")
    parser.add_argument("--shards", default="data/shards/cifar10")
    parser.add_argument("--cifar", default=CIFAR, help="the raw CIFAR-10 files the peer reads (binary version, xz)")
    parser.add_argument("--loader-workers", type=int, default=os.cpu_count() or 2, help="the peer's DataLoader workers")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: both on one GPU, one worker, batch 512")
    parser.add_argument("--out", help="runs and results here (default bench/out/peers, results in bench/results)")
    parser.add_argument("--peer-run", help=argparse.SUPPRESS)  # the peer's child process: its output folder
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)  # the peer's child: time.time() to stop at
    args = parser.parse_args(argv)
    args.minutes = args.minutes or ([0.5, 0.75] if args.tiny else [5.0, 15.0])
    return args


def compare(s: Settings) -> dict[str, Any]:
    """Both runners until the last of s.minutes, one after the other, then kNN of each at every s.minutes:
    summary()'s dict, also written as s.results/peers.{json,md}."""
    s.out.mkdir(parents=True, exist_ok=True)
    started, runs = time.perf_counter(), {}
    for runner, run in (("rayssl", run_rayssl), ("peer", run_peer)):
        runs[runner] = run(s)
        print(f"{runner}: {len(runs[runner])} epochs by the deadline; {time.perf_counter() - started:.0f} s so far", flush=True)
    result = summary(s, runs, evaluate(s, runs))
    s.results.mkdir(parents=True, exist_ok=True)
    (s.results / "peers.json").write_text(json.dumps(result, indent=1))
    (s.results / "peers.md").write_text(markdown(result))
    print(markdown(result), f"\n{time.perf_counter() - started:.0f} s in all; written to {s.results}/peers.{{json,md}}", flush=True)
    return result


def lightly_missing() -> str | None:
    """Why the peer cannot run here (LightlySSL is a bench-only extra), or None."""
    try:
        import lightly  # noqa: F401
    except ImportError:
        return "LightlySSL is not installed: pip install -e '.[bench]'"
    return None


def main() -> None:
    args = parse_args()
    if args.peer_run:
        peer_main(args)
        return
    if why := lightly_missing():
        raise SystemExit(why)
    compare(settings_of(args))


if __name__ == "__main__":
    main()
