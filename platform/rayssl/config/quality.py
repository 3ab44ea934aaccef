"""`rayssl quality` and `rayssl robustness`: corpus checks and accuracy under corruption."""

from __future__ import annotations

from dataclasses import dataclass, field

from rayssl.config.common import RayInitConfig, StorageConfig
from rayssl.config.rules import FRACTION, NON_NEGATIVE, NONEMPTY, OPEN_UNIT, POSITIVE, check, require
from rayssl.data.corruptions import CORRUPTIONS as CORRUPTION_NAMES  # the suite's names (rayssl robustness)


@dataclass(frozen=True)
class QualityConfig:
    """Corpus quality report (`rayssl quality`): one streaming pass over every split of a shard set."""

    shards: str = "data/shards/digits"  # URI of the shard set to check
    out: str = "runs/quality"  # quality.json, quality.md, quality.png and the decode quarantine go here
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayInitConfig = field(default_factory=RayInitConfig)
    neighbours: int = 10  # near-duplicate candidates per image from the thumbnail index
    max_changed_fraction: float = 0.05  # near duplicates: structure pixels changed after alignment (see quality.signatures)
    align_radius: int = 2  # px searched in each direction when aligning a candidate pair
    # Near-duplicate rule: "digits" (structure pixels off a background, aligned within align_radius),
    # "photos" (colour thumbnails, a threshold calibrated on edits planted in the corpus: quality.photos),
    # or "auto": photos when most images are colour.
    near_duplicates: str = "auto"
    calibration_images: int = 1200  # corpus images the photo rule plants edits on to calibrate its threshold (200 per edit)
    calibration_quantile: float = 0.01  # the photo threshold: per edit, this quantile of its planted pairs' scores (the lowest over edits)
    # A safety net: the photo threshold rises until at most this fraction of images is flagged (real corpora
    # repeat themselves: ~7% of CIFAR-10's images have a copy above the calibrated threshold).
    max_near_duplicate_fraction: float = 0.1
    # Photo candidates registered at 32 px, per image: each image's best first, then the best prefilter scores (bounds the work).
    registered_per_image: float = 2.0
    min_per_class: int = 10  # classes with fewer labelled images are listed
    label_issues: bool = True  # likely mislabelled images (cleanlab): from finetune_run, a probe on features_from, or a kNN on thumbnails
    finetune_run: str = ""  # a fine-tuned run directory whose classifier gives the predicted probabilities
    # A pretraining (or fine-tuned) run directory: its backbone embeds every image; a 5-fold kNN probe on
    # the embeddings gives the label check's probabilities (unless finetune_run is set).
    features_from: str = ""
    min_probe_accuracy: float = 0.8  # label issues are listed only when their classifier is this accurate, and clearly above chance
    label_issues_shown: int = 50  # label issues listed in quality.md, most suspicious first (quality.json has all)
    examples_per_finding: int = 8  # images per row of the contact sheet

    def __post_init__(self) -> None:
        check(self, POSITIVE, "neighbours", "min_per_class", "examples_per_finding", "label_issues_shown")
        check(self, OPEN_UNIT, "max_changed_fraction", "calibration_quantile", "max_near_duplicate_fraction")
        check(self, POSITIVE, "calibration_images", "registered_per_image")
        check(self, (lambda v: v in ("auto", "digits", "photos"), "one of auto, digits, photos"), "near_duplicates")
        check(self, FRACTION, "min_probe_accuracy")
        check(self, NON_NEGATIVE, "align_radius")
        require(bool(self.shards), "shards", "must name a shard set URI")


@dataclass(frozen=True)
class RobustnessConfig:
    """Accuracy under common corruptions and domain shift (`rayssl robustness`)."""

    # A fine-tuned run (its classifier is scored) or a pretraining run (a linear probe on its frozen backbone).
    run: str = ""
    shards: str = ""  # corrupt the test split of these shards (default: the run's own data.shards)
    target_shards: str = ""  # a shard set standing for a new domain: its clean test accuracy is reported too
    out: str = ""  # robustness.{json,md,png} (default: <run>/robustness)
    corruptions: list[str] = field(default_factory=lambda: list(CORRUPTION_NAMES))  # which of the corruptions to apply (all 11 by default)
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])  # severity levels, 1 (mild) to 5 (strong)
    seed: int = 0  # of every corrupted sample's randomness: the same suite in every run
    probe_train_samples: int = 10_000  # pretraining runs: clean train images the linear probe is fit on
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayInitConfig = field(default_factory=RayInitConfig)

    def __post_init__(self) -> None:
        require(bool(self.run), "run", "must name a fine-tuned or pretraining run directory")
        check(self, NONEMPTY, "corruptions", "severities")
        check(self, (lambda v: v in CORRUPTION_NAMES, f"one of {', '.join(CORRUPTION_NAMES)}"), "corruptions")
        check(self, (lambda v: 1 <= v <= 5, "between 1 and 5"), "severities")
        check(self, POSITIVE, "probe_train_samples")
