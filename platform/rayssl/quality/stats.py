"""Per-corpus statistics of the quality report: outliers, class balance, sources. Pure numpy."""

from __future__ import annotations

from collections import Counter

import numpy as np

# A value this many robust standard deviations (1.4826 x MAD) from the median is an outlier.
OUTLIER_Z = 5.0
# Below this grey-level standard deviation an image is blank or constant.
BLANK_STD = 1.0
# A mode (or size) held by fewer than this fraction of images, when one value holds most, is odd.
RARE_FRACTION = 0.01


def robust_z(values: np.ndarray) -> np.ndarray:
    """(v - median) / (1.4826 MAD); where MAD is 0, any value off the median is infinitely far."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return values
    median = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - median))
    if mad == 0:
        off = values - median
        return np.where(off == 0, 0.0, np.copysign(np.inf, off))
    return (values - median) / mad


def outliers(
    mean: np.ndarray, std: np.ndarray, entropy: np.ndarray, height: np.ndarray, width: np.ndarray, mode: list[str]
) -> dict[str, np.ndarray]:
    """Boolean [N] masks per outlier kind. A blank image is reported as blank only."""
    blank = np.asarray(std) < BLANK_STD
    brightness = robust_z(mean)
    area, aspect = robust_z(np.log(np.asarray(height) * np.asarray(width))), robust_z(np.log(np.asarray(width) / np.asarray(height)))
    modes = Counter(mode)
    common_mode, common_count = modes.most_common(1)[0] if modes else ("", 0)
    rare_mode = np.array(
        [m != common_mode and modes[m] < RARE_FRACTION * len(mode) and common_count > len(mode) / 2 for m in mode], dtype=bool
    )
    return {
        "blank": blank,
        "too_dark": ~blank & (brightness < -OUTLIER_Z),
        "too_bright": ~blank & (brightness > OUTLIER_Z),
        "low_information": ~blank & (robust_z(entropy) < -OUTLIER_Z),
        "unusual_size": np.abs(area) > OUTLIER_Z,
        "unusual_aspect": np.abs(aspect) > OUTLIER_Z,
        "unusual_channels": rare_mode,
    }


def class_balance(labels: np.ndarray, classes: list[str], min_per_class: int) -> dict:
    """Histogram of the labelled images of one split, imbalance ratio (largest / smallest class), and
    the classes with fewer than `min_per_class` labelled images (classes with none included)."""
    labelled = np.asarray(labels)[np.asarray(labels) >= 0]
    counts = np.bincount(labelled, minlength=len(classes)) if len(classes) else np.bincount(labelled)
    names = classes or [str(i) for i in range(len(counts))]
    return {
        "labelled": int(len(labelled)),
        "unlabelled": int(len(labels) - len(labelled)),
        "histogram": {names[i]: int(c) for i, c in enumerate(counts)},
        "imbalance_ratio": float(counts.max() / counts.min())
        if len(counts) and counts.min() > 0
        else float("inf")
        if len(labelled)
        else None,
        "classes_below_min": [names[i] for i, c in enumerate(counts) if c < min_per_class],
    }


def source_of(sample_id: str) -> str:
    """The source a sample id names: its first path segment ("camA/0001.jpg" -> "camA"), "" if none."""
    return sample_id.split("/", 1)[0] if "/" in sample_id else ""


def sources(sample_ids: list[str], mean: np.ndarray, std: np.ndarray, labels: np.ndarray, num_classes: int) -> list[dict]:
    """Per-source statistics, with the sources that differ most flagged; [] when there are fewer than two sources.

    Flagged: mean brightness or contrast more than 3 robust deviations from the other sources', or a
    label distribution at total-variation distance > 0.5 from the whole split's.
    """
    names = np.array([source_of(s) for s in sample_ids])
    unique = sorted(set(names))
    if len(unique) < 2:
        return []
    labels = np.asarray(labels)
    overall = np.bincount(labels[labels >= 0], minlength=num_classes).astype(np.float64)
    overall /= max(overall.sum(), 1)
    rows = []
    for name in unique:
        mask = names == name
        own = labels[mask & (labels >= 0)]
        hist = np.bincount(own, minlength=num_classes) / max(len(own), 1)
        rows.append(
            {
                "source": name,
                "images": int(mask.sum()),
                "mean_brightness": float(np.mean(mean[mask])),
                "mean_contrast": float(np.mean(std[mask])),
                "label_tv_distance": float(0.5 * np.abs(hist - overall).sum()) if len(own) else None,
            }
        )
    brightness_z = robust_z(np.array([r["mean_brightness"] for r in rows])) if len(rows) >= 3 else np.zeros(len(rows))
    contrast_z = robust_z(np.array([r["mean_contrast"] for r in rows])) if len(rows) >= 3 else np.zeros(len(rows))
    for row, bz, cz in zip(rows, brightness_z, contrast_z):
        reasons = [
            why
            for why, bad in (("brightness", abs(bz) > 3), ("contrast", abs(cz) > 3), ("labels", (row["label_tv_distance"] or 0) > 0.5))
            if bad
        ]
        row["flagged"] = reasons
    return rows
