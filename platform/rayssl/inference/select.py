"""`rayssl select`: which unlabelled images to send to annotators next, from a run's embeddings.

    RUN's backbone ─► embeddings of the train split (eval.features.embed_split through Ray Data,
    or `--embeddings`: the parquet `rayssl embed` wrote) ─► rayssl.selection (random, k-center,
    TypiClust, ProbCover) ─► picks.csv (rank, sample_id, cluster) + picks.png (grouped by cluster)

Images the label table `--labels` already labels count as covered: they are never picked and steer
the picks away from what they already show, so the same command serves the second and third round.
The shards' own labels do not count (a benchmark's shards carry every label).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rayssl import selection  # noqa: E402
from rayssl.config import ConfigError, StorageConfig  # noqa: E402
from rayssl.data import storage  # noqa: E402
from rayssl.data.label_table import read_label_table, resolve_labels  # noqa: E402
from rayssl.data.labelled import load_labelled_sets  # noqa: E402
from rayssl.data.shardset import ShardSet  # noqa: E402
from rayssl.eval.features import embed_split  # noqa: E402
from rayssl.inference.runs import RunModel, load_backbone, read_run  # noqa: E402
from rayssl.selection.picks import picks_table, write_picks  # noqa: E402

SHEET_MAX_IMAGES = 200  # a contact sheet past this size is not read by anyone; the CSV has every pick


@dataclass(frozen=True)
class SelectOptions:
    """What `rayssl select` was asked for."""

    budget: int  # images to pick
    out: str  # the CSV's URI; the contact sheet is written next to it (.png)
    strategy: str = "typiclust"
    labels: str = ""  # label table of the images already labelled (covered, never picked)
    embeddings: str = ""  # `rayssl embed` output of the run's shards (else computed here)
    seed: int = 0
    purity_clusters: int | None = None  # ProbCover's k-means for delta (default: the shards' classes, else 10)
    delta: float | None = None  # ProbCover's radius, in place of the purity rule
    per_row: int = 10  # contact sheet columns


def check_options(opts: SelectOptions) -> None:
    """One-line errors before anything is read."""
    if opts.strategy not in selection.STRATEGIES:
        raise ConfigError(f"--strategy: {opts.strategy!r} is not one of {', '.join(selection.STRATEGIES)}")
    if opts.budget < 1:
        raise ConfigError(f"--budget must be >= 1, got {opts.budget}")
    if opts.delta is not None and not 0 < opts.delta <= 2:
        raise ConfigError(f"--delta must be in (0, 2] (distances between unit embeddings), got {opts.delta}")
    if not opts.out.endswith(".csv"):
        raise ConfigError(f"--out must name a .csv file (the contact sheet goes next to it), got {opts.out}")


def select_run(run_uri: str, opts: SelectOptions, storage_cfg: StorageConfig = StorageConfig()) -> dict[str, Any]:
    """Pick opts.budget images of the train split of `run_uri`'s shards; write the CSV and the PNG.
    Needs a running Ray unless opts.embeddings is given. Returns a summary (URIs, counts, details)."""
    check_options(opts)
    run = read_run(run_uri, storage_cfg)
    shards = ShardSet.open(run.cfg.data.shards, storage_cfg, check=False)
    ids = shards.sample_ids("train")
    covered = _already_labelled(opts.labels, ids, shards, run, storage_cfg)  # a bad table fails before any embedding
    index, vectors = _read_embeddings(opts.embeddings, ids, storage_cfg) if opts.embeddings else _embed(run, opts, storage_cfg)
    classes = shards.manifest.get("classes")
    purity_clusters = opts.purity_clusters or (len(classes) if classes else 10)
    try:
        picked = selection.select(
            opts.strategy, vectors, opts.budget, labelled=covered[index], seed=opts.seed, purity_clusters=purity_clusters, delta=opts.delta
        )
    except ValueError as exc:  # a budget above the unlabelled images, a zero embedding row: the user's to fix, in one line
        raise ConfigError(f"rayssl select {run.run_dir}: {exc}") from None
    write_picks(opts.out, picks_table(ids[index], picked.indices, picked.clusters, opts.strategy), storage_cfg)
    png = opts.out.removesuffix(".csv") + ".png"
    picks = index[picked.indices]
    images = load_labelled_sets(run.cfg.data, {"picks": picks}, np.zeros(len(ids), np.int64), storage_cfg, shards)["picks"]
    order = {int(i): n for n, i in enumerate(images.indices)}
    sheet = contact_sheet(images.images[[order[int(i)] for i in picks]], picked.clusters, opts.per_row, opts.strategy)
    storage.write_bytes(png, sheet, storage_cfg)
    return {
        "csv": opts.out,
        "png": png,
        "picked": len(picks),
        "embedded": len(index),
        "already_labelled": int(covered.sum()),
        "clusters": len(set(picked.clusters.tolist()) - {-1}),
        "details": picked.details,
    }


def _already_labelled(uri: str, ids: np.ndarray, shards: ShardSet, run: RunModel, storage_cfg: StorageConfig) -> np.ndarray:
    """bool [N] by train index: labelled by the table at `uri` (all False without one)."""
    if not uri:
        return np.zeros(len(ids), bool)
    has_test = shards.manifest["splits"].get("test", {}).get("rows", 0) > 0
    test_ids = set(shards.read_columns("test", ["sample_id"]).column("sample_id").to_pylist()) if has_test else set()
    num_classes = getattr(getattr(run.cfg, "semisup", None), "num_classes", None)
    resolved = resolve_labels(read_label_table(uri, storage_cfg), list(ids), shards.manifest.get("classes"), test_ids, None, num_classes)
    return resolved.labels >= 0


def _embed(run: RunModel, opts: SelectOptions, storage_cfg: StorageConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train index int64 [N], float32 [N, D]) from the run's backbone; quarantine records go next to the CSV."""
    return embed_split(load_backbone(run), run.cfg.data, "train", opts.out.removesuffix(".csv") + "_embedding", storage_cfg)


