"""Decoding on the training worker's device (`data.decode: device`): JPEG bytes -> cropped,
augmented float batches.

The Ray Data CPU stage (rayssl.data.pipeline.ReadHeaders) reads each image's header only: it
quarantines what is not a usable image, draws the crop box on the original size (as the CPU
decode does) and passes the encoded bytes on. The worker decodes the batch's JPEGs in one call to
`torchvision.io.decode_jpeg` on its device (nvJPEG on a CUDA device, libjpeg-turbo on a CPU
one), crops and resizes each image there, then augments the batch as the CPU path does. This pays
off when the CPUs that feed a GPU are the bottleneck: full-size JPEGs (ImageNet) cost ~5 ms of
CPU each to decode, and a GPU worker's node has a few cores per GPU.

Anything the device decoder rejects (a PNG, a CMYK JPEG nvJPEG does not take, a truncated file)
is decoded on the CPU by rayssl.data.decode instead, one image at a time; what fails there too is
quarantined and counted like a bad image in the CPU stage, and never fails the batch.

torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec (a DeprecationWarning
on first use); they are what the pinned torchvision has, and the only batched nvJPEG decode in it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from rayssl.data import quarantine
from rayssl.data.decode import DecodeError, QuarantineRecord, crop_and_resize, decode_pixels
from rayssl.data.transforms import TrainingViews


class DeviceDecoder(TrainingViews):
    """One worker's decode of ReadHeaders' batches: {"sample_id", "index", "label", "image"
    (encoded bytes), "box" float32 [N, 4], "is_jpeg" bool [N]} (numpy) -> {"index" int64 [N_ok],
    "label" int64 [N_ok], "image" float32 [N_ok, C, S, S]} (+ "image_view2", augmented
    independently, with `second_view`), on `device`. Undecodable rows are quarantined under `run_dir`."""

    @property
    def mode(self) -> ImageReadMode:
        return ImageReadMode.GRAY if self.spec.channels == 1 else ImageReadMode.RGB

    def _decode_jpegs(self, encoded: list[bytes], device: torch.device) -> list[torch.Tensor | None]:
        """uint8 [C, H, W] per JPEG on `device`, None where the device decoder rejects one."""
        if not encoded:
            return []
        data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in encoded]
        try:
            return list(decode_jpeg(data, mode=self.mode, device=device))
        except RuntimeError:  # one bad file fails the batched call: find it one image at a time
            decoded: list[torch.Tensor | None] = []
            for one in data:
                try:
                    decoded.append(decode_jpeg(one, mode=self.mode, device=device))
                except RuntimeError:
                    decoded.append(None)
            return decoded

    def __call__(self, batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
        encoded, boxes = batch["image"], batch["box"]
        jpeg_rows = np.flatnonzero(batch["is_jpeg"])
        on_device = dict(zip(jpeg_rows.tolist(), self._decode_jpegs([encoded[i] for i in jpeg_rows], device)))
        crops, kept, bad = [], [], []
        for i in range(len(encoded)):
            image = on_device.get(i)
            if image is None:
                try:  # the CPU decode: other formats, and what the device decoder rejected
                    pixels, _ = decode_pixels(encoded[i], self.spec.channels)
                except DecodeError as exc:
                    bad.append(QuarantineRecord(str(batch["sample_id"][i]), int(batch["index"][i]), str(exc)))
                    continue
                image = torch.from_numpy(pixels.transpose(2, 0, 1).copy()).to(device)  # PIL's array is read-only
            crops.append(crop_and_resize(image, boxes[i], self.spec.size))
            kept.append(i)
        quarantine.write_records(self.run_dir, self.split, bad, self.storage_cfg)
        rows = torch.as_tensor(kept, dtype=torch.int64)
        shape = (0, self.spec.channels, self.spec.size, self.spec.size)
        images = torch.stack(crops) if crops else torch.zeros(shape, dtype=torch.uint8, device=device)
        out = {
            "index": torch.as_tensor(batch["index"], dtype=torch.int64)[rows].to(device),
            "label": torch.as_tensor(batch["label"], dtype=torch.int64)[rows].to(device),
            "image": self.transform.tensor(images),
        }
        if self.second_view is not None:
            out["image_view2"] = self.second_view.tensor(images)
        return out


def decoded_batches(
    batches: Iterator[dict[str, Any]], decoder: Callable[[dict[str, Any], torch.device], dict[str, torch.Tensor]], device: torch.device
) -> Generator[dict[str, torch.Tensor], None, None]:
    """`decoder` (a DeviceDecoder on `iter_batches(batch_format="numpy")`, or the normalisation of
    uint8 images on `iter_torch_batches`) applied to each batch of a Ray Data iterator; closing this
    generator closes that iterator, so a pass left mid-way stops its prefetching."""
    try:
        for batch in batches:
            yield decoder(batch, device)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
