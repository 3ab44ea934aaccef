"""The inverted VAE on MNIST, in its two modes, over 3 label draws (or seeds) per variant:

- `5_per_class` (the label-efficiency curve's row, configs/ivae_mnist.yaml): 5 labelled images per
  class, every other train image unlabelled, 60,000 label-only records (every train label, no image).
  Variants: supervised only (bench/few_labels.py's row, rerun here on the same draws), and the inverted
  VAE with the unlabelled bound's gradient into q(y|x) on and off; the one with the best mean validation
  accuracy is marked selected.
- `paper_protocol` (configs/ivae_mnist_paper.yaml, the authors' experiment): labelled images of digits
  0-4 only, 10 soft label-only "corners" for all ten digits; with and without the reverse bound, over
  3 seeds. Beside test accuracy, what the authors plot (the cross-entropy on the digits 5-9, never
  labelled) and the Hungarian-matched accuracy on 5-9 (rayssl.eval.matching). On 2 CPU cores the
  authors' 10,000-row batches take ~2.8 s a step, so this runs --paper-batch rows per batch for
  --paper-steps steps (the config's other settings unchanged); the markdown says so.

- `imbalanced` (label-only records that carry information): MNIST cut to a long tail, class c keeping
  the first 10^(-c/9) of its images in train and in test (digit 0 all of them, digit 9 a tenth), 5
  labelled images per class, the other train images unlabelled and their labels as label-only records
  (an imbalanced corpus whose label counts are known). The inverted VAE with a uniform p(y) against p(y)
  from the label-only records (ivae.class_prior: label_only), and supervised only; test accuracy on the
  long-tailed test split, beside balanced accuracy.

With --sweep, the validation-selected trial of each label draw of a finished `rayssl sweep --config
configs/sweep_ivae_mnist.yaml` (Ray Tune over the two unsupervised bounds' weights, 3 weight draws per
label draw) becomes the 5_per_class row "inverted VAE, bound weights searched by Tune", in the
validation selection with the others.

Generated digits of draw 0 of every variant go to bench/results/ivae_mnist.png; their generative
accuracy is the fraction of 100 per class that an independent supervised CNN assigns to that class.
Writes bench/results/ivae_mnist.{json,md,png}, the JSON rewritten after every run.

    rayssl shards build --source mnist --path ../shared/data/mnist --out data/shards/mnist
    .venv/bin/python bench/ivae_mnist.py [--settings 5_per_class paper_protocol imbalanced] [--draws 3]
    .venv/bin/python bench/ivae_mnist.py --settings --sweep runs/sweep_ivae_mnist   # only the sweep's row
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from few_labels import SETTINGS as FEW_LABELS  # bench/few_labels.py: the supervised-only row's recipe
from rayssl.config import DataConfig, FinetuneConfig, StorageConfig, SweepConfig, load_config
from rayssl.data import storage
from rayssl.data.label_only import export_labels
from rayssl.data.labelled import read_columns
from rayssl.data.shards import read_manifest, write_shards
from rayssl.data.sources import RawSample, SourceData
from rayssl.data.transforms import normalise
from rayssl.eval.classifier import write_test_report
from rayssl.methods.inverted_vae import generate
from rayssl.models.classifier import Classifier
from rayssl.models.inversion_nets import small_cnn
from rayssl.train import checkpoints
from rayssl.train.launch import run_dir_of, run_finetune
from rayssl.train.pretrained import build_classifier

RESULTS = Path("bench/results")
STORAGE = "bench/out/ivae_runs"
SHARDS = "data/shards/mnist"
LABEL_ONLY = "bench/out/ivae_runs/mnist_train_labels.parquet"
IMBALANCED_SHARDS = "bench/out/ivae_runs/mnist_long_tail"
IMBALANCED_LABEL_ONLY = "bench/out/ivae_runs/mnist_long_tail_train_labels.parquet"
IMBALANCE = 10.0  # the most frequent class over the least frequent
LONG_TAIL_STEPS = 750  # the inverted VAE's steps on the long tail
SUPERVISED = FEW_LABELS["mnist_5labels"]
SWEEP_CONFIG = "configs/sweep_ivae_mnist.yaml"
SWEEP_VARIANT = "inverted VAE, bound weights searched by Tune"
REFERENCES = (
    "M2 with 100 labels (all digits): 88.03% (Kingma et al. 2014, arXiv 1406.5298, Table 1). "
    'Gemp, Mahadevan, Parente ("Inverting Variational Autoencoders for Improved Generative Accuracy", 2017 '
    "workshop version of arXiv 1608.05983) plot the protocol's cross-entropy on 5-9 against epochs, with the "
    "reverse bound below without it; they give no table."
)


@dataclass(frozen=True)
class Mode:
    config: str
    seed_key: str  # what differs between draws
    variants: dict[str, list[str]]  # name -> overrides of the config
    configs: dict[str, str] | None = None  # a variant's own config, where it is not `config`

    def config_of(self, variant: str) -> str:
        return (self.configs or {}).get(variant, self.config)


def modes(args: argparse.Namespace) -> dict[str, Mode]:
    paper_scale = [
        f"schedule.steps={args.paper_steps}",
        f"schedule.eval_every={args.paper_steps // 4}",
        f"data.batch_size={args.paper_batch}",
        f"semisup.labelled_batch_size={args.paper_batch}",
        f"ivae.label_only_batch_size={args.paper_batch}",
    ]
    # Half the 5_per_class row's 1,500 steps, so that both priors over 3 draws fit 30 CPU minutes: the rows differ by the prior only.
    long_tail = [
        f"data.shards={IMBALANCED_SHARDS}",
        f"ivae.label_only_data={IMBALANCED_LABEL_ONLY}",
        "ivae.unlabelled_trains_classifier=true",
        f"schedule.steps={LONG_TAIL_STEPS}",
    ]
    return {
        "5_per_class": Mode(
            "configs/ivae_mnist.yaml",
            "semisup.label_seed",
            {
                "supervised only": SUPERVISED.variants["supervised only"].overrides,
                "inverted VAE, unlabelled bound stops at q(y|x)": [
                    f"ivae.label_only_data={LABEL_ONLY}",
                    "ivae.unlabelled_trains_classifier=false",
                ],
                "inverted VAE, unlabelled bound trains q(y|x)": [
                    f"ivae.label_only_data={LABEL_ONLY}",
                    "ivae.unlabelled_trains_classifier=true",
                ],
                # With a 16-d z the decoder draws digits from z alone and ignores y (1 in 4 generated images is of its
                # class): x~ is then mostly mislabelled for the classifier. The authors' 2-d z leaves class to y
                # (69% of generated images of their class) but lost 7 points of test accuracy (80.06 +- 3.91%).
                "inverted VAE, 2-d z, unlabelled bound trains q(y|x)": [
                    f"ivae.label_only_data={LABEL_ONLY}",
                    "ivae.unlabelled_trains_classifier=true",
                    "ivae.latent_dim=2",
                ],
            },
            configs={"supervised only": SUPERVISED.config},
        ),
        "paper_protocol": Mode(
            "configs/ivae_mnist_paper.yaml",
            "train.seed",
            {"with reverse bound": paper_scale, "without reverse bound (M2)": [*paper_scale, "ivae.label_only=0"]},
        ),
        "imbalanced": Mode(
            "configs/ivae_mnist.yaml",
            "semisup.label_seed",
            {
                "supervised only": [*SUPERVISED.variants["supervised only"].overrides, f"data.shards={IMBALANCED_SHARDS}"],
                "inverted VAE, uniform class prior": long_tail,
                "inverted VAE, class prior from the label-only records": [*long_tail, "ivae.class_prior=label_only"],
            },
            configs={"supervised only": SUPERVISED.config},
        ),
    }


def build_long_tail_shards() -> dict[str, list[int]]:
    """MNIST cut to a long tail at IMBALANCED_SHARDS (once): in train and in test, class c keeps its first
    ceil(n_c * IMBALANCE^(-c/9)) images. Returns {split: images kept per class}."""
    kept: dict[str, list[int]] = {}
    splits = {}
    for split in ("train", "test"):
        table = read_columns(DataConfig(shards=SHARDS), split, ["sample_id", "image", "label"], StorageConfig())
        labels = table.column("label").to_numpy()
        quota = [int(np.ceil((labels == c).sum() * IMBALANCE ** (-c / 9))) for c in range(10)]
        rows = np.concatenate([np.flatnonzero(labels == c)[: quota[c]] for c in range(10)])
        rows.sort()  # the shards' order, classes interleaved as in MNIST
        ids, images = table.column("sample_id").to_pylist(), table.column("image").to_pylist()
        splits[split] = [RawSample(ids[i], images[i], int(labels[i])) for i in rows]
        kept[split] = quota
    if not storage.exists(f"{IMBALANCED_SHARDS}/manifest.json", StorageConfig()):
        classes = read_manifest(SHARDS, StorageConfig()).get("classes")
        write_shards(SourceData({split: iter(samples) for split, samples in splits.items()}, classes), IMBALANCED_SHARDS)
    return kept


def mnist_arrays(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded MNIST split as normalised [N, 1, 28, 28] float and [N] labels (for the independent judge)."""
    from rayssl.data.decode import ImageSpec, decode_batch

    table = read_columns(DataConfig(shards=SHARDS), split, ["sample_id", "index", "image", "label"], StorageConfig())
    ok, images, _ = decode_batch(
        table.column("sample_id").to_pylist(), table.column("index").to_numpy(), table.column("image").to_pylist(), ImageSpec(28, 1)
    )
    return normalise(torch.from_numpy(images).permute(0, 3, 1, 2)), torch.as_tensor(table.column("label").to_numpy()[ok])