def _read_embeddings(uri: str, ids: np.ndarray, storage_cfg: StorageConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train index int64 [N], float32 [N, D]) from `rayssl embed` output of this shard set (its train rows)."""
    fs, path = storage.resolve(uri, storage_cfg)
    try:
        table = pq.read_table(path, filesystem=fs, columns=["sample_id", "split", "embedding"], filters=pc.field("split") == "train")
    except (FileNotFoundError, KeyError) as exc:
        raise FileNotFoundError(f"--embeddings {uri}: no `rayssl embed` output of a shard set there ({exc})") from None
    position = {sample_id: i for i, sample_id in enumerate(ids)}
    index = np.array([position.get(s, -1) for s in table.column("sample_id").to_pylist()], np.int64)
    if len(index) == 0 or (index < 0).all():
        raise ConfigError(f"--embeddings {uri}: none of its train rows is a train image of the run's shards")
    if (index < 0).any():
        unknown = table.column("sample_id")[int(np.flatnonzero(index < 0)[0])]
        raise ConfigError(f"--embeddings {uri}: sample_id {unknown} is not in the run's shards (embeddings of another shard set?)")
    dim = table.schema.field("embedding").type.list_size
    vectors = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, dim).astype(np.float32)
    order = np.argsort(index)
    return index[order], vectors[order]


def contact_sheet(images: np.ndarray, clusters: np.ndarray, per_row: int, strategy: str) -> bytes:
    """PNG of the picks (uint8 [B, H, W, C], in pick order) sorted by cluster, each captioned
    'c<cluster> #<rank>'; grey or RGB as the images are. At most SHEET_MAX_IMAGES."""
    shown = min(len(images), SHEET_MAX_IMAGES)
    order = np.argsort(clusters[:shown], kind="stable")
    rows = max(1, -(-shown // per_row))
    fig, axes = plt.subplots(rows, per_row, figsize=(per_row * 1.0, rows * 1.15), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for slot, pick in enumerate(order):
        ax = axes[slot // per_row, slot % per_row]
        image = images[pick]
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=255)
        label = f"c{clusters[pick]} #{pick + 1}" if clusters[pick] >= 0 else f"#{pick + 1}"
        ax.text(0.5, -0.08, label, transform=ax.transAxes, ha="center", va="top", fontsize=6)
    more = f" (first {shown} of {len(images)})" if shown < len(images) else ""
    fig.suptitle(f"{strategy}: {len(images)} picks by cluster{more}", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
