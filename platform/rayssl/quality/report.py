"""Writing the quality report: quality.json, quality.md and a contact sheet PNG, to any URI."""

from __future__ import annotations

import io
import json

import matplotlib

matplotlib.use("Agg")  # headless: workers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rayssl import markdown as md  # noqa: E402
from rayssl.config import StorageConfig  # noqa: E402
from rayssl.data import storage  # noqa: E402
from rayssl.quality.signatures import Signatures  # noqa: E402


def sample_name(member: dict) -> str:
    """ "split/sample_id", without repeating the split when the id already starts with it ("train/000042")."""
    return member["sample_id"] if member["sample_id"].startswith(member["split"] + "/") else f"{member['split']}/{member['sample_id']}"


def markdown(report: dict) -> str:
    """The human-readable report: the summary table, then the details a user acts on."""
    f = report["findings"]
    blocks: list[str | list[str]] = [
        f"# Quality report: {report['shards']}",
        f"{f['images']} decodable images in {report['seconds']:.1f} s ({report['images_per_s']:.0f} images/s).",
        md.table(["finding", "count"], "lr", report["summary"].items()),
    ]
    for title, items in _finding_lists(report):
        if items:
            more = [f"- ... {len(items) - 50} more in quality.json"] if len(items) > 50 else []
            blocks += [f"## {title} ({len(items)})", [*items[:50], *more]]
    return md.document(*blocks, *_label_section(f), *_class_balance(f), *_sources(f))


def _finding_lists(report: dict) -> list[tuple[str, list[str]]]:
    """(section title, one line per finding) for every kind of finding, in the report's order."""
    f, show = report["findings"], sample_name
    return [
        ("Undecodable images", [f"- {show(r)}: {r['reason']}" for r in report["undecodable"]]),
        ("Train/test leaks", [f"- {show(x['a'])} = {show(x['b'])} ({x['kind']})" for x in f["leaks"]]),
        ("Exact duplicates", [f"- {', '.join(show(m) for m in g)}" for g in f["exact_duplicates"]]),
        ("Near duplicates", [f"- {', '.join(show(m) for m in g)}" for g in f["near_duplicates"]]),
        *[(f"Outliers: {kind.replace('_', ' ')}", [f"- {show(m)}" for m in members]) for kind, members in f["outliers"].items()],
    ]


def _label_section(f: dict) -> list[str | list[str]]:
    """Where the label check's probabilities came from and how accurate they are, then the top issues,
    most suspicious first; or, when that classifier was too weak, why none are listed."""
    if not f["label_issues_from"]:
        return []
    issues = f["label_issues"]
    shown = f.get("label_issues_shown", min(len(issues), 50))
    lines = [
        f"- {sample_name(x)}: labelled {x['label']}, looks like {x['suggested']}"
        + (f" (label quality {x['label_quality']:.3f})" if "label_quality" in x else "")
        for x in issues[:shown]
    ]
    text = f"Probabilities from {f['label_issues_from']}."
    if issues:
        text += (
            f" {len(issues)} images listed, most suspicious first (cleanlab's label quality: the probability of the given label);"
            f" the top {shown} here, all of them in quality.json."
        )
    return [f"## Likely label issues ({len(issues)})", text, *([lines] if lines else [])]


def _class_balance(f: dict) -> list[str | list[str]]:
    rows = [
        [
            split,
            b["labelled"],
            b["unlabelled"],
            "n/a" if b["imbalance_ratio"] is None else f"{b['imbalance_ratio']:.2f}",
            ", ".join(b["classes_below_min"]) or "-",
        ]
        for split, b in f["class_balance"].items()
    ]
    return ["## Class balance", md.table(["split", "labelled", "unlabelled", "imbalance ratio", "classes below min"], "lrrrl", rows)]