def train_judge(seed: int = 0) -> tuple[torch.nn.Module, float]:
    """A supervised CNN on all 60,000 labelled train images (2 epochs, plain PyTorch), independent of every run."""
    torch.manual_seed(seed)
    x, y = mnist_arrays("train")
    net = Classifier(small_cnn(1, 28, 32, False), 128, 10)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(2):
        for batch in torch.randperm(len(y)).split(128):
            opt.zero_grad()
            F.cross_entropy(net(x[batch]), y[batch]).backward()
            opt.step()
    net.eval()
    tx, ty = mnist_arrays("test")
    with torch.no_grad():
        acc = float(torch.cat([net(b).argmax(1) for b in tx.split(1000)]).eq(ty).float().mean())
    return net, acc


@torch.no_grad()
def generative_accuracy(cfg: FinetuneConfig, checkpoint: str, judge: torch.nn.Module) -> tuple[list[float], torch.Tensor]:
    """(per class, the fraction of 100 decoder images (pixel means, z from the prior) the judge assigns to
    it; a 10 x 10 grid of them [100, 1, 28, 28] in [-1, 1], row = class)."""
    vae = build_classifier(cfg)
    vae.load_state_dict(checkpoints.load_model_state(checkpoint, cfg.storage)[0])
    vae.eval()
    torch.manual_seed(0)
    y = torch.arange(10).repeat_interleave(100)
    images = generate(vae, F.one_hot(y, 10).float())[1]
    judged = torch.cat([judge(b).argmax(1) for b in images.split(500)])
    return [float(judged[y == c].eq(c).float().mean()) for c in range(10)], images.view(10, 100, 1, 28, 28)[:, :10].reshape(100, 1, 28, 28)


