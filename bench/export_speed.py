"""Export formats for `rayssl export`, side by side on the CIFAR small_cnn classifier (configs/semisup_cifar10.yaml's model).

For torch.export (what rayssl export writes) and TorchScript trace: seconds to produce and
serialise the artefact, file size, load time, and CPU images/s of the loaded artefact against the
eager module, at batch 256 and batch 1, for 1 thread and the default thread count. Calls are
interleaved (eager, export, script, eager, ...) and medians reported, so load on a shared machine
hits every column alike. Also checks that outputs agree (max |difference| of logits).

    .venv/bin/python bench/export_speed.py [--reps 30]   ->  bench/results/export_speed.json
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
import warnings
from pathlib import Path

import torch

from rayssl.config import FinetuneConfig, load_config
from rayssl.inference.export import export_program
from rayssl.train.pretrained import build_classifier

RESULTS = Path(__file__).parent / "results"


def artefacts(net: torch.nn.Module) -> dict[str, dict]:
    """{name: {"module", "create_s", "load_s", "bytes"}} for eager, torch.export and TorchScript trace."""
    out = {"eager": {"module": net}}
    started = time.perf_counter()
    buf = io.BytesIO()
    torch.export.save(export_program(net, 3, 32), buf)
    created = time.perf_counter() - started
    buf.seek(0)
    started = time.perf_counter()
    out["torch.export"] = {
        "module": torch.export.load(buf).module(),
        "create_s": created,
        "load_s": time.perf_counter() - started,
        "bytes": buf.getbuffer().nbytes,
    }
    with warnings.catch_warnings():  # TorchScript's own deprecation warnings
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        buf = io.BytesIO()
        torch.jit.save(torch.jit.trace(net, torch.zeros(2, 3, 32, 32)), buf)
        created = time.perf_counter() - started
        buf.seek(0)
        started = time.perf_counter()
        out["torchscript trace"] = {
            "module": torch.jit.load(buf).eval(),
            "create_s": created,
            "load_s": time.perf_counter() - started,
            "bytes": buf.getbuffer().nbytes,
        }
    return out


@torch.inference_mode()
def throughput(models: dict[str, dict], batch: int, reps: int) -> dict[str, float]:
    """Median images/s per model, calls interleaved across models."""
    x = torch.randn(batch, 3, 32, 32)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(3):
        for m in models.values():
            m["module"](x)
    for _ in range(reps):
        for name, m in models.items():
            started = time.perf_counter()
            m["module"](x)
            times[name].append(time.perf_counter() - started)
    return {name: batch / statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    cfg = load_config(FinetuneConfig, "configs/semisup_cifar10.yaml", ["data.shards=unused"])
    torch.manual_seed(0)
    net = build_classifier(cfg).eval()
    models = artefacts(net)
    x = torch.randn(64, 3, 32, 32)
    with torch.inference_mode():
        diffs = {name: float((m["module"](x) - net(x)).abs().max()) for name, m in models.items()}
    default_threads = torch.get_num_threads()
    speed = {}
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        for batch in (256, 1):
            speed[f"threads={threads} batch={batch}"] = throughput(models, batch, args.reps if batch > 1 else 10 * args.reps)
    torch.set_num_threads(default_threads)
    report = {
        "model": "CIFAR small_cnn classifier (configs/semisup_cifar10.yaml: width 32, 32x32 RGB, 10 classes)",
        "torch": torch.__version__,
        "artefacts": {name: {k: v for k, v in m.items() if k != "module"} for name, m in models.items()},
        "max_abs_logit_difference_vs_eager": diffs,
        "images_per_s": speed,
        "relative_to_eager": {k: {name: v / s["eager"] for name, v in s.items()} for k, s in speed.items()},
    }
    print(json.dumps(report, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "export_speed.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
