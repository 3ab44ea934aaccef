"""The fine-tuning recipe in a plain PyTorch loop (no Ray): the reference a platform run is held to.

Same config file, same label draw, same step object (rayssl.train.steps.FinetuneStep) and the same
in-memory unlabelled batches (rayssl.data.in_memory), but one process runs it: no Ray, no Ray Train.
Prints validation and test accuracy against steps and wall time, so a platform figure far from this
one points at the platform, and one close to it at the recipe.

    .venv/bin/python bench/plain_finetune.py --config configs/semisup_mnist.yaml --set inversion.alpha=0.01
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from rayssl.config import FinetuneConfig, load_config
from rayssl.data.in_memory import InMemoryBatches, decode_split
from rayssl.data.labelled import load_labelled, select_labels
from rayssl.data.transforms import normalise
from rayssl.methods import registry
from rayssl.train.steps import FinetuneData, FinetuneStep


@torch.no_grad()
def predict(net: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """Predicted classes [N] of uint8 images [N, H, W, C]."""
    net.eval()
    x = normalise(torch.from_numpy(images).permute(0, 3, 1, 2))
    predicted = torch.cat([net(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)]).numpy()
    net.train()
    return predicted


def most_confused(labels: np.ndarray, predicted: np.ndarray, top: int = 3) -> list[str]:
    """The `top` most frequent (true -> predicted) errors, e.g. '4->9: 153'."""
    pairs, counts = np.unique(np.stack([labels, predicted])[:, labels != predicted], axis=1, return_counts=True)
    order = np.argsort(-counts)[:top]
    return [f"{pairs[0, i]}->{pairs[1, i]}: {counts[i]}" for i in order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="append a JSON line with the curve here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(FinetuneConfig, args.config, args.overrides)
    s = cfg.semisup
    plan = select_labels(cfg.data, s, cfg.storage)
    split = plan.split
    labelled, validation = (load_labelled(cfg.data, indices, plan.labels, cfg.storage) for indices in (split.labelled, split.validation))
    quarantine_dir = tempfile.mkdtemp(prefix="plain_finetune_")  # records of undecodable images, if any
    train, test = decode_split(cfg.data, "train", quarantine_dir, cfg.storage), decode_split(cfg.data, "test", quarantine_dir, cfg.storage)
    test_images, test_labels = test.images, test.labels
    torch.manual_seed(cfg.train.seed)
    step = FinetuneStep(
        cfg,
        FinetuneData(
            labelled.images,
            labelled.labels,
            labelled.indices,
            validation.images,
            validation.labels,
            split.validation,
            np.zeros((0, cfg.semisup.num_classes), np.float32),
        ),
    )
    # the platform's in-memory unlabelled batches (rayssl.data.in_memory), in this process
    unlabelled = InMemoryBatches(train.indices, train.images, cfg.data, registry.strong_view(cfg), cfg.train.seed)
    torch.manual_seed(cfg.train.seed + 1000)
    cpu = torch.device("cpu")
    epoch = unlabelled.epoch

    curve, started, t = [], time.perf_counter(), 0
    for round_index in range(step.num_rounds):
        for batch in step.round_batches(epoch, round_index, cpu):
            loss, _ = step.step(step.net, batch, round_index, lambda x: x[None])
            step.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            step.optimizer.step()
            step.after_step()
            t += 1
        predicted = predict(step.eval_net(), test_images)
        point = {
            "step": t,
            "seconds": round(time.perf_counter() - started, 1),
            "loss": float(loss.detach()),
            "val_acc": step.round_metrics(cpu)["val_acc"],
            "test_acc": float((predicted == test_labels).mean()),
            "most_confused": most_confused(test_labels, predicted),
        }
        curve.append(point)
        print(json.dumps(point), flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps({"config": args.config, "overrides": args.overrides, "curve": curve}) + "\n")


if __name__ == "__main__":
    main()
