"""`rayssl embed`: the backbone's features of every image, for selection (what to label next) and search.

    INPUT ─► decode tasks (inputs.DecodeImages, quarantine) ─► EmbedBatch actors (the backbone,
    one GPU each when the cluster has GPUs) ─► driver ─► parquet: key, embedding fixed_size_list<float32>[D]

A fine-tuned run gives its classifier's backbone, a pretraining run its pretrained backbone. The
features are the backbone's output as is (not L2-normalised: a consumer that wants cosine
geometry normalises, and nothing is lost).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from rayssl.config import ConfigError, StorageConfig
from rayssl.data.decode import image_spec
from rayssl.inference import inputs
from rayssl.inference.runs import RunModel, load_backbone, read_run
from rayssl.inference.workers import normalise


class EmbedBatch:
    """Ray Data actor: decoded images -> backbone features.

    In: key, split, label, image uint8 [N, H, W, C]. Out: key, split, label, embedding float32 [N, D]."""

    def __init__(self, run: RunModel) -> None:
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.backbone = load_backbone(run).to(self.device)
        self.dim = int(
            self.backbone(
                torch.zeros(1, run.cfg.data.channels, run.cfg.data.image_size, run.cfg.data.image_size, device=self.device)
            ).shape[1]
        )

    @torch.inference_mode()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {k: batch[k] for k in ("key", "split", "label")}
        if not len(batch["key"]):  # every image of the block was quarantined
            return {**out, "embedding": np.zeros((0, self.dim), np.float32)}
        pixels = torch.from_numpy(batch["image"]).to(self.device).permute(0, 3, 1, 2)
        return {**out, "embedding": self.backbone(normalise(pixels)).float().cpu().numpy()}


def embedding_schema(inp: inputs.InferenceInput, dim: int) -> pa.Schema:
    return pa.schema([*inputs.key_fields(inp), ("embedding", pa.list_(pa.float32(), dim))])


def embedding_table(batch: dict[str, np.ndarray], inp: inputs.InferenceInput, dim: int) -> pa.Table:
    """One actor batch -> key columns + embedding as fixed_size_list<float32>[dim] (plain arrow, no Ray extension type)."""
    flat = pa.array(np.ascontiguousarray(batch["embedding"], dtype=np.float32).reshape(-1), pa.float32())
    return pa.table({**inputs.key_columns(inp, batch), "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)})


def embed_run(
    run_uri: str,
    input_uri: str,
    out_uri: str,
    *,
    split: str | None = None,
    batch_size: int = 256,
    actors: int | None = None,
    storage_cfg: StorageConfig = StorageConfig(),
    show_progress: bool = True,
) -> inputs.StreamResult:
    """Embed every image of `input_uri` with the backbone of `run_uri` (fine-tuned or pretraining run)
    into parquet parts under `out_uri`, by inputs.run_model_actors (which needs a running Ray)."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    run = read_run(run_uri, storage_cfg)
    # The width D, for the output schema before any actor answers: one forward pass here, on the driver.
    dim = EmbedBatch(run).dim
    backbone = "fine-tuned" if run.kind == "finetune" else run.cfg.method.upper()
    return inputs.run_model_actors(
        inputs.StreamOptions(input_uri, out_uri, split, batch_size, actors, storage_cfg, show_progress),
        "embed",
        "embedding",
        f"the {backbone} backbone of {run.run_dir} ({run.checkpoint_name}, D={dim})",
        image_spec(run.cfg.data, train=False),
        EmbedBatch,
        (run,),
        lambda inp: embedding_schema(inp, dim),
        lambda b, inp: embedding_table(b, inp, dim),
    )
