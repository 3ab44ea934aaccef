"""`rayssl export` without Ray: a tiny classifier exported, then predicted by the standalone
predict.py in a process that cannot import rayssl, against the eager model on the same files."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import jpeg_bytes, png_bytes
from rayssl.config import ConfigError, FinetuneConfig, PretrainConfig, StorageConfig, dump_yaml, load_config
from rayssl.data.decode import decode_batch, image_spec
from rayssl.data.transforms import ImageTransform
from rayssl.inference.export import ensure_export, export_run, load_exported
from rayssl.inference.runs import read_run
from rayssl.train import checkpoints
from rayssl.train.pretrained import build_classifier

CLASSES = ["cat", "dog", "bird"]


def make_run(root: Path, *overrides: str) -> tuple[FinetuneConfig, torch.nn.Module, Path]:
    """A fine-tuned run dir as train.checkpoints writes one: config.yaml + checkpoint_*/{model,optimizer,method}.pt, meta.json.
    Batch norm with non-trivial running statistics, so a model exported in training mode would differ."""
    shards = root / "shards"
    shards.mkdir(parents=True)
    (shards / "manifest.json").write_text(json.dumps({"format": "rayssl-shards/1", "classes": CLASSES, "splits": {}}))
    cfg = load_config(
        FinetuneConfig,
        None,
        [
            f"data.shards={shards}",
            f"run.storage_path={root / 'runs'}",
            "run.name=ft",
            "data.image_size=8",
            "data.channels=3",
            "model.name=small_cnn",
            "model.width=8",
            "model.embed_dim=16",
            "model.batch_norm=true",
            "semisup.num_classes=3",
            *overrides,
        ],
    )
    torch.manual_seed(0)
    net = build_classifier(cfg)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    run_dir = root / "runs" / "ft"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    checkpoints.save_local(
        run_dir / "checkpoint_2024-01-01_00-00-00.000000", net.state_dict(), {}, {}, {"epoch": 1, "global_step": 7, "metrics": {}}
    )
    return cfg, net.eval(), run_dir


def image_files(directory: Path) -> list[Path]:
    """RGB PNGs at the model's size and larger, a grey PNG, a 40-px JPEG (decoded at a reduced DCT scale)."""
    rng = np.random.default_rng(0)
    directory.mkdir()
    files = {}
    for i in range(4):
        files[f"small{i}.png"] = png_bytes(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    files["wide.png"] = png_bytes(rng.integers(0, 256, (10, 13, 3), dtype=np.uint8))
    files["grey.png"] = png_bytes(rng.integers(0, 256, (8, 8), dtype=np.uint8))
    files["photo.jpg"] = jpeg_bytes(np.kron(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8)))
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return [directory / name for name in files]