def run_config(mode: Mode, setting: str, variant: str, seed: int) -> FinetuneConfig:
    """One variant's run on one draw, named after both (a rerun of the script resumes or reuses it)."""
    slug = "".join(c if c.isalnum() else "_" for c in variant)[:40]
    overrides = [*mode.variants[variant], f"{mode.seed_key}={seed}", f"run.storage_path={STORAGE}", f"run.name={setting}_{slug}_{seed}"]
    return load_config(FinetuneConfig, mode.config_of(variant), overrides)


def one_run(mode: Mode, setting: str, variant: str, seed: int, judge: torch.nn.Module) -> tuple[dict[str, Any], torch.Tensor | None]:
    """Fine-tune one variant on one draw and score it on the test split: (its record, its grid or None)."""
    started = time.perf_counter()
    cfg = run_config(mode, setting, variant, seed)
    outcome = run_finetune(cfg)
    report = write_test_report(cfg, outcome.checkpoint, outcome.run_dir)
    run: dict[str, Any] = {"seed": seed, "val_acc": outcome.metrics["val_acc"], "test_acc": report["accuracy"]}
    run["balanced_acc"] = report["balanced_accuracy"]
    if setting == "imbalanced":  # mean per-class recall of the frequent digits 0-4 and of the rare 5-9
        recall = list(report["per_class_accuracy"].values())
        run["head_acc"], run["tail_acc"] = float(np.mean(recall[:5])), float(np.mean(recall[5:]))
    if never := report.get("classes_never_labelled"):
        run.update(matched_acc_5_9=never["matched_accuracy"], raw_acc_5_9=never["accuracy"], ce_5_9=never["cross_entropy"])
        run["predicted_5_9"] = never["predicted_among_them"]  # the matched accuracy's ceiling
    grid = None
    if cfg.method == "inverted_vae" and seed == 0 and setting != "imbalanced":  # the long tail asks about q(y|x), not x~
        per_class, grid = generative_accuracy(cfg, outcome.checkpoint, judge)
        run.update(generative_acc=float(np.mean(per_class)), generative_acc_5_9=float(np.mean(per_class[5:])))
    run["wall_s"] = round(time.perf_counter() - started, 1)
    print(setting, variant, run, flush=True)
    return run, grid


