"""`rayssl finetune`: the labelled set, the schedule, each fine-tuning method's section and the job's config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rayssl.config.common import BLOCK_BACKBONES, AugmentConfig, JobConfig, RunConfig, TrainConfig
from rayssl.config.rules import FRACTION, HALF_OPEN_UNIT, NON_NEGATIVE, OPEN_UNIT, POSITIVE, check, require


@dataclass(frozen=True)
class SemiSupConfig:
    """The labelled set of few-label fine-tuning: which labels, how many, how they are drawn and
    batched. The loss terms beyond cross-entropy have their own sections (inversion, fixmatch, ivae)."""

    # Labelled train images per class, drawn (seeded, nested) from the labels that exist; "all": every
    # labelled train image outside validation. A class with fewer labels gives what it has (labels.json says so).
    labels_per_class: int | Literal["all"] = 5
    # Validation, for model selection only: a stratified val_fraction of each class's labels, at least
    # one and at most val_per_class (so a fully labelled benchmark keeps exactly val_per_class per class).
    val_per_class: int = 10
    val_fraction: float = 0.2
    label_seed: int = 0  # seed of the label draw (one seed = one draw; sweeps repeat over label_seeds)
    # A label table (CSV or parquet at any URI the shards accept; rayssl.data.label_table) adding labels
    # to the train split's images without rewriting them: a key column `sample_id` or `path`, and `label`.
    labels: str = ""
    # Train on exactly these images instead of drawing labels_per_class of each class: a list of images
    # (`rayssl select`'s CSV, or any CSV/parquet with a sample_id or path column). Their labels come from
    # the shards and `labels`; validation (and the test hold-out) are drawn as usual, minus these images.
    labelled_ids: str = ""
    # Shards without a labelled test split: this stratified fraction of each class's labels (at least one)
    # is held out as the test set, drawn once (not per label_seed) so every draw is scored on the same images.
    test_fraction: float = 0.2
    # Labelled batches draw each class equally often (weights 1 / class count): imbalanced labels are
    # the normal case. With equal counts per class this is plain uniform sampling, as before.
    balanced_batches: bool = True
    # The labelled images' view, made per sample on the worker at every step. None: data.augment, the
    # unlabelled stream's view. Few labelled images miss styles the unlabelled ones show (a 7 with or
    # without its bar), which shear and elastic distortion of the labelled few can supply.
    labelled_augment: AugmentConfig | None = None
    labelled_batch_size: int = 32  # labelled images drawn (with replacement) per step per worker
    num_classes: int = 10  # classes of the classifier's head
    # Draw labelled and validation images from these classes only (empty: all). The other classes
    # stay in the unlabelled stream and the test split: e.g. the inverted VAE's protocol, labels for 0-4 only.
    labelled_classes: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        check(self, POSITIVE, "val_per_class", "labelled_batch_size")
        check(self, (lambda v: v == "all" or v > 0, '> 0 or "all"'), "labels_per_class")
        check(self, OPEN_UNIT, "val_fraction", "test_fraction")
        check(self, (lambda v: 0 <= v < self.num_classes, f"a class id in [0, {self.num_classes})"), "labelled_classes")
        check(self, (lambda v: v >= 2, ">= 2"), "num_classes")


@dataclass(frozen=True)
class InversionConfig:
    """Deep-network inversion (rayssl.methods.inversion): CE + alpha * reconstruction of every image
    + beta * prediction entropy of the unlabelled ones."""

    # Reconstruction through the network's transposed local linear maps (Balestriero et al.):
    # global = ||x - A[x]^T f(x)||^2 (arXiv 1711.04313); multiscale = one size-normalised term per
    # layer, each layer's input from its output (arXiv 1802.10172).
    kind: Literal["global", "multiscale"] = "global"
    alpha: float = 0.0  # weight of the reconstruction loss; 0 = off
    beta: float = 0.0  # weight of the prediction entropy on unlabelled images
    # The entropy weight rises from 0 to beta over the first beta_rampup_steps optimiser steps
    # (rayssl.methods.inversion.sigmoid_rampup): entropy minimisation from step 0 makes the first,
    # mostly wrong predictions confident before the labelled loss has shaped them. 0: beta throughout.
    beta_rampup_steps: int = 0

    def __post_init__(self) -> None:
        check(self, NON_NEGATIVE, "alpha", "beta", "beta_rampup_steps")


@dataclass(frozen=True)
class FixMatchConfig:
    """FixMatch (rayssl.methods.fixmatch): CE of strong views against confident weak-view predictions."""

    weight: float = 0.0  # of the FixMatch term; 0 = off
    confidence: float = 0.95  # pseudo-label threshold (threshold: fixed)
    # fixed: `confidence` for every class (FixMatch). self_adaptive: FreeMatch's (Wang et al. 2023,
    # arXiv 2205.07246) class-wise thresholds from exponential moving averages of the unlabelled images'
    # predictions: the mean top confidence times each class's mean probability over the largest one.
    # They start at 1 / num_classes and rise as the model grows confident, so a weak start (few labels,
    # from scratch) still gets pseudo-labels; a class the model rarely predicts gets a lower threshold.
    threshold: Literal["fixed", "self_adaptive"] = "fixed"
    threshold_momentum: float = 0.999  # of those moving averages (per optimiser step; FreeMatch's)
    # The strong view of each unlabelled image, made in the Ray Data CPU stage (weight > 0 only).
    strong_augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(translate_px=4, rotate_deg=20.0, erase_p=0.5))

    def __post_init__(self) -> None:
        check(self, NON_NEGATIVE, "weight")
        check(self, FRACTION, "confidence")
        check(self, HALF_OPEN_UNIT, "threshold_momentum")


@dataclass(frozen=True)
class ScheduleConfig:
    """Fine-tuning length and learning-rate schedule, in optimiser steps (independent of corpus size)."""

    steps: int = 2000  # optimiser steps; the unlabelled stream repeats as often as needed
    warmup_steps: int = 100  # linear warmup, then the decay below
    # cosine: (1 + cos(pi p)) / 2 of the peak at progress p, to zero at the last step; cosine_7_16:
    # cos(7 pi p / 16), FixMatch's (Sohn et al. 2020), to 0.195 of the peak at the last step.
    lr_decay: Literal["cosine", "cosine_7_16"] = "cosine"
    eval_every: int = 250  # steps between validation, checkpoint and report (one Tune iteration)
    ema_decay: float = 0.0  # > 0: validation, checkpoints' eval weights and test use an EMA of the weights
    # From a pretrained backbone: the head trains alone for head_warmup_steps, then the backbone joins
    # at lr * backbone_lr_scale (self-supervised features are destroyed by a large fresh-head gradient).
    head_warmup_steps: int = 0
    backbone_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        check(self, POSITIVE, "steps", "eval_every")
        check(self, NON_NEGATIVE, "warmup_steps", "head_warmup_steps", "backbone_lr_scale")
        check(self, HALF_OPEN_UNIT, "ema_decay")


@dataclass(frozen=True)
class InvertedVAEConfig:
    """The inverted semi-supervised VAE (Gemp et al., arXiv 1608.05983): its networks, the estimators
    and loss weights of its bounds (rayssl.methods.inverted_vae) and where its label-only records come from."""

    latent_dim: int = 16  # width of the latent z
    # Prior of z. gaussian: N(0, I), KL in closed form. uniform_box: uniform on (-pi/2, pi/2)^latent_dim,
    # the posterior a Gaussian squashed into the box by a scaled sigmoid, KL estimated from the sample
    # (Gemp et al.'s code: LogisticFlowLayer, no prior term).
    prior: Literal["gaussian", "uniform_box"] = "gaussian"
    hidden: int = 500  # width of the encoder's and decoder's two hidden layers (unless encoder_hidden / decoder_hidden)
    # The hidden widths of q(z|x,y) and of p(x|y,z), input side first; empty: [hidden, hidden].
    # Gemp et al.'s MNIST networks: encoder [10, 10], decoder [250, 500].
    encoder_hidden: list[int] = field(default_factory=list)
    decoder_hidden: list[int] = field(default_factory=list)
    activation: Literal["softplus", "tanh"] = "softplus"  # of the encoder's and decoder's hidden layers (Gemp et al.: tanh)
    # Round every image to black or white (pixel intensity > 1/2) wherever the model reads one
    # (training, validation, test): the bounds then score binary pixels, as in Gemp et al.'s binarised MNIST.
    binarize: bool = False
    # Temperature of the Gumbel-Softmax y of the relaxed unlabelled bound, and of the generated pixels
    # when reverse_sample is relaxed_bernoulli.
    temperature: float = 0.5
    # The unlabelled bound's y. relaxed: one Gumbel-Softmax sample of q(y|x) (one decoder pass per
    # image). summed: M2's exact sum over every class, sum_y q(y|x) [bound of (x, y)] - H(q(y|x))
    # (Kingma et al. 2014, eq. 7): num_classes encoder and decoder passes per image, no sampling noise in y.
    unlabelled_bound: Literal["relaxed", "summed"] = "relaxed"
    # Whether the unlabelled bound's gradient reaches q(y|x). true: M2 (the bound also trains the
    # classifier, towards the classes under which the decoder explains x best, and towards a flat
    # q(y|x) through the KL). false: q(y|x) only weighs the classes (detached), so the encoder and
    # decoder learn from unlabelled images and the classifier from labels and x~ alone.
    unlabelled_trains_classifier: bool = True
    # The reverse bound's generated image x~. bernoulli: exact Bernoulli pixels, drawn without gradient,
    # so -log q(y|x~) trains the classifier only (Gemp et al.'s code). relaxed_bernoulli: a
    # reparameterised relaxed sample (temperature), through which -log q(y|x~) also trains the decoder
    # to draw what the classifier reads as y (the two can agree on patterns no digit has).
    reverse_sample: Literal["bernoulli", "relaxed_bernoulli"] = "bernoulli"
    labelled: float = 1.0  # weight of the labelled bound
    classification: float = 50.0  # weight of -log q(y|x) on labelled images (M2's alpha; the bounds are in nats over all pixels)
    unlabelled: float = 1.0  # weight of the unlabelled (forward) bound
    # Weight of the reverse bound on label-only records (0 = plain M2). Its gradient is a few nats of
    # class likelihood against ~100-200 nats of pixel likelihood in the forward bounds: at 300 MNIST
    # steps with relaxed_bernoulli samples, the classifier agreed with y on 15% of the decoder's images
    # at weight 10, 42% at 50.
    label_only: float = 50.0
    # Label-only records: a parquet or CSV file (or folder of them) at any URI the shards accept, with
    # an integer column `label`, or soft labels as a list column `probs` or columns p0 .. p{K-1}.
    label_only_data: str = ""
    label_only_batch_size: int = 64  # label-only records drawn per step per worker
    # The class prior p(y) of the generative model. uniform: 1/K, and q(y|x) is the classifier as
    # trained on the labelled set. label_only: the class frequencies of the label-only records (the
    # known label counts of an imbalanced corpus, say), add-one smoothed; q(y|x) is then the
    # classifier's output shifted by log p(y) - log (the labelled set's class frequency), a prior shift
    # (Saerens et al., Neural Computation 2002): the labelled cross-entropy reads the classifier on the
    # labelled set's own frequencies, while predictions, the unlabelled bound (its KL(q(y|x) || p(y)))
    # and the reverse bound read q(y|x) under p(y).
    class_prior: Literal["uniform", "label_only"] = "uniform"
    # p(y), [K] summing to 1, resolved at launch from class_prior (label_only fills it and
    # labelled_frequencies). Leave both empty: a run's config.yaml records what it trained with, so
    # evaluation and prediction rebuild the same classifier.
    class_prior_values: list[float] = field(default_factory=list)
    labelled_frequencies: list[float] = field(default_factory=list)  # the labelled set's class frequencies, [K], resolved at launch

    def __post_init__(self) -> None:
        check(self, POSITIVE, "latent_dim", "hidden", "encoder_hidden", "decoder_hidden", "temperature", "label_only_batch_size")
        check(self, POSITIVE, "class_prior_values", "labelled_frequencies")
        check(self, NON_NEGATIVE, "labelled", "classification", "unlabelled", "label_only")
        require(
            self.class_prior != "label_only" or bool(self.label_only_data),
            "class_prior",
            "label_only takes the class frequencies of label-only records: set ivae.label_only_data",
        )
        require(
            len(self.class_prior_values) == len(self.labelled_frequencies),
            "class_prior_values",
            f"{len(self.class_prior_values)} values against {len(self.labelled_frequencies)} labelled_frequencies: both or neither",
        )
        prior, labelled = self.class_prior_values, self.labelled_frequencies
        require(not prior or abs(sum(prior) - 1.0) < 1e-3, "class_prior_values", f"must sum to 1, got {sum(prior):.4f}")
        require(not labelled or abs(sum(labelled) - 1.0) < 1e-3, "labelled_frequencies", f"must sum to 1, got {sum(labelled):.4f}")
        require(
            not (self.binarize and self.reverse_sample == "relaxed_bernoulli"),
            "reverse_sample",
            "relaxed_bernoulli needs binarize: false (rounding the relaxed pixels would stop their gradient into the decoder)",
        )


@dataclass(frozen=True)
class FinetuneConfig(JobConfig):
    """Semi-supervised fine-tuning job (`rayssl finetune`): the shared sections, then the labelled set and each method's."""

    # classifier: a backbone + head trained with cross-entropy on the labelled set plus the terms whose
    # sections switch them on (inversion.alpha/beta, fixmatch.weight); inverted_vae: the inverted VAE
    # (ivae.*), whose classifier is the same backbone + head. rayssl.methods.registry.FINETUNING lists them.
    method: Literal["classifier", "inverted_vae"] = "classifier"
    run: RunConfig = field(default_factory=lambda: RunConfig(name="finetune"))
    # train.epochs is a pretraining setting: fine-tuning runs schedule.steps
    train: TrainConfig = field(default_factory=lambda: TrainConfig(num_workers=1))
    init: str | None = None  # pretraining run dir or checkpoint URI (its config.yaml names the method)
    semisup: SemiSupConfig = field(default_factory=SemiSupConfig)
    inversion: InversionConfig = field(default_factory=InversionConfig)
    fixmatch: FixMatchConfig = field(default_factory=FixMatchConfig)
    ivae: InvertedVAEConfig = field(default_factory=InvertedVAEConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def __post_init__(self) -> None:
        inv = self.inversion
        # A pretrained backbone's model is named by its run's config: checked on the worker (rayssl.methods.inversion).
        require(
            not (inv.alpha > 0 and inv.kind == "multiscale" and not self.init and self.model.name not in BLOCK_BACKBONES),
            "inversion.kind",
            f"multiscale needs a backbone made of blocks {BLOCK_BACKBONES}, got model.name {self.model.name!r}",
        )
        require(
            self.method != "inverted_vae" or not (inv.alpha or inv.beta or self.fixmatch.weight),
            "method",
            "inverted_vae trains with its own bounds (ivae.*): set inversion.alpha, inversion.beta and fixmatch.weight to 0",
        )
        prior = self.ivae.class_prior_values
        require(
            not prior or len(prior) == self.semisup.num_classes,
            "ivae.class_prior_values",
            f"{len(prior)} values for semisup.num_classes {self.semisup.num_classes}",
        )