def eager_predictions(cfg: FinetuneConfig, net: torch.nn.Module, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(class index [N], softmax confidence [N]) of the eager model on rayssl's own decode + transform."""
    images = [p.read_bytes() for p in paths]
    ok, pixels, bad = decode_batch([str(p) for p in paths], np.arange(len(paths)), images, image_spec(cfg.data, train=False))
    assert ok.all() and not bad
    with torch.no_grad():
        probs = torch.softmax(net(torch.from_numpy(ImageTransform(8, None, 3)(pixels))), dim=1)
    confidence, index = probs.max(dim=1)
    return index.numpy(), confidence.numpy()


def without_rayssl_env() -> dict[str, str]:
    """An environment for `python -S`: site-packages on PYTHONPATH for torch/numpy/PIL, but no site
    processing, so the editable install's .pth that puts platform/ (rayssl) on sys.path never runs."""
    return {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}


def test_exported_model_predicts_like_the_eager_model_without_rayssl(tmp_path):
    cfg, net, run_dir = make_run(tmp_path)
    info = export_run(str(run_dir), str(tmp_path / "export"))
    out = tmp_path / "export"
    assert sorted(p.name for p in out.iterdir()) == ["model.pt2", "predict.py", "preprocess.json"]
    pre = json.loads((out / "preprocess.json").read_text())
    assert pre["classes"] == CLASSES and pre["input"] == {
        **pre["input"],
        "image_size": 8,
        "channels": 3,
        "layout": "NCHW",
        "dtype": "float32",
    }
    assert (
        pre["decode"]["crop"] == "resize"
        and pre["global_step"] == 7
        and pre["checkpoint"].endswith("checkpoint_2024-01-01_00-00-00.000000")
    )
    assert len(pre["config_sha256"]) == 64 and info["model_bytes"] == (out / "model.pt2").stat().st_size

    env = without_rayssl_env()
    blocked = subprocess.run([sys.executable, "-S", "-c", "import rayssl"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert blocked.returncode != 0 and "No module named 'rayssl'" in blocked.stderr

    paths = image_files(tmp_path / "images")
    (tmp_path / "images" / "broken.png").write_bytes(png_bytes(np.zeros((8, 8, 3), np.uint8))[:40])
    result = subprocess.run(
        [
            sys.executable,
            "-S",
            str(out / "predict.py"),
            *map(str, paths),
            str(tmp_path / "images" / "broken.png"),
            "--out",
            str(tmp_path / "pred.csv"),
            "--batch-size",
            "3",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stderr and "broken.png" in result.stderr
    rows = list(csv.DictReader((tmp_path / "pred.csv").open()))
    assert [r["path"] for r in rows] == [str(p) for p in paths]  # the broken file skipped, every other one predicted
    index, confidence = eager_predictions(cfg, net, paths)
    assert [r["class"] for r in rows] == [CLASSES[i] for i in index]
    np.testing.assert_allclose([float(r["confidence"]) for r in rows], confidence, rtol=0, atol=1e-6)
    assert len(set(index.tolist())) > 1 or confidence.std() > 0  # the comparison is not between constant outputs


def test_exported_program_has_a_dynamic_batch_and_eval_mode_weights(tmp_path):
    _, net, run_dir = make_run(tmp_path)
    export_run(str(run_dir), str(tmp_path / "export"))
    model, pre = load_exported(str(tmp_path / "export"), StorageConfig())
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        for batch in (1, 5):
            torch.testing.assert_close(model(x[:batch]), net(x[:batch]), rtol=0, atol=1e-6)
        train_mode = net.train()(x)
    assert (model(x) - train_mode).abs().max() > 1e-3  # batch-norm running stats were used: eval weights
    assert pre["output"]["num_classes"] == 3


def test_ensure_export_reuses_a_current_export_and_redoes_a_stale_one(tmp_path):
    _, net, run_dir = make_run(tmp_path)
    run = read_run(str(run_dir), StorageConfig())
    out = Path(ensure_export(run))
    first = (out / "model.pt2").stat().st_mtime_ns
    assert Path(ensure_export(run)) == out and (out / "model.pt2").stat().st_mtime_ns == first
    newer = run_dir / "checkpoint_2024-01-02_00-00-00.000000"
    state = {k: v + 1 if v.is_floating_point() else v for k, v in net.state_dict().items()}
    checkpoints.save_local(newer, state, {}, {}, {"epoch": 2, "global_step": 9, "metrics": {}})
    ensure_export(read_run(str(run_dir), run.storage))
    assert json.loads((out / "preprocess.json").read_text())["checkpoint"] == str(newer)


def test_export_refuses_a_pretraining_run(tmp_path):
    cfg = load_config(PretrainConfig, None, [f"run.storage_path={tmp_path}", "run.name=nat"])
    run_dir = tmp_path / "nat"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    checkpoints.save_local(run_dir / "checkpoint_x", {}, {}, {}, {"epoch": 1, "global_step": 1, "metrics": {}})
    with pytest.raises(ConfigError, match="pretraining run .* no classifier to export; `rayssl embed`"):
        export_run(str(run_dir), str(tmp_path / "export"))
    assert not (tmp_path / "export").exists()


def test_workers_normalise_is_trainings_evaluation_normalisation():
    from rayssl.data.transforms import normalise as training_normalise
    from rayssl.inference.workers import normalise

    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 7, 7, 3), dtype=np.uint8)).permute(0, 3, 1, 2)
    ours = normalise(pixels)
    assert torch.equal(ours, training_normalise(pixels)) and ours.dtype == torch.float32
    assert (
        ours.min() >= -1
        and ours.max() <= 1
        and torch.equal(normalise(torch.tensor([0, 255], dtype=torch.uint8)), torch.tensor([-1.0, 1.0]))
    )


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_standalone_decode_reproduces_rayssl_decode_for_centre_crops(tmp_path, fmt):
    """crop: random_crop configs are evaluated on a centre crop (image_spec(train=False)); predict.py
    reproduces it: exactly for PNGs (the same Pillow decode and torch resize kernel), within two grey
    levels for JPEGs (rayssl decodes them with simplejpeg, predict.py with Pillow, both libjpeg-turbo)."""
    import importlib.util

    from rayssl.config import DataConfig
    from rayssl.data.decode import decode_image
    from rayssl.inference.export import preprocess_info

    spec_module = importlib.util.spec_from_file_location(
        "standalone_predict", Path(__file__).parents[2] / "platform/rayssl/inference/standalone_predict.py"
    )
    standalone = importlib.util.module_from_spec(spec_module)
    spec_module.loader.exec_module(standalone)
    data = DataConfig(shards="unused", image_size=24, channels=3, crop="random_crop")
    pre = preprocess_info(SimpleNamespace(run_dir="run", config_sha256="0" * 64, checkpoint="run/checkpoint_0"), data, ["a"], 0)
    assert pre["decode"]["crop"] == "center_crop" and pre["decode"]["center_fraction"] == 0.875
    assert image_spec(data, train=False).crop == "center_crop"
    rng = np.random.default_rng(1)
    smooth = np.kron(rng.integers(0, 256, (14, 20, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))  # 112 x 160: DCT scale 1/4 for JPEG
    path = tmp_path / f"photo.{fmt}"
    path.write_bytes(png_bytes(smooth) if fmt == "png" else jpeg_bytes(smooth, quality=95))
    ours = standalone.decode(str(path), pre).astype(int)
    theirs = decode_image(path.read_bytes(), image_spec(data, train=False)).astype(int)
    assert ours.shape == theirs.shape == (24, 24, 3)
    assert np.abs(ours - theirs).max() <= (0 if fmt == "png" else 2)