def summarise(setting: str, variant: str, mode: Mode, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of the JSON: mean and std (over draws, ddof 0) of every per-run figure, and the runs."""
    row: dict[str, Any] = {"setting": setting, "variant": variant, "config": mode.config_of(variant), "overrides": mode.variants[variant]}
    row["draws"] = len(runs)
    for key in ("test_acc", "val_acc", "balanced_acc", "head_acc", "tail_acc", "matched_acc_5_9", "raw_acc_5_9", "predicted_5_9", "ce_5_9"):
        values = [r[key] for r in runs if key in r]
        if values:
            row[f"{key}_mean"], row[f"{key}_std"] = float(np.mean(values)), float(np.std(values))
    for key in ("generative_acc", "generative_acc_5_9"):  # draw 0's (the only one generated from)
        if runs and key in runs[0]:
            row[key] = runs[0][key]
    row["runs"] = runs
    return row


def sweep_row(sweep_dir: Path, judge: torch.nn.Module) -> tuple[dict[str, Any], torch.Tensor]:
    """The 5_per_class row of a finished sweep of SWEEP_CONFIG (its label_efficiency.json): each label
    draw's validation-selected trial, the weights it drew, and draw 0's generated digits (its checkpoint).
    A run's wall_s is the sweep's trial time per label draw: the search's cost, stopped trials included."""
    report = json.loads((sweep_dir / "label_efficiency.json").read_text())
    draws = sorted((d for d in report["draws"] if d["variant"] == "inverted VAE" and d["budget"] == 5), key=lambda d: d["label_seed"])
    if not draws:
        raise SystemExit(f"{sweep_dir}/label_efficiency.json: no inverted VAE draw at 5 labels per class (was it swept by {SWEEP_CONFIG}?)")
    trial_s = 3600 * report["compute"]["per_variant"]["inverted VAE"]["cpu_hours"] / report["compute"]["resources_per_trial"]["CPU"]
    keys = ("val_acc", "test_acc", "ivae_unlabelled", "ivae_label_only")
    runs = [{"seed": d["label_seed"], **{k: d[k] for k in keys}, "wall_s": round(trial_s / len(draws), 1)} for d in draws]
    per_class, grid = generative_accuracy(
        load_config(SweepConfig, SWEEP_CONFIG).base_finetune(), str(sweep_dir / draws[0]["checkpoint"]), judge
    )
    runs[0].update(generative_acc=float(np.mean(per_class)), generative_acc_5_9=float(np.mean(per_class[5:])))
    return summarise("5_per_class", SWEEP_VARIANT, Mode(SWEEP_CONFIG, "semisup.label_seed", {SWEEP_VARIANT: []}), runs), grid


def mark_selected(rows: list[dict[str, Any]]) -> None:
    """In 5_per_class, the inverted-VAE variant with the best mean validation accuracy is `selected`."""
    ivae = [r for r in rows if r["setting"] == "5_per_class" and r["variant"].startswith("inverted VAE")]
    best = max(ivae, key=lambda r: r["val_acc_mean"], default=None)
    for r in ivae:
        r["selected"] = r is best


def pct(row: dict[str, Any], key: str) -> str:
    return f"{100 * row[f'{key}_mean']:.2f} ± {100 * row[f'{key}_std']:.2f}%" if f"{key}_mean" in row else "–"


def markdown(result: dict[str, Any]) -> str:
    rows, a = result["rows"], result["args"]
    lines = [
        f"MNIST, inverted VAE (`bench/ivae_mnist.py`, 2-core CPU), mean ± std over {a['draws']} label draws (5 per class) "
        f"or seeds (the authors' protocol). {REFERENCES}",
        "",
        "5 labels per class (configs/ivae_mnist.yaml; supervised only: bench/few_labels.py's recipe, 86.44 ± 2.57% in "
        "bench/results/mnist_5labels.md); the inverted VAE's variant is selected on validation:",
        "",
        "| variant | test accuracy | validation | generative acc (draw 0) | selected | wall per run |",
        "|---|---:|---:|---:|:-:|---:|",
    ]
    for r in (r for r in rows if r["setting"] == "5_per_class"):
        gen = f"{100 * r['generative_acc']:.1f}%" if "generative_acc" in r else "–"
        chosen = {True: "yes", False: "", None: ""}[r.get("selected")]
        wall = np.mean([run["wall_s"] for run in r["runs"]]) / 60
        lines.append(f"| {r['variant']} | {pct(r, 'test_acc')} | {pct(r, 'val_acc')} | {gen} | {chosen} | {wall:.1f} min |")
    swept = next((r for r in rows if r["variant"] == SWEEP_VARIANT), None)
    if swept:
        weights = ", ".join(f"draw {run['seed']}: {run['ivae_unlabelled']:.2f} and {run['ivae_label_only']:.1f}" for run in swept["runs"])
        lines += [
            "",
            f"{SWEEP_VARIANT} ({SWEEP_CONFIG}): ivae.unlabelled and ivae.label_only drawn log-uniform, 3 draws of them per label "
            f"draw, each label draw's trial chosen on validation; the recipe's are 1 and 50. Chosen: {weights}. Its wall per run is "
            "the sweep's trial time per label draw (ASHA-stopped trials included).",
        ]
    lines += [
        "",
        f"The authors' protocol (configs/ivae_mnist_paper.yaml), scaled to this CPU: {a['paper_steps']} steps of {a['paper_batch']:,} rows "
        "per batch (the authors: 4,000 steps of 10,000); labels for digits 0-4 only:",
        "",
        "| variant | test accuracy | matched accuracy on 5-9 | raw accuracy on 5-9 | 5-9 images predicted as 5-9 | cross-entropy on 5-9 "
        "| generative acc 5-9 (seed 0) | wall per run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in (r for r in rows if r["setting"] == "paper_protocol"):
        gen = f"{100 * r['generative_acc_5_9']:.1f}%" if "generative_acc_5_9" in r else "–"
        ce = f"{r['ce_5_9_mean']:.2f} ± {r['ce_5_9_std']:.2f}" if "ce_5_9_mean" in r else "–"
        wall = np.mean([run["wall_s"] for run in r["runs"]]) / 60
        lines.append(
            f"| {r['variant']} | {pct(r, 'test_acc')} | {pct(r, 'matched_acc_5_9')} | {pct(r, 'raw_acc_5_9')} | {pct(r, 'predicted_5_9')} | {ce} "
            f"| {gen} | {wall:.1f} min |"
        )
    long_tail = [r for r in rows if r["setting"] == "imbalanced"]
    if long_tail:
        kept = result.get("long_tail_images", {})
        lines += [
            "",
            f"A long-tailed MNIST (digit c keeps {IMBALANCE:.0f}^(-c/9) of its images: {sum(kept.get('train', []))} train, "
            f"{sum(kept.get('test', []))} test; digit 0 {kept.get('train', ['?'])[0]} train images, digit 9 {kept.get('train', ['?'])[-1]}), "
            f"5 labelled images per class, the train labels as label-only records, the inverted VAE for {LONG_TAIL_STEPS} steps "
            "(supervised only: its 1,500); test accuracy on the long-tailed test split, and the mean per-class accuracy of the "
            "frequent and of the rare digits:",
            "",
            "| variant | test accuracy | balanced accuracy | frequent digits 0-4 | rare digits 5-9 | validation | wall per run |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in long_tail:
            wall = np.mean([run["wall_s"] for run in r["runs"]]) / 60
            lines.append(
                f"| {r['variant']} | {pct(r, 'test_acc')} | {pct(r, 'balanced_acc')} | {pct(r, 'head_acc')} | {pct(r, 'tail_acc')} "
                f"| {pct(r, 'val_acc')} | {wall:.1f} min |"
            )
    lines += [
        "",
        f"Independent judge of the generated digits: a supervised CNN on all 60,000 train labels, test accuracy {100 * result['judge_acc']:.2f}%. "
        f"Generated digits, draw 0 of each inverted-VAE variant (rows: class 0-9; left to right: {', '.join(result['grids'])}): "
        "`bench/results/ivae_mnist.png`.",
    ]
    return "\n".join(lines) + "\n"


def grid_path(setting: str, variant: str) -> Path:
    """Where a variant's grid of generated digits (draw 0) is kept between runs of this script."""
    return Path(STORAGE) / "grids" / f"{setting}__{''.join(c if c.isalnum() else '_' for c in variant)}.pt"


def save_grid(setting: str, variant: str, grid: torch.Tensor) -> None:
    """Keep a variant's grid of generated digits [100, 1, 28, 28] at grid_path for later runs' PNG."""
    grid_path(setting, variant).parent.mkdir(parents=True, exist_ok=True)
    torch.save(grid, grid_path(setting, variant))


def keep_missing_grids(args: argparse.Namespace, rows: list[dict[str, Any]], judge: torch.nn.Module) -> None:
    """Grids of rows kept from an earlier run of this script that has none saved: from their draw 0's checkpoint."""
    for row in rows:
        mode = modes(args)[row["setting"]]
        if row["variant"] not in mode.variants:  # the sweep's row: its grid was saved when it was added
            continue
        cfg = run_config(mode, row["setting"], row["variant"], 0)
        checkpoint = checkpoints.latest_checkpoint(run_dir_of(cfg), cfg.storage)
        if cfg.method == "inverted_vae" and checkpoint and not grid_path(row["setting"], row["variant"]).exists():
            save_grid(row["setting"], row["variant"], generative_accuracy(cfg, checkpoint, judge)[1])


def write(result: dict[str, Any]) -> None:
    """The JSON, the markdown and the PNG (the kept grid of every row that has one, in the rows' order)."""
    RESULTS.mkdir(exist_ok=True)
    mark_selected(result["rows"])
    kept = [(r, grid_path(r["setting"], r["variant"])) for r in result["rows"] if "generative_acc" in r]
    # Without every row's grid at hand (a rerun elsewhere of some rows), the PNG and its list stay as they were.
    complete = all(path.exists() for _, path in kept)
    grids = [torch.load(path) for _, path in kept] if complete else []
    if complete:
        result["grids"] = [f"{r['setting']}: {r['variant']}" for r, _ in kept]
    (RESULTS / "ivae_mnist.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "ivae_mnist.md").write_text(markdown(result))
    if grids:  # one 10 x 10 grid per variant (row = class y), side by side
        tiles = [torchvision.utils.make_grid((g + 1) / 2, nrow=10, padding=2, pad_value=1.0)[None] for g in grids]
        torchvision.utils.save_image(torch.cat(tiles), RESULTS / "ivae_mnist.png", nrow=len(grids), padding=8, pad_value=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--settings",
        nargs="*",
        default=["5_per_class", "paper_protocol", "imbalanced"],
        choices=["5_per_class", "paper_protocol", "imbalanced"],
    )
    parser.add_argument("--draws", type=int, default=3, help="label draws (5_per_class) or seeds (paper_protocol) per variant")
    parser.add_argument("--variants", nargs="+", help="only these variants (names as in the table); the JSON keeps the other rows")
    parser.add_argument("--sweep", help=f"a finished sweep of {SWEEP_CONFIG}: its row replaces the JSON's")
    parser.add_argument("--paper-steps", type=int, default=800)
    parser.add_argument("--paper-batch", type=int, default=1000, help="labelled, unlabelled and label-only rows per step")
    args = parser.parse_args()
    records = export_labels(SHARDS, "train", LABEL_ONLY, StorageConfig())
    if "imbalanced" in args.settings:
        long_tail = build_long_tail_shards()
        export_labels(IMBALANCED_SHARDS, "train", IMBALANCED_LABEL_ONLY, StorageConfig())
    judge, judge_acc = train_judge()
    print(f"independent judge: test accuracy {100 * judge_acc:.2f}%", flush=True)
    result: dict[str, Any] = {"args": vars(args), "judge_acc": judge_acc, "label_only_records": records, "rows": [], "grids": []}
    if "imbalanced" in args.settings:
        result["long_tail_images"] = long_tail
    if (RESULTS / "ivae_mnist.json").exists():  # a partial rerun: keep the rows (and their long tail) it does not redo
        earlier = json.loads((RESULTS / "ivae_mnist.json").read_text())
        # The sweep's row is replaced by add_row when --sweep names one, and kept otherwise.
        rerun = {(s, v) for s in args.settings for v in modes(args)[s].variants if not args.variants or v in args.variants}
        result["rows"] = [r for r in earlier["rows"] if (r["setting"], r["variant"]) not in rerun]
        result["grids"] = earlier.get("grids", [])
        if "imbalanced" not in args.settings and "long_tail_images" in earlier:
            result["long_tail_images"] = earlier["long_tail_images"]
        keep_missing_grids(args, result["rows"], judge)
    for setting in args.settings:
        mode = modes(args)[setting]
        for variant in (v for v in mode.variants if not args.variants or v in args.variants):
            runs = []
            for seed in range(args.draws):
                run, grid = one_run(mode, setting, variant, seed, judge)
                runs.append(run)
                if grid is not None:
                    save_grid(setting, variant, grid)
            add_row(args, result, summarise(setting, variant, mode, runs))
    if args.sweep:
        row, grid = sweep_row(Path(args.sweep), judge)
        save_grid(row["setting"], row["variant"], grid)
        add_row(args, result, row)
    print(markdown(result))


def add_row(args: argparse.Namespace, result: dict[str, Any], row: dict[str, Any]) -> None:
    """Put row in the result in the tables' order (the sweep's row last of 5_per_class), replacing an earlier one, and write."""
    order = [(name, v) for name, m in modes(args).items() for v in m.variants]
    order.insert(len(modes(args)["5_per_class"].variants), ("5_per_class", SWEEP_VARIANT))
    result["rows"] = [r for r in result["rows"] if (r["setting"], r["variant"]) != (row["setting"], row["variant"])] + [row]
    result["rows"].sort(key=lambda r: order.index((r["setting"], r["variant"])))
    write(result)


if __name__ == "__main__":
    main()
