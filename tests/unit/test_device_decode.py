"""Decoding on the worker's device (data.decode: device), run here on the CPU device: the header
stage, the decoder's agreement with the CPU decode, and its quarantine of bad files."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from helpers import jpeg_bytes, png_bytes
from rayssl.config import AugmentConfig, StorageConfig
from rayssl.data import quarantine
from rayssl.data.decode import ImageSpec, decode_image
from rayssl.data.device_decode import DeviceDecoder, decoded_batches
from rayssl.data.pipeline import ReadHeaders
from rayssl.data.transforms import normalise

CPU = torch.device("cpu")


def _jpeg(array: np.ndarray) -> bytes:
    return jpeg_bytes(array, quality=95)


def _smooth(height: int, width: int, seed: int) -> np.ndarray:
    """uint8 [H, W, 3] colour gradients: little for JPEG or resampling to disagree about."""
    y, x = np.mgrid[0:height, 0:width]
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, 3)
    return np.stack([127 + 100 * np.sin(x / 9 + y / 13 + p) for p in phase], axis=-1).astype(np.uint8)


def _table(images: list[bytes]) -> pa.Table:
    return pa.table(
        {
            "sample_id": [f"img{i}" for i in range(len(images))],
            "index": np.arange(len(images)),
            "image": images,
            "label": [i % 2 for i in range(len(images))],
        }
    )


def test_device_decode_matches_the_cpu_decode(tmp_path):
    # Sizes under twice the output (no draft scaling on the CPU side), one of them 2:1.
    spec = ImageSpec(24, 3, "center_crop")
    encoded = [_jpeg(_smooth(h, w, seed)) for seed, (h, w) in enumerate([(40, 40), (30, 46), (26, 52)])]
    headers = ReadHeaders(spec, "train", str(tmp_path), StorageConfig())(_table(encoded))
    out = DeviceDecoder(spec, None, "train", str(tmp_path), StorageConfig())(headers, CPU)
    cpu = normalise(torch.from_numpy(np.stack([decode_image(e, spec) for e in encoded])).permute(0, 3, 1, 2))
    assert out["image"].shape == cpu.shape == (3, 3, 24, 24) and out["image"].dtype == torch.float32
    # Both resize the same box with antialiased bilinear filtering; the device path rounds the box to
    # whole pixels, and the two JPEG decoders may differ by a grey level: a few levels at most.
    assert (out["image"] - cpu).abs().mean().item() * 127.5 < 3.0
    assert out["index"].tolist() == [0, 1, 2] and out["label"].tolist() == [0, 1, 0]


def test_device_decode_keeps_the_aspect_ratio_of_a_wide_image(tmp_path):
    # 128 x 64 px, its left quarter red: the centre crop (56 px square, x 36..92) holds no red; a
    # squashed resize of the whole image would.
    wide = np.full((64, 128, 3), 200, np.uint8)
    wide[:, :32] = (255, 0, 0)
    spec = ImageSpec(16, 3, "center_crop")
    out = DeviceDecoder(spec, None, "train", str(tmp_path), StorageConfig())(
        ReadHeaders(spec, "train", str(tmp_path), StorageConfig())(_table([_jpeg(wide)])), CPU
    )
    red, green = out["image"][0, 0], out["image"][0, 1]
    assert out["image"].shape == (1, 3, 16, 16)
    assert ((red - green).abs() < 0.1).all()  # grey everywhere: no red column came in


def test_header_stage_quarantines_what_is_not_an_image_and_passes_bytes_on(tmp_path):
    spec = ImageSpec(8, 1, "random_crop", (0.5, 1.0))
    good, png = _jpeg(_smooth(20, 30, 0)), png_bytes(np.zeros((10, 12), np.uint8))
    out = ReadHeaders(spec, "train", str(tmp_path), StorageConfig())(_table([good, b"not an image", png]))
    assert out["index"].tolist() == [0, 2] and out["is_jpeg"].tolist() == [True, False]
    assert out["image"][0] == good and out["image"][1] == png  # still encoded
    for (left, top, right, bottom), (h, w) in zip(out["box"], [(20, 30), (10, 12)]):
        assert 0 <= left < right <= w and 0 <= top < bottom <= h  # drawn on each original's size
    assert list(quarantine.read_records(str(tmp_path), StorageConfig())) == ["train/img1"]


def test_device_decoder_quarantines_a_truncated_jpeg_and_decodes_a_png_on_the_cpu(tmp_path):
    spec = ImageSpec(8, 1)
    good = _jpeg(_smooth(16, 16, 1))
    truncated = _jpeg(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    truncated = truncated[: len(truncated) // 2]  # its header reads, its pixels do not
    png = png_bytes(np.full((8, 8), 77, np.uint8))
    headers = ReadHeaders(spec, "train", str(tmp_path), StorageConfig())(_table([good, truncated, png]))
    assert headers["index"].tolist() == [0, 1, 2]  # the header stage cannot tell
    out = DeviceDecoder(spec, None, "train", str(tmp_path), StorageConfig())(headers, CPU)
    assert out["index"].tolist() == [0, 2] and out["image"].shape == (2, 1, 8, 8)
    assert torch.allclose(out["image"][1], torch.full((1, 8, 8), 77 / 127.5 - 1))  # the PNG, exactly
    records = quarantine.read_records(str(tmp_path), StorageConfig())
    assert list(records) == ["train/img1"] and "truncated" in records["train/img1"]["reason"].lower()


def test_device_decoder_augments_a_second_view_independently(tmp_path):
    spec = ImageSpec(8, 1)
    headers = ReadHeaders(spec, "train", str(tmp_path), StorageConfig())(_table([_jpeg(_smooth(8, 8, s)) for s in range(4)]))
    decoder = DeviceDecoder(
        spec, AugmentConfig(translate_px=1), "train", str(tmp_path), StorageConfig(), second_view=AugmentConfig(erase_p=1.0)
    )
    out = decoder(headers, CPU)
    assert out["image"].shape == out["image_view2"].shape == (4, 1, 8, 8)
    assert not torch.allclose(out["image"], out["image_view2"])  # erased with p=1: the views differ


def test_decoded_batches_closes_the_source_when_closed(tmp_path):
    spec = ImageSpec(8, 1)
    batch = ReadHeaders(spec, "train", str(tmp_path), StorageConfig())(_table([_jpeg(_smooth(8, 8, 0))]))
    closed = []

    def source():
        try:
            while True:
                yield batch
        finally:
            closed.append(True)

    stream = decoded_batches(source(), DeviceDecoder(spec, None, "train", str(tmp_path), StorageConfig()), CPU)
    assert next(stream)["image"].shape == (1, 1, 8, 8)
    stream.close()
    assert closed == [True]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG needs a CUDA device")
def test_nvjpeg_decode_matches_the_cpu_device(tmp_path):
    spec = ImageSpec(24, 3, "center_crop")
    headers = ReadHeaders(spec, "train", str(tmp_path), StorageConfig())(_table([_jpeg(_smooth(40, 50, s)) for s in range(3)]))
    decoder = DeviceDecoder(spec, None, "train", str(tmp_path), StorageConfig())
    on_gpu, on_cpu = decoder(headers, torch.device("cuda"))["image"].cpu(), decoder(headers, CPU)["image"]
    assert (on_gpu - on_cpu).abs().mean().item() * 127.5 < 2.0
