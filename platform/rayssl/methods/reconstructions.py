"""MAE reconstruction grids a person can look at: original / masked input / reconstruction.

Rank 0 writes `<run_dir>/reconstructions/epoch_XXXX.png` (and `latest.png`) at every
checkpoint, always for the same held-out images and the same masks, so grids from different
epochs compare directly.
"""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import torch
from torchvision.utils import make_grid, save_image

from rayssl.config import PretrainConfig
from rayssl.data import storage
from rayssl.data.decode import decode_batch, image_spec
from rayssl.data.shards import list_shards, read_manifest
from rayssl.data.transforms import ImageTransform
from rayssl.models.vit import patchify, unpatchify

MASK_SEED = 1234


def fixed_images(cfg: PretrainConfig, count: int) -> torch.Tensor:
    """The first `count` decodable images of the test split (train if there is none): [N, C, H, W] in [-1, 1]."""
    splits = read_manifest(cfg.data.shards, cfg.storage)["splits"]
    split = "test" if "test" in splits and splits["test"]["rows"] else "train"
    spec, images = image_spec(cfg.data, train=False), []
    for shard in list_shards(cfg.data.shards, split, cfg.storage):
        fs, path = storage.resolve(shard.uri, cfg.storage)
        table = pq.read_table(path, filesystem=fs, columns=["sample_id", "index", "image"]).slice(0, count)
        ok, decoded, _ = decode_batch(
            table.column("sample_id").to_pylist(), table.column("index").to_numpy(), table.column("image").to_pylist(), spec
        )
        images.append(torch.from_numpy(ImageTransform(spec.size, None)(decoded)))
        if sum(len(i) for i in images) >= count:
            break
    return torch.cat(images)[:count]


@torch.no_grad()
def reconstruction_grid(model: torch.nn.Module, images: torch.Tensor, patch: int, norm_pix: bool) -> torch.Tensor:
    """[3 rows x N] image grid [C, H', W'] in [0, 1]: originals, masked inputs, reconstructions
    (visible patches pasted from the original, as in the MAE paper's figures)."""
    model.eval()
    device = next(model.parameters()).device
    images = images.to(device)
    pred, mask = model(images, generator=torch.Generator().manual_seed(MASK_SEED))
    pred = pred.float()
    if norm_pix:  # the model predicts normalised patches: undo with each patch's own statistics
        target = patchify(images, patch)
        pred = pred * (target.var(dim=-1, keepdim=True) + 1e-6).sqrt() + target.mean(dim=-1, keepdim=True)
    channels = images.shape[1]
    pixel_mask = unpatchify(mask[..., None].expand(-1, -1, patch * patch * channels), patch, channels)  # 1 = masked
    recon = unpatchify(pred, patch, channels)
    masked = images * (1 - pixel_mask) + (-1) * pixel_mask  # masked patches shown dark
    pasted = images * (1 - pixel_mask) + recon * pixel_mask
    rows = torch.cat([images, masked, pasted]).clamp(-1, 1).add(1).div(2)
    return make_grid(rows.cpu(), nrow=len(images), padding=2, pad_value=1.0)


def write_reconstructions(model: torch.nn.Module, cfg: PretrainConfig, run_dir: str, epoch: int) -> torch.Tensor:
    """Write the grid of this epoch (and latest.png) under <run_dir>/reconstructions/; returns the grid [C, H', W'] in [0, 1]."""
    grid = reconstruction_grid(model, fixed_images(cfg, cfg.mae.recon_images), cfg.model.vit.patch_size, cfg.mae.norm_pix_loss)
    buf = io.BytesIO()
    save_image(grid, buf, format="png")
    uri = storage.join(run_dir, "reconstructions", f"epoch_{epoch:04d}.png")
    storage.write_bytes(uri, buf.getvalue(), cfg.storage)
    storage.write_bytes(storage.join(run_dir, "reconstructions", "latest.png"), buf.getvalue(), cfg.storage)
    return grid
