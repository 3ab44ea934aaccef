import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import png_bytes
from rayssl.data import decode as decode_module
from rayssl.data.decode import DecodeError, ImageSpec, crop_box, decode_batch, decode_image


def _truncated_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
    data = png_bytes(noise)
    return data[: len(data) // 2]


def test_decodes_exact_shape():
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    out = decode_image(png_bytes(img), ImageSpec(8, 1))
    assert out.shape == (8, 8, 1) and np.array_equal(out[..., 0], img)


def test_wrong_size_and_channels_are_converted():
    rgba = np.zeros((20, 12, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    out = decode_image(png_bytes(rgba), ImageSpec(8, 1))
    assert out.shape == (8, 8, 1)
    grey = decode_image(png_bytes(np.full((5, 5), 9, np.uint8)), ImageSpec(6, 3))
    assert grey.shape == (6, 6, 3) and (grey == 9).all()


def test_jpeg_decodes():
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buf, format="JPEG")
    assert decode_image(buf.getvalue(), ImageSpec(8, 3)).shape == (8, 8, 3)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (None, "empty"),
        (b"not an image at all", "UnidentifiedImageError"),
        (_truncated_png(), "OSError|SyntaxError|ValueError"),
    ],
)
def test_bad_bytes_raise_decode_error(data, reason):
    with pytest.raises(DecodeError, match=reason):
        decode_image(data, ImageSpec(8, 1))


def test_batch_quarantines_bad_rows_and_keeps_neighbours():
    good = png_bytes(np.full((8, 8), 7, np.uint8))
    ok, images, bad = decode_batch(["a", "b", "c"], np.array([10, 11, 12]), [good, b"garbage", good], ImageSpec(8, 1))
    assert ok.tolist() == [True, False, True]
    assert images.shape == (2, 8, 8, 1) and (images == 7).all()
    assert [(r.sample_id, r.index) for r in bad] == [("b", 11)] and bad[0].reason


def test_batch_of_only_bad_rows_is_empty_not_an_error():
    ok, images, bad = decode_batch(["a"], np.array([0]), [b"x"], ImageSpec(4, 3))
    assert not ok.any() and images.shape == (0, 4, 4, 3) and len(bad) == 1


def test_decode_stage_adds_an_independent_second_view(tmp_path):
    import pyarrow as pa

    from rayssl.config import AugmentConfig, StorageConfig
    from rayssl.data.pipeline import DecodeAndTransform

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)) for _ in range(4)]
    encoded = []
    for img in images:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        encoded.append(buf.getvalue())
    batch = pa.table({"sample_id": [f"s{i}" for i in range(4)], "index": np.arange(4), "image": encoded, "label": [0, 1, 0, 1]})
    stage = DecodeAndTransform(
        ImageSpec(8, 1),
        None,
        "train",
        str(tmp_path),
        StorageConfig(),
        second_view=AugmentConfig(translate_px=2, rotate_deg=30.0, erase_p=1.0),
    )
    out = stage(batch)
    assert out["image"].shape == out["image_view2"].shape == (4, 1, 8, 8)
    # Both views are exact in uint8 (no augmentation; whole-pixel moves, nearest rotation, zero erasing): shipped as such.
    assert out["image"].dtype == out["image_view2"].dtype == np.uint8
    assert not np.allclose(out["image"], out["image_view2"])  # erased with p=1: the views differ
    assert "image_view2" not in DecodeAndTransform(ImageSpec(8, 1), None, "train", str(tmp_path), StorageConfig())(batch)
    # FixMatch's strong view (RandAugment + Cutout) is made in the same CPU stage, as float32 (photometric steps)
    strong = DecodeAndTransform(
        ImageSpec(8, 1), None, "train", str(tmp_path), StorageConfig(), second_view=AugmentConfig(randaugment_ops=2, cutout=0.5)
    )(batch)
    assert strong["image"].dtype == np.uint8 and strong["image_view2"].dtype == np.float32
    assert ((strong["image_view2"] == 0.0).sum(axis=(1, 2, 3)) >= 4).all()  # every view carries a grey (0) cutout


