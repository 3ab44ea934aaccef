"""Decoding only a JPEG's crop box through libjpeg-turbo's TurboJPEG 3 API: the two side columns
of bench/decode_jpeg.py. Neither is in the platform (rayssl.data.decode decodes the whole image at
a reduced DCT scale with simplejpeg, then crops):

  lossless crop   PyTurboJPEG's `crop` (a lossless transform that cuts the JPEG on iMCU
                  boundaries, then re-encodes the cut) and `decode(..., scaling_factor=(1, f))`;
  region decode   tj3SetCroppingRegion + tj3SetScalingFactor on one decompressor, through ctypes:
                  libjpeg-turbo skips the rows above and below the box and the columns beside it
                  (PyTurboJPEG does not expose it).

Both need PyTurboJPEG (`pip install -e '.[bench]'`) and libturbojpeg >= 3.0 (the tj3 functions),
which neither the project's set-up nor Debian 12 (2.1.5) provides; `--turbojpeg-lib PATH` points at
one, e.g. the copy the `turbojpeg` wheel bundles (`pip download turbojpeg==0.0.2`, unzip:
turbojpeg.libs/libturbojpeg-*.so.0.3.0, libjpeg-turbo 3.0 beta).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from typing import Any

import numpy as np
import torch

from rayssl.data.decode import Box, ImageSpec, _dct_factor, crop_and_resize, crop_box_of_size


def open_turbojpeg(lib_path: str | None) -> TurboCrop | str:
    """Both decoders on the library at `lib_path` (None: PyTurboJPEG's own search), or why not."""
    try:
        import turbojpeg
    except ImportError:
        return "unavailable: PyTurboJPEG is not installed (pip install -e '.[bench]')"
    try:
        return TurboCrop(turbojpeg, turbojpeg.TurboJPEG(lib_path), lib_path)
    except (OSError, RuntimeError) as exc:  # no library found, or one without the tj3 API (libjpeg-turbo < 3.0)
        return "unavailable: " + str(exc).splitlines()[0]


class TurboCrop:
    """uint8 [spec.size, spec.size, spec.channels] from JPEG bytes, decoding only the crop box of
    `spec` (drawn with torch's RNG on the header's size, as rayssl.data.decode does), then the same
    crop_and_resize as the platform. One thread; one decompressor handle reused across calls."""

    def __init__(self, module: Any, jpeg: Any, lib_path: str | None) -> None:
        self.tj, self.jpeg = module, jpeg
        found = lib_path or ctypes.util.find_library("turbojpeg")
        if found is None:  # PyTurboJPEG also looks in a few fixed folders: name the library with --turbojpeg-lib
            raise OSError("libturbojpeg not on the loader's path: pass --turbojpeg-lib")
        self.lib = ctypes.CDLL(found)
        self.lib.tj3Init.restype = ctypes.c_void_p
        self.lib.tj3GetErrorStr.restype = ctypes.c_char_p
        for name, args in {
            "tj3DecompressHeader": [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t],
            "tj3Get": [ctypes.c_void_p, ctypes.c_int],
            "tj3SetScalingFactor": [ctypes.c_void_p, module.ScalingFactor],
            "tj3SetCroppingRegion": [ctypes.c_void_p, module.CroppingRegion],
            "tj3Decompress8": [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int, ctypes.c_int],
        }.items():
            getattr(self.lib, name).argtypes = args
        self.handle = self.lib.tj3Init(module.TJINIT_DECOMPRESS)

    def _format(self, spec: ImageSpec) -> int:
        return self.tj.TJPF_GRAY if spec.channels == 1 else self.tj.TJPF_RGB

    def lossless_crop(self, data: bytes, spec: ImageSpec) -> np.ndarray:
        """PyTurboJPEG: cut the box out losslessly (origin rounded down to the iMCU grid), decode the cut at 1/f."""
        width, height, subsample, _ = self.jpeg.decode_header(data)
        box = crop_box_of_size(width, height, spec)
        x0 = int(box[0]) // self.tj.tjMCUWidth[subsample] * self.tj.tjMCUWidth[subsample]
        y0 = int(box[1]) // self.tj.tjMCUHeight[subsample] * self.tj.tjMCUHeight[subsample]
        cut = self.jpeg.crop(data, x0, y0, min(width, math.ceil(box[2])) - x0, min(height, math.ceil(box[3])) - y0)
        factor = _dct_factor(box, spec)
        pixels = self.jpeg.decode(cut, self._format(spec), scaling_factor=(1, factor))
        # The box in the whole image's scaled pixels, less the cut's origin there (a whole pixel: iMCUs are
        # 8 or 16 px), so that crop_and_resize rounds it as ours does.
        fx, fy = -(-width // factor) / width, -(-height // factor) / height
        x0, y0 = x0 // factor, y0 // factor
        return _resized(pixels, (box[0] * fx - x0, box[1] * fy - y0, box[2] * fx - x0, box[3] * fy - y0), spec)

    def region_decode(self, data: bytes, spec: ImageSpec) -> np.ndarray:
        """tj3: decode only the box's region of the image scaled by 1/f. The region's left and top edges
        go down to the scaled iMCU grid: the left one must (tj3SetCroppingRegion refuses others), and a
        top edge on an odd row of a 4:2:0 image at 1/2 decoded shifted colours with the 3.0 beta library."""
        lib, handle = self.lib, self.handle
        self._check(lib.tj3DecompressHeader(handle, data, len(data)))
        width, height = lib.tj3Get(handle, self.tj.TJPARAM_JPEGWIDTH), lib.tj3Get(handle, self.tj.TJPARAM_JPEGHEIGHT)
        subsample = lib.tj3Get(handle, self.tj.TJPARAM_SUBSAMP)
        box = crop_box_of_size(width, height, spec)
        factor = _dct_factor(box, spec)
        scaled_w, scaled_h = -(-width // factor), -(-height // factor)  # libjpeg-turbo rounds scaled sizes up
        fx, fy = scaled_w / width, scaled_h / height
        mcu_w, mcu_h = (max(1, mcu[subsample] // factor) for mcu in (self.tj.tjMCUWidth, self.tj.tjMCUHeight))
        x0, y0 = int(box[0] * fx) // mcu_w * mcu_w, int(box[1] * fy) // mcu_h * mcu_h
        x1, y1 = min(scaled_w, math.ceil(box[2] * fx)), min(scaled_h, math.ceil(box[3] * fy))
        self._check(lib.tj3SetScalingFactor(handle, self.tj.ScalingFactor(1, factor)))
        self._check(lib.tj3SetCroppingRegion(handle, self.tj.CroppingRegion(x0, y0, x1 - x0, y1 - y0)))
        pixels = np.empty((y1 - y0, x1 - x0, spec.channels), np.uint8)
        self._check(lib.tj3Decompress8(handle, data, len(data), pixels.ctypes.data, pixels.strides[0], self._format(spec)))
        return _resized(pixels, (box[0] * fx - x0, box[1] * fy - y0, box[2] * fx - x0, box[3] * fy - y0), spec)

    def _check(self, status: int) -> None:
        if status != 0:
            raise RuntimeError(self.lib.tj3GetErrorStr(self.handle).decode())


def _resized(pixels: np.ndarray, box: Box, spec: ImageSpec) -> np.ndarray:
    """uint8 [H, W, C] and the box in its pixels -> uint8 [size, size, C], as rayssl.data.decode resizes."""
    return crop_and_resize(torch.from_numpy(pixels).permute(2, 0, 1), box, spec.size).permute(1, 2, 0).numpy()
