"""The only module that imports ray.data for training data: shards -> decoded, augmented batches.

    read_parquet(shards) -> map_batches(DecodeAndTransform) -> {index, image, label}
    read_parquet(shards) -> map_batches(ReadHeaders) -> {sample_id, index, label, image (encoded), box, is_jpeg}
                                                        (data.decode: device; rayssl.data.device_decode decodes on the worker)
    read_parquet(shards) -> map_batches(DecodeCorruptTransform) -> {variant, index, image, label}  (robustness)

Decoding happens inside our own `map_batches` function so that one bad image is quarantined
alone; Ray Data's own error handling would fail the job or drop whole blocks of good rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import ray.data

from rayssl.config import AugmentConfig, DataConfig, StorageConfig
from rayssl.data import quarantine, storage
from rayssl.data.corruptions import corrupt_batch
from rayssl.data.decode import DecodeError, ImageSpec, QuarantineRecord, decode_batch, image_spec, read_header
from rayssl.data.ray_data import quiet_ray_data
from rayssl.data.shards import list_shards
from rayssl.data.transforms import ImageTransform, TrainingViews

# Rows per decode task call: large enough to amortise task overhead, small enough to stream.
DECODE_BATCH_ROWS = 256


class DecodeAndTransform(TrainingViews):
    """Ray Data batch function: a pyarrow batch of shard rows -> numpy columns for training.

    Output columns: index int64 [N_ok], image [N_ok, C, H, W], label int64 [N_ok] (-1 where
    unlabelled), and image_view2 [N_ok, C, H, W] (a second view of the same images, augmented
    independently with `second_view`) when that is given. Each image column is uint8 where its view
    is exact in uint8, else float32 in [-1, 1] (ImageTransform.stage): the consumer passes every
    batch through rayssl.data.transforms.model_inputs. Undecodable rows are dropped here and
    written to the run's quarantine.
    """

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        indices = batch.column("index").to_numpy()
        ok, images, bad = decode_batch(batch.column("sample_id").to_pylist(), indices, batch.column("image").to_pylist(), self.spec)
        quarantine.write_records(self.run_dir, self.split, bad, self.storage_cfg)
        labels = batch.column("label").fill_null(-1).to_numpy()
        out = {"index": indices[ok], "image": self.transform.stage(images), "label": labels[ok]}
        if self.second_view is not None:
            out["image_view2"] = self.second_view.stage(images)
        return out


class ReadHeaders:
    """Ray Data batch function for decoding on the worker's device (data.decode: device): reads
    each image's header only, quarantines what is not a usable image, draws its crop box on the
    original size, and passes the encoded bytes on.

    Output columns: sample_id, index int64 [N_ok], label int64 [N_ok] (-1 where unlabelled), image
    (the encoded bytes), box float32 [N_ok, 4] (left, top, right, bottom in the original's pixels),
    is_jpeg bool [N_ok] (what the device decoder takes; the rest is decoded on the worker's CPU).
    """

    def __init__(self, spec: ImageSpec, split: str, run_dir: str, storage_cfg: StorageConfig) -> None:
        self.spec, self.split, self.run_dir, self.storage_cfg = spec, split, run_dir, storage_cfg

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        ids, indices = batch.column("sample_id").to_pylist(), batch.column("index").to_numpy()
        images = batch.column("image").to_pylist()
        ok = np.zeros(len(images), dtype=bool)
        boxes, is_jpeg, bad = np.zeros((len(images), 4), np.float32), np.zeros(len(images), dtype=bool), []
        for i, data in enumerate(images):
            try:
                boxes[i], is_jpeg[i] = read_header(data, self.spec)
                ok[i] = True
            except DecodeError as exc:
                bad.append(QuarantineRecord(str(ids[i]), int(indices[i]), str(exc)))
        quarantine.write_records(self.run_dir, self.split, bad, self.storage_cfg)
        encoded = np.empty(int(ok.sum()), dtype=object)  # variable-length bytes: an object column
        encoded[:] = [data for data, good in zip(images, ok) if good]
        return {
            "sample_id": np.array(ids, dtype=object)[ok],
            "index": indices[ok],
            "label": batch.column("label").fill_null(-1).to_numpy()[ok],
            "image": encoded,
            "box": boxes[ok],
            "is_jpeg": is_jpeg[ok],
        }


def image_dataset(
    data: DataConfig,
    split: str,
    run_dir: str,
    storage_cfg: StorageConfig,
    augment: bool = True,
    second_view: AugmentConfig | None = None,
    encoded: bool = False,
) -> ray.data.Dataset:
    """A lazily executed, streaming dataset of decoded images from the shards of one split.

    `second_view` adds a second, independently augmented view of every image (column
    image_view2): FixMatch's strong view, or the contrastive methods' second view. With `encoded`,
    the images stay encoded, with their crop boxes (ReadHeaders): the worker decodes them on its
    device (rayssl.data.device_decode.DeviceDecoder), which then does the augmentation and views."""
    shards = list_shards(data.shards, split, storage_cfg)
    fs, _ = storage.resolve(data.shards, storage_cfg)
    paths = [storage.resolve(s.uri, storage_cfg)[1] for s in shards]
    spec = image_spec(data, train=augment)
    quiet_ray_data()
    ds = ray.data.read_parquet(paths, filesystem=fs)
    if encoded:
        return ds.map_batches(ReadHeaders(spec, split, run_dir, storage_cfg), batch_format="pyarrow", batch_size=DECODE_BATCH_ROWS)
    fn = DecodeAndTransform(spec, data.augment if augment else None, split, run_dir, storage_cfg, second_view)
    return ds.map_batches(fn, batch_format="pyarrow", batch_size=DECODE_BATCH_ROWS)


class DecodeCorruptTransform:
    """Ray Data batch function for the robustness suite: every decodable row once per (corruption, severity).

    Output columns: variant int64 [N_ok x V] (position in `variants`), index, label, and image
    uint8 [N_ok x V, C, H, W] (no augmentation), which rayssl.data.transforms.model_inputs
    normalises like training's evaluation images.
    """

    def __init__(
        self, spec: ImageSpec, variants: list[tuple[str, int]], seed: int, split: str, run_dir: str, storage_cfg: StorageConfig
    ) -> None:
        self.spec, self.variants, self.seed = spec, variants, seed
        self.transform = ImageTransform(spec.size, None)
        self.split, self.run_dir, self.storage_cfg = split, run_dir, storage_cfg

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        indices = batch.column("index").to_numpy()
        ok, images, bad = decode_batch(batch.column("sample_id").to_pylist(), indices, batch.column("image").to_pylist(), self.spec)
        quarantine.write_records(self.run_dir, self.split, bad, self.storage_cfg)
        indices, labels = indices[ok], batch.column("label").fill_null(-1).to_numpy()[ok]
        views = [corrupt_batch(images, indices, name, severity, self.seed) for name, severity in self.variants]
        return {
            "variant": np.repeat(np.arange(len(self.variants)), len(indices)),
            "index": np.tile(indices, len(self.variants)),
            "label": np.tile(labels, len(self.variants)),
            "image": self.transform.stage(np.concatenate(views))
            if views
            else np.zeros((0, self.spec.channels, self.spec.size, self.spec.size), np.uint8),
        }


def corrupted_dataset(
    data: DataConfig, split: str, variants: list[tuple[str, int]], seed: int, run_dir: str, storage_cfg: StorageConfig
) -> ray.data.Dataset:
    """The split once per (corruption name, severity) of `variants` (severity 0: clean), corrupted in
    the Ray Data CPU stage with per-sample seeds (see rayssl.data.corruptions); one read of the shards."""
    shards = list_shards(data.shards, split, storage_cfg)
    fs, _ = storage.resolve(data.shards, storage_cfg)
    quiet_ray_data()
    ds = ray.data.read_parquet([storage.resolve(s.uri, storage_cfg)[1] for s in shards], filesystem=fs)
    fn = DecodeCorruptTransform(image_spec(data, train=False), variants, seed, split, run_dir, storage_cfg)
    # Each input row becomes len(variants) rows: smaller input batches keep a block near training's size.
    return ds.map_batches(fn, batch_format="pyarrow", batch_size=max(8, DECODE_BATCH_ROWS // max(1, len(variants) // 4)))