def _png_claiming(width: int, height: int) -> bytes:
    """A valid 8x8 PNG whose IHDR chunk is rewritten (with a correct CRC) to claim width x height."""
    data = bytearray(png_bytes(np.zeros((8, 8), np.uint8)))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


@pytest.mark.parametrize("width, height", [(50_000, 50_000), (10_000, 10_000)])
def test_decompression_bomb_is_quarantined_before_allocating(width, height):
    # 50,000^2 trips PIL's own bomb check; 10,000^2 (100 MP) is under PIL's but over ours.
    with pytest.raises(DecodeError, match="DecompressionBomb|decode limit"):
        decode_image(_png_claiming(width, height), ImageSpec(8, 1))


def test_text_file_named_jpg_is_quarantined():
    ok, _, bad = decode_batch(
        ["a.jpg", "b.png"], np.arange(2), [b"hello, I am text\n", png_bytes(np.zeros((8, 8), np.uint8))], ImageSpec(8, 1)
    )
    assert ok.tolist() == [False, True] and bad[0].sample_id == "a.jpg" and "UnidentifiedImageError" in bad[0].reason


def test_16_bit_png_is_rescaled_not_clipped():
    wide = np.full((8, 8), 32896, np.uint16)  # mid-grey in 16 bits: 32896 / 257 = 128
    wide[0, 0] = 65535
    buf = io.BytesIO()
    Image.fromarray(wide).save(buf, format="PNG")
    out = decode_image(buf.getvalue(), ImageSpec(8, 1))
    assert out[1, 1, 0] == 128 and out[0, 0, 0] == 255


def test_cmyk_jpeg_converts_to_rgb():
    buf = io.BytesIO()
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(buf, format="JPEG", quality=95)  # red in CMYK
    out = decode_image(buf.getvalue(), ImageSpec(8, 3))
    assert out.shape == (8, 8, 3) and out[4, 4, 0] > 200 and out[4, 4, 1] < 60


def _jpeg(width: int, height: int, quality: int = 90) -> bytes:
    """A smooth colour gradient with a bright left half: crops and squashing are visible in it."""
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    img = np.concatenate([255 * x * np.ones_like(y), 255 * y * np.ones_like(x), 128 * np.ones((height, width, 1))], axis=2)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def test_center_crop_keeps_the_aspect_ratio_of_a_wide_image():
    # 2:1 image of a horizontal red ramp: a squashed resize keeps the whole ramp (0..255 across),
    # the centre crop keeps only the middle 0.875 * 200 px = 175 of 400: red spans about 0.28..0.72.
    data = _jpeg(400, 200)
    squashed = decode_image(data, ImageSpec(32, 3))
    centred = decode_image(data, ImageSpec(32, 3, crop="center_crop"))
    assert squashed[:, 0, 0].mean() < 10 and squashed[:, -1, 0].mean() > 245
    assert 60 < centred[:, 0, 0].mean() < 85 and 170 < centred[:, -1, 0].mean() < 195
    # rows change as fast as columns (both span the same number of source pixels): not squashed
    red_step = np.diff(centred[16, :, 0].astype(float)).mean()
    green_step = np.diff(centred[:, 16, 1].astype(float)).mean()
    assert abs(red_step / green_step - (255 / 400) / (255 / 200)) < 0.1


def test_random_crop_boxes_keep_their_aspect_within_3_4_to_4_3_and_scale_range():
    torch.manual_seed(0)
    img = Image.new("RGB", (400, 200))
    spec = ImageSpec(64, 3, crop="random_crop", crop_scale=(0.25, 1.0))
    for _ in range(50):
        left, top, right, bottom = crop_box(img, spec)
        w, h = right - left, bottom - top
        assert 0 <= left and right <= 400 and 0 <= top and bottom <= 200
        assert 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02 or (w, h) == (200, 200)  # torchvision's fallback: a centre crop
        assert w * h >= 0.25 * 400 * 200 * 0.95 or (w, h) == (200, 200)


