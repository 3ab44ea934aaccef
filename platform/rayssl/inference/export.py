"""`rayssl export`: a fine-tuned classifier as files that load with plain PyTorch (no rayssl, no Ray).

    DIR/model.pt2        torch.export program: float32 [B, C, H, W] (B dynamic) -> logits [B, K]
    DIR/preprocess.json  how an image file becomes that input (decode, crop, resize, x / 127.5 - 1),
                         class names, and where the weights came from (run, checkpoint, config hash)
    DIR/predict.py       standalone script: image files -> CSV of path, class, confidence

torch.export rather than TorchScript: TorchScript is deprecated in torch 2.x, and an exported program
runs the same aten kernels as the eager model, at its speed within this machine's noise, with
identical logits on the CIFAR small CNN (docs/export.md has the measurements).
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rayssl.config import DataConfig, StorageConfig
from rayssl.data import storage
from rayssl.data.decode import MAX_PIXELS, image_spec
from rayssl.inference.runs import RunModel, class_names, load_classifier, read_run, require_classifier
from rayssl.inference.workers import MODEL, PREPROCESS, load_exported  # noqa: F401  (load_exported: part of this module's API)
from rayssl.train.checkpoints import read_meta

FORMAT = "rayssl-export/1"
SCRIPT = "predict.py"
EXPORT_DIR = "export"  # <run>/export: where predict keeps the program it runs


def export_program(net: nn.Module, channels: int, size: int) -> torch.export.ExportedProgram:
    """Trace `net` (eval mode) for inputs float32 [B, channels, size, size] with B dynamic (>= 1)."""
    net.eval()
    # An example batch of 2: torch.export specialises a dimension whose example size is 1 to the constant 1.
    example = torch.zeros(2, channels, size, size)
    with torch.no_grad():
        return torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))


def preprocess_info(run: RunModel, data: DataConfig, classes: list[str], global_step: int) -> dict[str, Any]:
    """preprocess.json: the exported model's input contract and the decode that produces it."""
    spec = image_spec(data, train=False)
    mode = {1: "L", 3: "RGB"}[spec.channels]
    decode: dict[str, Any] = {"crop": spec.crop, "max_pixels": MAX_PIXELS, "mode": mode}
    steps = [
        f"open with Pillow; refuse images over {MAX_PIXELS:,} px (declared size) and zero-sized ones",
        "JPEG: decode at the largest DCT reduction (1/8, 1/4, 1/2) that still leaves image_size pixels across the crop box "
        "(Pillow's Image.draft; libjpeg-turbo scaling); the box scales with it",
        "16-bit / 32-bit integer greys (I;16, I): clip to 0..65535, integer-divide by 257 to uint8",
        f"convert to {mode} with Pillow's convert (palettes, CMYK, alpha -> RGB drops alpha; RGB -> L uses ITU-R 601-2 luma)",
    ]
    if spec.crop == "resize":
        steps.append(
            f"resize the whole image (aspect ratio not kept) to {spec.size}x{spec.size} with Pillow's "
            "Image.resize(BILINEAR, box=the box) unless it is that size already"
        )
    else:
        decode["center_fraction"] = spec.center_fraction
        steps.append(
            f"take the central square of center_fraction x the shorter side, round its corners to whole pixels, "
            f"resize it to {spec.size}x{spec.size} with antialiased bilinear filtering (torch.nn.functional.interpolate "
            "on uint8 as torchvision does; rayssl decodes these JPEGs with simplejpeg: within a grey level or two of Pillow)"
        )
    decode["steps"] = steps
    return {
        "format": FORMAT,
        "input": {
            "layout": "NCHW",
            "dtype": "float32",
            "batch": "dynamic, >= 1",
            "image_size": spec.size,
            "channels": spec.channels,
            "normalise": "x / 127.5 - 1 on uint8 pixels (0..255 -> -1..1)",
        },
        "decode": decode,
        "output": {"logits": "float32 [B, K]", "num_classes": len(classes)},
        "classes": classes,
        "run": run.run_dir,
        "config_sha256": run.config_sha256,
        "checkpoint": run.checkpoint,
        "global_step": global_step,
        "torch_version": torch.__version__,
    }


def export_run(run_uri: str, out_uri: str, storage_cfg: StorageConfig = StorageConfig()) -> dict[str, Any]:
    """Export the latest checkpoint of the fine-tuned run `run_uri` to `out_uri` (any URI).

    Returns preprocess.json's content plus "export_s" (seconds to trace and serialise) and
    "model_bytes". A pretraining run is refused: it has no classifier (embed takes it)."""
    run = read_run(run_uri, storage_cfg)
    cfg = require_classifier(run, "export")
    net = load_classifier(run)
    started = time.perf_counter()
    program = export_program(net, cfg.data.channels, cfg.data.image_size)
    buf = io.BytesIO()
    torch.export.save(program, buf)
    export_s = time.perf_counter() - started
    info = preprocess_info(run, cfg.data, class_names(run), int(read_meta(run.checkpoint, run.storage).get("global_step", -1)))
    out_uri = storage.absolute(out_uri.rstrip("/"), storage_cfg)
    storage.write_bytes(storage.join(out_uri, MODEL), buf.getvalue(), storage_cfg)
    storage.write_bytes(storage.join(out_uri, SCRIPT), Path(__file__).with_name("standalone_predict.py").read_bytes(), storage_cfg)
    # preprocess.json last: its presence says the export is complete (ensure_export reads it).
    storage.write_bytes(storage.join(out_uri, PREPROCESS), json.dumps(info, indent=1).encode(), storage_cfg)
    return {**info, "out": out_uri, "export_s": export_s, "model_bytes": len(buf.getvalue())}


def ensure_export(run: RunModel) -> str:
    """`<run>/export`, exported now unless an export of the run's current latest checkpoint and
    config is there already. Predict runs this program, so its predictions are the exported model's."""
    out = storage.join(run.run_dir, EXPORT_DIR)
    done = storage.join(out, PREPROCESS)
    if storage.exists(done, run.storage):
        info = json.loads(storage.read_bytes(done, run.storage))
        if (info.get("checkpoint"), info.get("config_sha256")) == (run.checkpoint, run.config_sha256):
            return out
        storage.delete(done, run.storage)  # stale: no reader may pair it with the new model.pt2 while that is written
    export_run(run.run_dir, out, run.storage)
    return out
