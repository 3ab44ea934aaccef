"""FixMatch's strong view: RandAugment with a random magnitude per operation, then Cutout, both
batched with per-sample randomness.

Sohn et al. (FixMatch, arXiv 2001.07685, appendix, table 12) draw, for every image, two operations
uniformly from the pool below, each at a magnitude drawn uniformly from its range, and then cut a
grey square out of the image (DeVries & Taylor, arXiv 1708.04552). kornia's
`kornia.augmentation.auto.RandAugment` draws one pair of operations per call, shared by the whole
batch, at one fixed magnitude; torchvision's v2 `RandAugment` transforms one image per call (a
Python loop over the batch). Here each operation of the pool runs once per slot, batched over the
rows that drew it, each row at its own magnitude (kornia's functional ops take a tensor of
factors): bench/randaugment_speed.py measures the three side by side.

Images are float [N, C, H, W] in [0, 1], grey (C = 1) or RGB (C = 3), on any device (the draws are
made there); random draws come from torch's global generator (on the CPU; CUDA's own on a GPU), as
kornia's do (the worker loop seeds both per rank).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import kornia.color
import kornia.enhance as E
import kornia.geometry.transform as G
import torch
from torch import nn

# An operation: (images [n, C, H, W] in [0, 1], magnitude in [0, 1] per row [n]) -> images [n, C, H, W].
Operation = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _between(low: float, high: float, m: torch.Tensor) -> torch.Tensor:
    """m in [0, 1] [n] -> low + (high - low) m [n]."""
    return low + (high - low) * m


def _per_row(v: torch.Tensor) -> torch.Tensor:
    """[n] -> [n, 1, 1, 1], to scale or blend whole images."""
    return v.view(-1, 1, 1, 1)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """[n, C, H, W] -> luma [n, 1, H, W] (C = 1: the image itself)."""
    return kornia.color.rgb_to_grayscale(x) if x.shape[1] == 3 else x


def auto_contrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image to the full range [0, 1] (PIL's ImageOps.autocontrast)."""
    low, high = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
    return torch.where(high > low, (x - low) / (high - low).clamp_min(1e-6), x)


def brightness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Blend with black at factor B in [0.05, 0.95] (PIL's ImageEnhance.Brightness: 0 black, 1 unchanged)."""
    return x * _per_row(_between(0.05, 0.95, m))


def color(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Blend with the image's own grey version at factor C in [0.05, 0.95] (PIL's ImageEnhance.Color)."""
    grey = _grey(x)
    return grey + _per_row(_between(0.05, 0.95, m)) * (x - grey)


def contrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean grey at factor C in [0.05, 0.95] (PIL's ImageEnhance.Contrast)."""
    return E.adjust_contrast_with_mean_subtraction(x, _between(0.05, 0.95, m))


def equalize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Equalise each channel's histogram (PIL's ImageOps.equalize)."""
    return E.equalize(x)


def identity(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return x


def posterize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Keep B in {4, .., 8} bits of each 8-bit value."""
    return E.posterize(x, _between(4, 8.999, m).floor().to(torch.uint8))  # 8.999: bits 8 as likely as the others


