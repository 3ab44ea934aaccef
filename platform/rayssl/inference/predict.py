"""`rayssl predict`: batch inference of a fine-tuned classifier over a shard set or a folder of images.

    INPUT ─► decode tasks (inputs.DecodeImages, quarantine) ─► ClassifyBatch actors (the exported
    program, one GPU each when the cluster has GPUs) ─► driver ─► parquet: key, label, predicted,
    predicted_index, confidence, top_k_classes, top_k_probs

The actors run `<run>/export/model.pt2` (exported first if missing or stale), the very program
`rayssl export` hands out, so predict's outputs and the exported model's agree (to float32
rounding between batch compositions; the integration test checks it).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from rayssl.config import ConfigError, StorageConfig
from rayssl.data import storage
from rayssl.data.decode import image_spec
from rayssl.inference import inputs
from rayssl.inference.export import ensure_export
from rayssl.inference.runs import read_run, require_classifier
from rayssl.inference.workers import PREPROCESS, ClassifyBatch


def prediction_schema(inp: inputs.InferenceInput) -> pa.Schema:
    return pa.schema(
        [
            *inputs.key_fields(inp),
            ("label", pa.string()),
            ("predicted", pa.string()),
            ("predicted_index", pa.int64()),
            ("confidence", pa.float32()),
            ("top_k_classes", pa.list_(pa.string())),
            ("top_k_probs", pa.list_(pa.float32())),
        ]
    )


def prediction_table(batch: dict[str, np.ndarray], inp: inputs.InferenceInput, classes: list[str]) -> pa.Table:
    """One actor batch -> rows of the output schema. The true label is named by the input's own
    manifest (its class ids), null where the row has none."""
    names = np.array(classes, dtype=object)
    labels = batch["label"]
    label_names = [None if y < 0 else (inp.classes[y] if inp.classes and y < len(inp.classes) else str(y)) for y in labels.tolist()]
    top_i, top_p = batch["top_k_index"], batch["top_k_probs"].astype(np.float32)
    n, k = top_i.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.table(
        {
            **inputs.key_columns(inp, batch),
            "label": pa.array(label_names, pa.string()),
            "predicted": pa.array(names[top_i[:, 0]].tolist() if n else [], pa.string()),
            "predicted_index": pa.array(top_i[:, 0], pa.int64()),
            "confidence": pa.array(top_p[:, 0], pa.float32()),
            "top_k_classes": pa.ListArray.from_arrays(offsets, pa.array(names[top_i.reshape(-1)].tolist(), pa.string())),
            "top_k_probs": pa.ListArray.from_arrays(offsets, pa.array(top_p.reshape(-1), pa.float32())),
        }
    )


def predict_run(
    run_uri: str,
    input_uri: str,
    out_uri: str,
    *,
    split: str | None = None,
    top_k: int = 5,
    batch_size: int = 256,
    actors: int | None = None,
    storage_cfg: StorageConfig = StorageConfig(),
    show_progress: bool = True,
) -> inputs.StreamResult:
    """Predict every image of `input_uri` with the fine-tuned run `run_uri` into parquet parts under
    `out_uri`, by inputs.run_model_actors (which needs a running Ray)."""
    if top_k < 1 or batch_size < 1:
        raise ConfigError(f"--top-k and --batch-size must be >= 1, got {top_k} and {batch_size}")
    run = read_run(run_uri, storage_cfg)
    cfg = require_classifier(run, "predict with")
    export_uri = ensure_export(run)
    classes = json.loads(storage.read_bytes(storage.join(export_uri, PREPROCESS), run.storage))["classes"]
    return inputs.run_model_actors(
        inputs.StreamOptions(input_uri, out_uri, split, batch_size, actors, storage_cfg, show_progress),
        "predict",
        "predicting",
        f"{run.run_dir} ({run.checkpoint_name})",
        image_spec(cfg.data, train=False),
        ClassifyBatch,
        (export_uri, run.storage, top_k),
        prediction_schema,
        lambda b, inp: prediction_table(b, inp, classes),
    )
