"""`rayssl sweep`: Ray Tune over label budgets x variants x label draws and loss weights."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from rayssl.config.common import AugmentConfig
from rayssl.config.finetune import FinetuneConfig, FixMatchConfig
from rayssl.config.rules import NON_NEGATIVE, NONEMPTY, POSITIVE, check, require


def image_kind_views(kind: str, image_size: int) -> tuple[AugmentConfig, AugmentConfig]:
    """(weak view, FixMatch's strong view) for a kind of image at image_size px, scaled from the views
    the few-label benchmarks measured (bench/few_labels.py): symbols on MNIST (±2 px at 28 px; strong:
    ±4 px, ±20°, erasing), photos on CIFAR-10 (flip and ±12.5% of the side; strong: the same +
    RandAugment + Cutout, FixMatch's)."""
    if kind == "symbols":  # strokes on a plain ground: a flip or a colour change can make another symbol
        shift = max(1, round(0.07 * image_size))
        return AugmentConfig(translate_px=shift), AugmentConfig(translate_px=2 * shift, rotate_deg=20.0, erase_p=0.5)
    if kind == "photos":
        shift = max(1, round(0.125 * image_size))
        weak = AugmentConfig(translate_px=shift, horizontal_flip=True)
        return weak, dataclasses.replace(weak, randaugment_ops=2, cutout=0.5)
    raise ValueError(f"unknown image kind {kind!r}")


@dataclass(frozen=True)
class SweepConfig:
    """Ray Tune search over label budgets x variants x label draws, alpha, beta and lr (`rayssl sweep`)."""

    name: str = "sweep"  # the sweep directory: <storage_path>/<name> (re-using a name resumes)
    # What the corpus shows, for a corpus nobody tuned views for: symbols (digits, letters, icons: no
    # flip, no photometric change) or photos (flip, RandAugment). Every trial then takes its weak view
    # (finetune.data.augment) and FixMatch's strong view from `image_kind_views`, scaled to
    # finetune.data.image_size; "": the views finetune sets (which image_kind must then leave alone).
    image_kind: Literal["", "symbols", "photos"] = ""
    storage_path: str = "runs"  # where sweeps live, local or s3://
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # the base every trial overrides
    # Labels per class (grid), each drawn from the labels that exist; "all": every label (finetune.semisup.labels_per_class).
    budgets: list[int | Literal["all"]] = field(default_factory=lambda: [1, 5, 10, 50, 100])
    label_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # label draws per cell: mean +- std
    # How each budget's labelled images (budget x num_classes in all) are chosen: "balanced", the
    # class-balanced draw of finetune.semisup (it reads the labels: an oracle no user can run);
    # "random", uniform without looking at labels; "kcenter", "typiclust", "probcover" (rayssl.selection)
    # on the embeddings of selection_run's backbone. The label draw's seed seeds the selection.
    selection: Literal["balanced", "random", "kcenter", "typiclust", "probcover"] = "balanced"
    selection_run: str = ""  # the run whose backbone embeds the train split for selection (a pretraining run)
    pretrained: dict[str, str] = field(default_factory=dict)  # variant name -> pretraining run dir
    # The row "+ inversion loss" (from scratch); the pretrained rows always use the inversion loss.
    inversion: bool = True
    # Adds the row "+ FixMatch" (weight: finetune.fixmatch.weight, or 1).
    fixmatch: bool = False
    # Adds the row "inverted VAE" (finetune.ivae; its label-only records: finetune.ivae.label_only_data).
    # Tune draws its unlabelled and label-only bound weights log-uniformly from these ranges.
    inverted_vae: bool = False
    ivae_unlabelled_min: float = 0.3  # inverted VAE row: range of ivae.unlabelled (log-uniform)
    ivae_unlabelled_max: float = 3.0  # see ivae_unlabelled_min
    ivae_label_only_min: float = 10.0  # inverted VAE row: range of ivae.label_only (log-uniform)
    ivae_label_only_max: float = 100.0  # see ivae_label_only_min
    # Run only these rows (names as in the table, e.g. "+ FixMatch"); empty: every row the flags above
    # enable. For re-measuring one row after a change that only touches it (bench/label_efficiency.py).
    variants: list[str] = field(default_factory=list)
    samples: int = 2  # random draws of (alpha, beta, lr) per budget x variant x label draw
    seed: int = 0  # of those random draws: the same config samples the same settings
    alpha_min: float = 1e-3  # inversion rows: range of inversion.alpha (log-uniform)
    alpha_max: float = 1.0  # see alpha_min
    betas: list[float] = field(default_factory=lambda: [0.0])  # inversion rows: inversion.beta drawn from these
    lr_min: float = 3e-4  # every row: range of optim.lr (log-uniform)
    lr_max: float = 3e-3  # see lr_min
    max_concurrent_trials: int = 2  # size to the cluster: each trial holds finetune.train.num_workers workers
    grace_period: int = 1  # ASHA: reports (schedule.eval_every steps each) before a trial may be stopped
    trial_max_failures: int = 1  # Tune retries of a crashed trial
    # One-worker trials train inside their Tune actor (rayssl.train.loop.train_in_process): no Train
    # controller and worker actors to start per trial. false: every trial drives a Ray Train worker
    # group, as multi-worker trials always do.
    in_process_trials: bool = True
    # Before any trial: scan the shards for test images duplicated in another split (rayssl quality's
    # leak check). "refuse" stops the sweep, "warn" logs the leaks and goes on, "off" skips the scan.
    leak_check: Literal["refuse", "warn", "off"] = "warn"
    # "How many labels do I need?": the labels per class each variant needs for this test accuracy (a
    # fraction), from its fitted learning curve. None: for 90, 95 and 98% of the sweep's best mean.
    target_acc: float | None = None
    # Also score every selected trial on the corruption suite (rayssl robustness: 11 corruptions x 5
    # severities, seeded by `seed`): the table shows mean corruption accuracy next to test accuracy.
    robustness: bool = False

    def __post_init__(self) -> None:
        check(self, NONEMPTY, "budgets", "label_seeds", "betas")
        check(self, (lambda v: v == "all" or v > 0, '> 0 or "all"'), "budgets")
        check(
            self,
            POSITIVE,
            "samples",
            "alpha_min",
            "lr_min",
            "max_concurrent_trials",
            "grace_period",
            "ivae_unlabelled_min",
            "ivae_label_only_min",
        )
        check(self, NON_NEGATIVE, "betas", "trial_max_failures")
        check(self, (lambda v: 0 < v <= 1, "an accuracy in (0, 1]"), "target_acc")
        require(self.alpha_min <= self.alpha_max, "alpha_max", f"must be >= alpha_min ({self.alpha_min}), got {self.alpha_max}")
        require(self.lr_min <= self.lr_max, "lr_max", f"must be >= lr_min ({self.lr_min}), got {self.lr_max}")
        if self.selection != "balanced":
            require("all" not in self.budgets, "budgets", f'"all" cannot be selected (selection: {self.selection})')
            require(
                not self.finetune.semisup.labelled_ids,
                "finetune.semisup.labelled_ids",
                "must be empty when selection picks the labelled images",
            )
        require(
            bool(self.selection_run) or self.selection in ("balanced", "random"),
            "selection_run",
            f"{self.selection} selects on embeddings: name the pretraining run whose backbone embeds the train split",
        )
        views_set = (
            self.finetune.data.augment != AugmentConfig()
            or self.finetune.fixmatch.strong_augment != FixMatchConfig().strong_augment
            or self.finetune.semisup.labelled_augment is not None  # the labelled images' own view would escape image_kind
        )
        require(
            not (self.image_kind and views_set),
            "image_kind",
            f"{self.image_kind} sets finetune.data.augment and finetune.fixmatch.strong_augment (and the labelled images take the "
            "former): remove those and finetune.semisup.labelled_augment, or image_kind",
        )
        for bound in ("unlabelled", "label_only"):
            low, high = getattr(self, f"ivae_{bound}_min"), getattr(self, f"ivae_{bound}_max")
            require(low <= high, f"ivae_{bound}_max", f"must be >= ivae_{bound}_min ({low}), got {high}")

    def base_finetune(self) -> FinetuneConfig:
        """The fine-tuning config every trial starts from: `finetune`, with image_kind's views if it names one."""
        if not self.image_kind:
            return self.finetune
        weak, strong = image_kind_views(self.image_kind, self.finetune.data.image_size)
        f = self.finetune
        return dataclasses.replace(
            f, data=dataclasses.replace(f.data, augment=weak), fixmatch=dataclasses.replace(f.fixmatch, strong_augment=strong)
        )