def rotate(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Rotate by theta in [-30, 30] degrees about the centre; nearest, black outside (PIL's default)."""
    return G.rotate(x, _between(-30.0, 30.0, m), mode="nearest")


def sharpness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance.Sharpness at factor S in [0.05, 0.95] (below 1: towards its smoothed image)."""
    return E.sharpness(x, _between(0.05, 0.95, m))


def _shear(x: torch.Tensor, m: torch.Tensor, axis: int) -> torch.Tensor:
    """Shear by R in [-0.3, 0.3] along one axis; nearest, black outside."""
    amount = torch.zeros(len(x), 2, dtype=x.dtype, device=x.device)
    amount[:, axis] = _between(-0.3, 0.3, m)
    return G.shear(x, amount, mode="nearest")


def solarize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Invert every value above a threshold T in [0, 1]."""
    return E.solarize(x, _between(0.0, 1.0, m))


def _translate(x: torch.Tensor, m: torch.Tensor, axis: int) -> torch.Tensor:
    """Move by lambda in [-0.3, 0.3] of the side along one axis, in whole pixels, black outside."""
    pixels = torch.zeros(len(x), 2, dtype=x.dtype, device=x.device)
    pixels[:, axis] = (_between(-0.3, 0.3, m) * x.shape[3 - axis]).round()
    return G.translate(x, pixels, mode="nearest")


# FixMatch's RandAugment pool (arXiv 2001.07685, table 12), name -> operation.
POOL: dict[str, Operation] = {
    "auto_contrast": auto_contrast,
    "brightness": brightness,
    "color": color,
    "contrast": contrast,
    "equalize": equalize,
    "identity": identity,
    "posterize": posterize,
    "rotate": rotate,
    "sharpness": sharpness,
    "shear_x": partial(_shear, axis=0),  # partials, not closures: the pool pickles
    "shear_y": partial(_shear, axis=1),
    "solarize": solarize,
    "translate_x": partial(_translate, axis=0),
    "translate_y": partial(_translate, axis=1),
}
# Colour saturation means nothing on grey images: their pool leaves it out.
RGB_ONLY = ("color",)


def pool_for(channels: int) -> dict[str, Operation]:
    """The operations RandAugment draws from for images of `channels` channels (1 or 3)."""
    return {name: op for name, op in POOL.items() if channels == 3 or name not in RGB_ONLY}


class RandAugment(nn.Module):
    """`ops` operations per image, each drawn uniformly (with replacement) from `pool_for(channels)`
    at a uniformly random magnitude in its range and applied with probability `p`, in the order drawn."""

    def __init__(self, ops: int, channels: int, p: float = 1.0) -> None:
        super().__init__()
        self.ops, self.pool, self.p = ops, list(pool_for(channels).values()), p

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """float [N, C, H, W] in [0, 1] -> the same shape, each image transformed by its own draws."""
        for _ in range(self.ops):
            drawn = torch.randint(len(self.pool), (len(x),), device=x.device)
            magnitude = torch.rand(len(x), device=x.device)
            # p = 1 draws nothing more, so the benchmarks' runs (p = 1) keep their random stream
            applied = torch.rand(len(x), device=x.device) < self.p if self.p < 1 else torch.ones(len(x), dtype=torch.bool, device=x.device)
            out = x.clone()  # the rows that skip this operation keep x
            for k, op in enumerate(self.pool):
                rows = ((drawn == k) & applied).nonzero().squeeze(1)
                if len(rows):
                    out[rows] = op(x[rows], magnitude[rows]).to(x.dtype)
            x = out.clamp_(0.0, 1.0)
        return x


class Cutout(nn.Module):
    """Fill a square of side `fraction` of the image's side, centred on a uniformly random pixel (and
    cut by the border, as DeVries & Taylor's), with grey 0.5, in every image."""

    def __init__(self, fraction: float) -> None:
        super().__init__()
        self.fraction = fraction

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """float [N, C, H, W] in [0, 1] -> the same shape."""
        n, _, h, w = x.shape
        half_h, half_w = self.fraction * h / 2, self.fraction * w / 2
        cy, cx = torch.randint(h, (n, 1, 1), device=x.device), torch.randint(w, (n, 1, 1), device=x.device)
        ys, xs = torch.arange(h, device=x.device).view(1, h, 1), torch.arange(w, device=x.device).view(1, 1, w)
        # rows within [cy - half_h, cy + half_h): fraction * h of them away from the border (when that is a whole even number)
        inside = (ys - cy >= -half_h) & (ys - cy < half_h) & (xs - cx >= -half_w) & (xs - cx < half_w)  # [N, H, W]
        return x.masked_fill(inside.unsqueeze(1), 0.5)