def test_draft_decoding_gives_the_same_size_and_nearly_the_same_pixels():
    data = _jpeg(1600, 1200)
    spec = ImageSpec(64, 3, crop="center_crop")
    with Image.open(io.BytesIO(data)) as img:
        box = decode_module._draft(img, crop_box(img, spec), spec, 3)
        assert img.size == (200, 150)  # 1/8 DCT scale: the 1050-px box still has 131 >= 64 px per side
        assert (box[2] - box[0]) >= 64
    fast = decode_image(data, spec)
    with Image.open(io.BytesIO(data)) as img:  # the full-resolution decode of the same box
        full = np.asarray(img.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR, box=crop_box(img, spec)))
    assert fast.shape == full.shape == (64, 64, 3)
    assert np.abs(fast.astype(int) - full.astype(int)).mean() < 3  # a smooth image: the scales agree


@pytest.mark.parametrize("size", [(333, 500), (500, 333), (375, 500), (1001, 667)])
def test_draft_boxes_stay_inside_odd_sized_images(size):
    torch.manual_seed(1)
    data = _jpeg(*size)
    for crop in ("random_crop", "center_crop"):
        for _ in range(20):
            assert decode_image(data, ImageSpec(64, 3, crop, (0.5, 1.0))).shape == (64, 64, 3)


def test_small_images_decode_as_before():
    png = png_bytes(np.arange(64, dtype=np.uint8).reshape(8, 8))
    assert np.array_equal(decode_image(png, ImageSpec(8, 1)), decode_image(png, ImageSpec(8, 1, crop="resize")))


def _pil_only(monkeypatch):
    """The crop modes with the simplejpeg path switched off: every JPEG through PIL (+ draft)."""
    monkeypatch.setattr(decode_module, "_decode_jpeg_fast", lambda data, spec: None)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("size, crop", [(64, "center_crop"), (224, "center_crop"), (64, "random_crop")])
def test_simplejpeg_path_matches_the_pil_path(monkeypatch, channels, size, crop):
    # 1001 x 667: the centre box (584 px) decodes at 1/8 scale for 64 px, at 1/2 for 224 px
    data = _jpeg(1001, 667)
    spec = ImageSpec(size, channels, crop, (0.5, 1.0))
    fast = decode_module._decode_jpeg_fast(data, spec)
    assert fast is not None  # the fast path took it
    pixels, _ = fast
    assert pixels.shape[2] == channels
    if crop == "center_crop":
        assert pixels.shape[:2] == {64: (84, 126), 224: (334, 501)}[size]
    torch.manual_seed(3)
    fast = decode_image(data, spec)
    _pil_only(monkeypatch)
    torch.manual_seed(3)  # the same random box
    slow = decode_image(data, spec)
    assert fast.shape == slow.shape == (size, size, channels)
    assert np.abs(fast.astype(int) - slow.astype(int)).max() <= 3  # the same libjpeg-turbo, IDCT at the same scale


def test_jpegs_the_fast_path_declines_go_through_pil():
    truncated = _jpeg(300, 200)[:3000]
    assert decode_module._decode_jpeg_fast(truncated, ImageSpec(64, 3, "center_crop")) is None
    with pytest.raises(DecodeError, match="truncated"):  # PIL's reason, as for every other format
        decode_image(truncated, ImageSpec(64, 3, "center_crop"))
    cmyk = io.BytesIO()
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(cmyk, format="JPEG")  # red in CMYK
    assert decode_module._decode_jpeg_fast(cmyk.getvalue(), ImageSpec(16, 3, "center_crop")) is None
    red = decode_image(cmyk.getvalue(), ImageSpec(16, 3, "center_crop"))
    assert red[..., 0].mean() > 200 and red[..., 1:].mean() < 60
    png = png_bytes(np.full((40, 30), 7, np.uint8))
    assert decode_module._decode_jpeg_fast(png, ImageSpec(16, 1, "center_crop")) is None
    assert (decode_image(png, ImageSpec(16, 1, "center_crop")) == 7).all()
