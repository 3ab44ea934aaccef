"""Per-image cost of a RandAugment strong view on this machine, three ways, side by side in one run:

- rayssl: `rayssl.data.randaugment.RandAugment` + Cutout, each image its own two operations and
  magnitudes, batched per operation (what the CPU stage runs);
- kornia: `kornia.augmentation.auto.RandAugment(n=2, m=...)` + `RandomErasing`, one call per batch:
  every image of the batch gets the same two operations at one magnitude;
- torchvision: v2 `RandAugment(num_ops=2)` per image (its parameters are drawn once per call, so
  per-image randomness is one call per image), on uint8 tensors.

Writes bench/results/randaugment_speed.{json,md}.

    .venv/bin/python bench/randaugment_speed.py
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import kornia.augmentation as K
import torch
from kornia.augmentation.auto import RandAugment as KorniaRandAugment
from kornia.augmentation.auto.rand_augment.rand_augment import default_policy
from torchvision.transforms import v2

from rayssl.data.randaugment import Cutout, RandAugment

SHAPES = {"RGB 32 px (CIFAR-10)": (3, 32), "grey 28 px (MNIST)": (1, 28)}


def per_image_us(augment: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, repeats: int) -> float:
    """Median over `repeats` timed calls on the batch (after one warm-up), in microseconds per image."""
    augment(images)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        augment(images)
        times.append(time.perf_counter() - started)
    return 1e6 * sorted(times)[len(times) // 2] / len(images)


def contenders(channels: int, size: int) -> dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], bool]]:
    """name -> (augment on a batch, whether it takes uint8 [N, C, H, W] instead of float in [0, 1])."""
    ours = torch.nn.Sequential(RandAugment(2, channels), Cutout(0.5))
    # kornia's default pool changes saturation, which fails on one channel: grey images get it without
    policy = None if channels == 3 else [p for p in default_policy if p[0][0] != "color"]
    kornia_batch = K.AugmentationSequential(
        KorniaRandAugment(n=2, m=15, policy=policy), K.RandomErasing(p=1.0, scale=(0.25, 0.25), ratio=(1.0, 1.0))
    )
    tv_one = v2.Compose([v2.RandAugment(num_ops=2), v2.RandomErasing(p=1.0, scale=(0.25, 0.25), ratio=(1.0, 1.0), value=127)])

    def torchvision_loop(batch: torch.Tensor) -> torch.Tensor:
        return torch.stack([tv_one(image) for image in batch])

    return {
        "rayssl (per image, batched per operation)": (ours, False),
        "kornia RandAugment (one draw per batch)": (kornia_batch, False),
        "torchvision v2 RandAugment (one call per image)": (torchvision_loop, True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a CPU-stage task runs on one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for shape_name, (channels, size) in SHAPES.items():
        uint8 = torch.randint(0, 256, (args.batch, channels, size, size), dtype=torch.uint8)
        for name, (augment, takes_uint8) in contenders(channels, size).items():
            images = uint8 if takes_uint8 else uint8.float() / 255
            us = per_image_us(augment, images, args.repeats)
            rows.append({"images": shape_name, "implementation": name, "us_per_image": round(us, 1)})
            print(json.dumps(rows[-1]), flush=True)
    out = Path("bench/results/randaugment_speed")
    setup = {"batch": args.batch, "threads": args.threads, "repeats": args.repeats}
    out.with_suffix(".json").write_text(json.dumps({**setup, "rows": rows}, indent=2))
    lines = [
        f"RandAugment (2 operations) + Cutout per image, batches of {args.batch}, {args.threads} torch thread(s), "
        f"median of {args.repeats} calls (2-core CPU). kornia's RandAugment draws one set of operations and magnitude per batch; the other two draw per image.",
        "",
        "| images | implementation | µs per image |",
        "|---|---|---:|",
        *(f"| {r['images']} | {r['implementation']} | {r['us_per_image']:.0f} |" for r in rows),
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
