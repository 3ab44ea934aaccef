"""A synthetic ImageNet-like JPEG corpus, generated at run time (nothing is committed).

Sizes follow a coarse version of ImageNet-1k train's distribution (most images 500 px on the long
side, 3:4 or 2:3, some larger); content is a smooth random field plus pixel noise, so that files
at quality 90 weigh about what ImageNet's do (~110 KB). Class folders make it a labelled `folder`
source for `rayssl shards build`.

    .venv/bin/python bench/synthetic_imagenet.py --out /tmp/synthetic_imagenet --n 20000
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

SIZES = [
    ((500, 375), 0.42),
    ((375, 500), 0.14),
    ((500, 333), 0.12),
    ((333, 500), 0.06),
    ((500, 500), 0.06),
    ((640, 480), 0.06),
    ((400, 300), 0.05),
    ((800, 600), 0.05),
    ((1024, 768), 0.04),
]


def synthetic_jpeg(rng: np.random.Generator, quality: int = 90) -> bytes:
    """One JPEG of a size drawn from SIZES: a coarse random colour field, upsampled, plus noise."""
    ((width, height),) = rng.choice([s for s, _ in SIZES], p=[p for _, p in SIZES], size=1)
    coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    pixels = np.clip(field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_corpus(out: Path, n: int, classes: int = 10, seed: int = 0) -> list[Path]:
    """n JPEGs under out/class_XX/, round-robin over classes; returns their paths."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = out / f"class_{i % classes:02d}" / f"img_{i:07d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(synthetic_jpeg(rng))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = write_corpus(Path(args.out), args.n, seed=args.seed)
    sizes = [p.stat().st_size for p in paths]
    print(f"{len(paths)} JPEGs in {args.out}: mean {np.mean(sizes) / 1e3:.0f} KB, {sum(sizes) / 1e6:.0f} MB in all")


if __name__ == "__main__":
    main()