def _sources(f: dict) -> list[str | list[str]]:
    """Per split with sources: their image statistics and which are flagged."""
    blocks: list[str | list[str]] = []
    header = ["source", "images", "mean brightness", "mean contrast", "label TV distance", "flagged"]
    for split, rows in f["sources"].items():
        cells = [
            [
                r["source"],
                r["images"],
                f"{r['mean_brightness']:.1f}",
                f"{r['mean_contrast']:.1f}",
                "-" if r["label_tv_distance"] is None else format(r["label_tv_distance"], ".2f"),
                ", ".join(r["flagged"]) or "-",
            ]
            for r in rows
        ]
        if rows:
            blocks += [f"## Sources in {split}", md.table(header, "lrrrrl", cells)]
    return blocks


def sheet_rows(report: dict, per_row: int) -> list[tuple[str, list[dict]]]:
    """(row title, up to per_row members) per finding that has any: what the contact sheet draws."""
    f = report["findings"]
    rows = [
        ("exact duplicates", [m for g in f["exact_duplicates"] for m in g[:2]]),
        ("near duplicates", [m for g in f["near_duplicates"] for m in g[:2]]),
        ("leaks", [m for x in f["leaks"] for m in (x["a"], x["b"])]),
        *[(kind.replace("_", " "), members) for kind, members in f["outliers"].items()],
        ("label issues", f["label_issues"]),  # most suspicious first
    ]
    return [(title, members[:per_row]) for title, members in rows if members]


def contact_sheet(report: dict, sigs: Signatures, per_row: int, images: dict[tuple[str, str], np.ndarray] | None = None) -> bytes:
    """PNG: one row of example images per finding that has any.

    images: {(split, sample_id): uint8 [H, W, C]} as stored (quality.examples.read_examples), drawn in
    colour when C is 3; a member without one is drawn from its grey 28 x 28 analysis image.
    """
    position = {(s, i): p for p, (s, i) in enumerate(zip(sigs.split, sigs.sample_id))}
    images = images or {}
    rows = sheet_rows(report, per_row)
    fig, axes = plt.subplots(max(len(rows), 1), per_row, figsize=(per_row * 1.1, max(len(rows), 1) * 1.3), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (title, members) in enumerate(rows):
        axes[r, 0].set_title(title, loc="left", fontsize=8)
        for c, member in enumerate(members):
            key = (member["split"], member["sample_id"])
            pixels = images.get(key)
            if pixels is not None and pixels.shape[2] == 3:
                axes[r, c].imshow(pixels)
            else:
                grey = pixels[..., 0] if pixels is not None else sigs.analysis[position[key]]
                axes[r, c].imshow(grey, cmap="gray", vmin=0, vmax=255)
            caption = f"{member['label']}->{member['suggested']}" if "suggested" in member else member["sample_id"].rsplit("/", 1)[-1][:10]
            axes[r, c].text(0.5, -0.12, caption, transform=axes[r, c].transAxes, ha="center", va="top", fontsize=6)
    if not rows:
        axes[0, 0].text(0, 0.5, "no findings to show", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def write_report(
    out_uri: str,
    report: dict,
    sigs: Signatures,
    per_row: int,
    storage_cfg: StorageConfig,
    images: dict[tuple[str, str], np.ndarray] | None = None,
) -> dict[str, str]:
    """Write the three files; returns {kind: URI}. images: the contact sheet's examples as stored (see contact_sheet)."""
    uris = {kind: storage.join(out_uri, f"quality.{kind}") for kind in ("json", "md", "png")}
    storage.write_bytes(uris["json"], json.dumps(report, indent=1).encode(), storage_cfg)
    storage.write_bytes(uris["md"], markdown(report).encode(), storage_cfg)
    storage.write_bytes(uris["png"], contact_sheet(report, sigs, per_row, images), storage_cfg)
    return uris


def summary_table(summary: dict[str, int]) -> str:
    """The console's summary: one aligned line per finding."""
    width = max(len(k) for k in summary)
    return "\n".join(f"  {k.ljust(width)}  {v:>7}" for k, v in summary.items())
