"""The report's example images as stored: a few rows read back from the shards for the contact sheet.

The scan keeps only 28 x 28 grey analysis images; a colour-shifted duplicate or a mislabelled photo
has to be seen in colour at its own resolution. Only the rows shown are read: pyarrow's filter on the
`index` column skips every row group whose index statistics exclude them, so the cost is a few row
groups per example, not a pass over the corpus.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow.compute as pc
from PIL import Image

from rayssl.config import StorageConfig
from rayssl.data.decode import DecodeError, decode_pixels
from rayssl.data.shardset import ShardSet

# Examples are drawn about an inch wide: larger images are shrunk to this side (aspect kept) so that a
# sheet of 4,000-pixel photos stays a small PNG and a small figure in memory.
MAX_SIDE = 128


def read_examples(
    shards_uri: str, wanted: list[tuple[str, int]], storage_cfg: StorageConfig, max_side: int = MAX_SIDE
) -> dict[tuple[str, int], np.ndarray]:
    """{(split, index): uint8 [H, W, C]} for the rows named, decoded as stored (C = 1 grey, 3 colour).

    Rows that are absent or no longer decode are left out (the caller draws something else for them).
    H and W are at most `max_side`.
    """
    by_split: dict[str, set[int]] = defaultdict(set)
    for split, index in wanted:
        by_split[split].add(int(index))
    if not by_split:
        return {}
    shards = ShardSet.open(shards_uri, storage_cfg, check=False)
    images: dict[tuple[str, int], np.ndarray] = {}
    for split, indices in sorted(by_split.items()):
        if not shards.has(split):
            continue
        table = shards.read_columns(split, ["index", "image"], pc.field("index").isin(sorted(indices)))
        for index, data in zip(table.column("index").to_pylist(), table.column("image").to_pylist()):
            try:
                pixels, _ = decode_pixels(data)
            except DecodeError:
                continue
            images[split, int(index)] = shrunk(pixels, max_side)
    return images


def shrunk(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [h, w, C] with max(h, w) <= max_side, aspect kept (unchanged if already small)."""
    height, width, channels = pixels.shape
    if max(height, width) <= max_side:
        return pixels
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    img = Image.fromarray(pixels[..., 0] if channels == 1 else pixels).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).reshape(size[1], size[0], channels)
