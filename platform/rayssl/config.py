"""Typed, frozen job configs.

Every job has a dataclass tree with defaults. A YAML file only overrides those defaults, and
``--set a.b=c`` overrides the YAML. Unknown keys and values of the wrong type fail before anything
starts, with the dotted path of the offending key, so a typo never silently trains the default.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the dotted key path."""


# Range rules for __post_init__: (test, what the value must be). A section names its own keys;
# from_dict prefixes the section's dotted path, so the message names e.g. "finetune.optim.lr".
POSITIVE = (lambda v: v > 0, "> 0")
NON_NEGATIVE = (lambda v: v >= 0, ">= 0")
OPEN_UNIT = (lambda v: 0 < v < 1, "strictly between 0 and 1")
FRACTION = (lambda v: 0 <= v <= 1, "between 0 and 1")
HALF_OPEN_UNIT = (lambda v: 0 <= v < 1, ">= 0 and < 1")
NONEMPTY = (lambda v: len(v) > 0, "a non-empty list")


def _check(section: Any, rule: tuple[Any, str], *names: str) -> None:
    """Raise ConfigError naming the first of `names` whose value (if set) breaks `rule`; lists are checked item by item."""
    test, wanted = rule
    for name in names:
        value = getattr(section, name)
        items = value if isinstance(value, list) and rule is not NONEMPTY else [value]
        for i, item in enumerate(items):
            if item is not None and not test(item):
                where = f"{name}[{i}]" if items is value else name
                raise ConfigError(f"{where}: must be {wanted}, got {item!r}")


_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

# Backbones made of `blocks`: the layers the multiscale inversion loss reconstructs one by one.
BLOCK_BACKBONES = ("cnn", "small_cnn", "large_cnn")


def _require(ok: bool, key: str, message: str) -> None:
    """A cross-field rule: raise ConfigError naming `key` unless ok."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


@dataclass(frozen=True)
class StorageConfig:
    """How to reach object storage. Credentials never live here: they come from the environment
    or the standard AWS/GCP credential chain (instance profile, IRSA, ...)."""

    s3_endpoint: str | None = None  # e.g. "http://127.0.0.1:9000" for MinIO/moto; None = AWS
    s3_region: str = "us-east-1"
    # An unreachable or silent store fails an operation after at most about
    # s3_max_attempts x (s3_connect_timeout_s + s3_request_timeout_s) + backoff (~1 min by default),
    # never hangs. s3_request_timeout_s is a stall limit (no byte for that long), not a cap on a
    # large transfer. Ray Data reads and Ray Train checkpoints use the same filesystem object.
    s3_connect_timeout_s: float = 5.0
    s3_request_timeout_s: float = 10.0
    s3_max_attempts: int = 4  # AWS "standard" retry mode: 5xx, throttling and network errors, with backoff

    def __post_init__(self) -> None:
        _check(self, POSITIVE, "s3_connect_timeout_s", "s3_request_timeout_s", "s3_max_attempts")


@dataclass(frozen=True)
class AugmentConfig:
    """Per-sample augmentations applied in the Ray Data CPU stage."""

    crop_scale_min: float = 1.0  # RandomResizedCrop lower scale bound; 1.0 disables cropping
    translate_px: int = 0  # random translation by up to this many pixels (pad + random crop)
    rotate_deg: float = 0.0  # random rotation within +-rotate_deg (strong views for consistency)
    erase_p: float = 0.0  # probability of erasing a random rectangle (Cutout-like, strong views)
    shear_deg: float = 0.0  # random shear within +-shear_deg along both axes (strong views for digits)
    # Elastic distortion (Simard et al. 2003) with this strength: a smooth random displacement field
    # (Gaussian sigma ~15% of the side), kornia's alpha; 2 moves a 28-px digit's pixels by ~1 px on
    # average and up to ~4 px. New styles of the same digit, where rotations and shifts give none.
    elastic_alpha: float = 0.0
    horizontal_flip: bool = False  # off for digits, on for natural images
    # SimCLR's photometric views (Chen et al. 2020, appendix A): colour jitter of strength s with
    # p = 0.8 (brightness/contrast/saturation 0.8 s, hue 0.2 s; grey images: brightness and contrast
    # only), grayscale with p (RGB only), Gaussian blur (kernel ~10% of the image) with p.
    color_jitter: float = 0.0
    grayscale_p: float = 0.0
    blur_p: float = 0.0

    def __post_init__(self) -> None:
        _check(self, (lambda v: 0 < v <= 1, "> 0 and <= 1"), "crop_scale_min")
        _check(self, NON_NEGATIVE, "translate_px", "color_jitter")
        _check(self, (lambda v: 0 <= v <= 180, "between 0 and 180"), "rotate_deg")
        _check(self, (lambda v: 0 <= v < 90, ">= 0 and < 90"), "shear_deg")
        _check(self, NON_NEGATIVE, "elastic_alpha")
        _check(self, FRACTION, "erase_p", "grayscale_p", "blur_p")


@dataclass(frozen=True)
class DataConfig:
    """Where the shards live and what shape the model receives."""

    shards: str = "data/shards/digits"  # URI of a `rayssl shards build` output
    image_size: int = 32  # images are converted to image_size x image_size
    channels: int = 1  # 1 = grey, 3 = RGB; images with other channel layouts are converted to it
    batch_size: int = 128  # per worker
    quarantine_threshold: float = 0.01  # fail the run if more than this fraction is undecodable
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # How an image becomes image_size x image_size (rayssl.data.decode.ImageSpec). resize: the whole
    # image (small datasets). random_crop: photos; training streams decode a RandomResizedCrop box
    # (area augment.crop_scale_min..1) of the original, evaluation a centre crop of 0.875 of the
    # shorter side, aspect kept, JPEGs at a reduced DCT scale where the box allows.
    crop: Literal["resize", "random_crop"] = "resize"
    # Where training streams decode. cpu: in the Ray Data CPU stage. device: the stage reads headers
    # and draws crop boxes only; each worker decodes its batches on its device (nvJPEG on a GPU,
    # torchvision.io.decode_jpeg) and augments there (rayssl.data.device_decode). For GPU workers
    # whose node has too few CPUs to decode full-size JPEGs; evaluation always decodes on the CPU.
    decode: Literal["cpu", "device"] = "cpu"
    # Fine-tuning: a train split whose decoded pixels take at most this many MB (with crop: resize)
    # is decoded once on the driver and augmented on the workers from memory instead of streamed
    # through Ray Data (rayssl.data.in_memory): MNIST is 45 MB, CIFAR-10 154 MB. 0: always stream.
    in_memory_max_mb: float = 256.0

    def __post_init__(self) -> None:
        _check(self, POSITIVE, "image_size", "batch_size")
        _check(self, NON_NEGATIVE, "in_memory_max_mb")
        _check(self, (lambda v: v in (1, 3), "1 (grey) or 3 (RGB)"), "channels")
        _check(self, HALF_OPEN_UNIT, "quarantine_threshold")


@dataclass(frozen=True)
class ViTConfig:
    """Vision Transformer sizes (ViT-B/16: patch 16, width 768, depth 12, heads 12)."""

    patch_size: int = 4
    width: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    class_token: bool = False
    pool: Literal["mean", "cls"] = "mean"  # how frozen features are read out (cls needs class_token)

    def __post_init__(self) -> None:
        _check(self, POSITIVE, "patch_size", "width", "depth", "heads", "mlp_ratio")
        _require(self.width % self.heads == 0, "width", f"{self.width} is not divisible by heads ({self.heads})")
        _require(self.pool != "cls" or self.class_token, "pool", "cls needs class_token: true")


@dataclass(frozen=True)
class ModelConfig:
    """Backbone choice; see rayssl.models.build_backbone."""

    # cnn: VGG-style with batch norm (pretraining default); small_cnn / large_cnn: the ReLU/max-pool
    # nets of the network-inversion papers (rayssl.models.inversion_nets); resnet18 (CIFAR stem,
    # small images); resnet50 (ImageNet stem, 224 px); vit.
    name: Literal["cnn", "small_cnn", "large_cnn", "resnet18", "resnet50", "vit"] = "cnn"
    width: int = 32  # channels of the first CNN stage
    embed_dim: int = 128  # size of the feature vector the CNN/ResNet backbone returns
    batch_norm: bool = False  # small_cnn / large_cnn only (cnn always has it); see inversion_nets
    vit: ViTConfig = field(default_factory=ViTConfig)

    def __post_init__(self) -> None:
        _check(self, POSITIVE, "width", "embed_dim")


@dataclass(frozen=True)
class NATConfig:
    """Noise-As-Targets (Bojanowski & Joulin 2017)."""

    target_dim: int = 64  # dimension of the unit-sphere targets (= projection head output)
    reassign_every: int = 3  # epochs between reassignment epochs (paper: 3)
    seed: int = 0  # targets and the initial assignment are regenerated from this seed

    def __post_init__(self) -> None:
        _check(self, POSITIVE, "target_dim", "reassign_every")


@dataclass(frozen=True)
class MAEConfig:
    """Masked autoencoder (He et al. 2021); the encoder is model.vit."""

    mask_ratio: float = 0.75
    decoder_width: int = 32
    decoder_depth: int = 2
    decoder_heads: int = 4
    norm_pix_loss: bool = True  # targets are per-patch normalised pixels
    recon_images: int = 8  # held-out images in the reconstruction PNG grid

    def __post_init__(self) -> None:
        _check(self, OPEN_UNIT, "mask_ratio")
        _check(self, POSITIVE, "decoder_width", "decoder_depth", "decoder_heads")
        _check(self, NON_NEGATIVE, "recon_images")
        _require(self.decoder_width % self.decoder_heads == 0, "decoder_width",
                 f"{self.decoder_width} is not divisible by decoder_heads ({self.decoder_heads})")


@dataclass(frozen=True)
class ContrastiveConfig:
    """SimCLR (Chen et al. 2020) and the masked contrastive objective. Both views of an image are
    made with data.augment in the Ray Data CPU stage (use SimCLR's crop, colour and blur there)."""

    temperature: float = 0.2
    projection_hidden: int = 512
    projection_dim: int = 128
    # masked_contrastive: loss = weight * NT-Xent + (1 - weight) * MAE loss, both views masked with
    # mae.mask_ratio (CAN masks 50% of both views). NT-Xent starts near log(2 x global batch) ~ 6 and
    # the normalised-pixel MSE near 1, so a small weight keeps the two terms of similar size.
    weight: float = 0.1

    def __post_init__(self) -> None:
        _check(self, POSITIVE, "temperature", "projection_hidden", "projection_dim")
        _check(self, FRACTION, "weight")


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD only

    def __post_init__(self) -> None:
        _check(self, POSITIVE, "lr")
        _check(self, NON_NEGATIVE, "weight_decay")
        _check(self, HALF_OPEN_UNIT, "momentum")


@dataclass(frozen=True)
class TrainConfig:
    """Ray Train scaling, checkpointing and fault tolerance."""

    epochs: int = 10
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    # Ray placement group strategy for the workers: PACK fills a node first; SPREAD puts them on
    # different nodes (one GPU per node, or surviving the loss of one node with the others).
    placement_strategy: str = "PACK"
    checkpoint_every: int = 1  # epochs
    num_to_keep: int = 2
    max_failures: int = 2  # worker-group restarts before the run fails
    log_every: int = 20  # steps between progress lines on rank 0
    seed: int = 0
    # GPU workers only (a CPU worker always trains in fp32, contiguous, eager):
    precision: Literal["fp32", "bf16"] = "bf16"  # autocast dtype of the forward pass and loss
    channels_last: bool = True  # NHWC memory format for convnets (tensor cores read it directly)
    fused_optimizer: bool = True  # AdamW/SGD's fused CUDA kernels
    compile: bool = False  # torch.compile the model on every worker (any device)
    prefetch_batches: int = 2  # batches Ray Data prepares ahead of the loop on each worker

    def __post_init__(self) -> None:
        strategies = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
        _require(self.placement_strategy in strategies, "placement_strategy", f"{self.placement_strategy!r} is not one of {strategies}")
        _check(self, POSITIVE, "epochs", "num_workers", "cpus_per_worker", "checkpoint_every", "num_to_keep", "log_every")
        _check(self, NON_NEGATIVE, "prefetch_batches")
        _check(self, (lambda v: v >= -1, ">= 0, or -1 for unlimited"), "max_failures")


@dataclass(frozen=True)
class RunConfig:
    """Where a run lives: `<storage_path>/<name>`, local or s3://. Re-using a name resumes."""

    name: str = "nat_digits"
    storage_path: str = "runs"


@dataclass(frozen=True)
class EvalConfig:
    """Frozen-feature evaluation (kNN + linear probe) on the labelled splits."""

    after_pretrain: bool = True
    knn_k: int = 20
    max_train_samples: int | None = None  # probes train on the first N train rows (None = all)
    compare_random_init: bool = True

    def __post_init__(self) -> None:
        _check(self, POSITIVE, "knn_k", "max_train_samples")


@dataclass(frozen=True)
class RayInitConfig:
    address: str | None = None  # None: RAY_ADDRESS if set, else start a local Ray
    # Logical CPUs of a local Ray: more than cores (Ray schedules by logical CPUs, not load), so train workers, concurrent
    # sweep trials and the Ray Data tasks feeding them can all be scheduled on a laptop.
    num_cpus: int | None = 8

    def __post_init__(self) -> None:
        _check(self, POSITIVE, "num_cpus")


@dataclass(frozen=True)
class FaultConfig:
    """Fault injection for tests and drills. Every field is off by default."""

    crash_rank: int = -1  # this rank calls os._exit(1) once at crash_at_step ...
    crash_at_step: int = -1
    crash_marker: str = ""  # ... unless this local file exists (it is created before the crash)
    nan_at_step: int = -1  # the loss becomes NaN at this global step
    # Fine-tuning with optim.lr below this reports val_acc -1 (the true accuracy stays in the logs): a drill
    # that hands an early-stopping scheduler a certain loser, since real accuracies on a tiny validation set tie.
    sink_val_acc_below_lr: float = 0.0


@dataclass(frozen=True)
class PretrainConfig:
    """Self-supervised pretraining job (`rayssl pretrain`)."""

    method: Literal["nat", "mae", "simclr", "masked_contrastive"] = "nat"
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    nat: NATConfig = field(default_factory=NATConfig)
    mae: MAEConfig = field(default_factory=MAEConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayInitConfig = field(default_factory=RayInitConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        _require(self.method not in ("mae", "masked_contrastive") or self.model.name == "vit", "model.name",
                 f"method {self.method!r} needs model.name: vit, got {self.model.name!r}")


@dataclass(frozen=True)
class SemiSupConfig:
    """Few-label fine-tuning losses: CE on labelled + alpha * inversion reconstruction on all images
    (+ beta * entropy, + consistency * FixMatch pseudo-label CE on unlabelled images)."""

    # Labelled train images per class, drawn (seeded, nested) from the labels that exist; "all": every
    # labelled train image outside validation. A class with fewer labels gives what it has (labels.json says so).
    labels_per_class: int | Literal["all"] = 5
    # Validation, for model selection only: a stratified val_fraction of each class's labels, at least
    # one and at most val_per_class (so a fully labelled benchmark keeps exactly val_per_class per class).
    val_per_class: int = 10
    val_fraction: float = 0.2
    label_seed: int = 0
    # A label table (CSV or parquet at any URI the shards accept; rayssl.data.label_table) adding labels
    # to the train split's images without rewriting them: a key column `sample_id` or `path`, and `label`.
    labels: str = ""
    # Shards without a labelled test split: this stratified fraction of each class's labels (at least one)
    # is held out as the test set, drawn once (not per label_seed) so every draw is scored on the same images.
    test_fraction: float = 0.2
    # Labelled batches draw each class equally often (weights 1 / class count): imbalanced labels are
    # the normal case. With equal counts per class this is plain uniform sampling, as before.
    balanced_batches: bool = True
    # Reconstruction through the network's transposed local linear maps (Balestriero et al.):
    # global = ||x - A[x]^T f(x)||^2 (arXiv 1711.04313); multiscale = one size-normalised term per
    # layer, each layer's input from its output (arXiv 1802.10172).
    inversion: Literal["global", "multiscale"] = "global"
    alpha: float = 0.0  # weight of the reconstruction loss; 0 = supervised only
    beta: float = 0.0  # weight of the prediction entropy on unlabelled images
    # The entropy weight rises from 0 to beta over the first beta_rampup_steps optimiser steps
    # (rayssl.methods.semisup.sigmoid_rampup): entropy minimisation from step 0 makes the first,
    # mostly wrong predictions confident before the labelled loss has shaped them. 0: beta throughout.
    beta_rampup_steps: int = 0
    consistency: float = 0.0  # FixMatch weight: CE of strong views against confident weak-view predictions
    confidence: float = 0.95  # FixMatch pseudo-label threshold
    # The strong view of each unlabelled image, made in the Ray Data CPU stage (consistency > 0 only).
    strong_augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(translate_px=4, rotate_deg=20.0, erase_p=0.5))
    # The labelled images' view, made per sample on the worker at every step. None: data.augment, the
    # unlabelled stream's view. Few labelled images miss styles the unlabelled ones show (a 7 with or
    # without its bar), which shear and elastic distortion of the labelled few can supply.
    labelled_augment: AugmentConfig | None = None
    labelled_batch_size: int = 32  # labelled images drawn (with replacement) per step per worker
    num_classes: int = 10
    # Draw labelled and validation images from these classes only (empty: all). The other classes
    # stay in the unlabelled stream and the test split: e.g. the inverted VAE's protocol, labels for 0-4 only.
    labelled_classes: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check(self, POSITIVE, "val_per_class", "labelled_batch_size")
        _check(self, (lambda v: v == "all" or v > 0, '> 0 or "all"'), "labels_per_class")
        _check(self, OPEN_UNIT, "val_fraction", "test_fraction")
        _check(self, (lambda v: 0 <= v < self.num_classes, f"a class id in [0, {self.num_classes})"), "labelled_classes")
        _check(self, NON_NEGATIVE, "alpha", "beta", "consistency", "beta_rampup_steps")
        _check(self, FRACTION, "confidence")
        _check(self, (lambda v: v >= 2, ">= 2"), "num_classes")

    @property
    def uses_unlabelled(self) -> bool:
        """Whether any loss term reads unlabelled images (else fine-tuning never opens the stream)."""
        return self.alpha > 0 or self.beta > 0 or self.consistency > 0


@dataclass(frozen=True)
class ScheduleConfig:
    """Fine-tuning length and learning-rate schedule, in optimiser steps (independent of corpus size)."""

    steps: int = 2000  # optimiser steps; the unlabelled stream repeats as often as needed
    warmup_steps: int = 100  # linear warmup, then cosine decay to zero
    eval_every: int = 250  # steps between validation, checkpoint and report (one Tune iteration)
    ema_decay: float = 0.0  # > 0: validation, checkpoints' eval weights and test use an EMA of the weights
    # From a pretrained backbone: the head trains alone for head_warmup_steps, then the backbone joins
    # at lr * backbone_lr_scale (self-supervised features are destroyed by a large fresh-head gradient).
    head_warmup_steps: int = 0
    backbone_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        _check(self, POSITIVE, "steps", "eval_every")
        _check(self, NON_NEGATIVE, "warmup_steps", "head_warmup_steps", "backbone_lr_scale")
        _check(self, HALF_OPEN_UNIT, "ema_decay")


@dataclass(frozen=True)
class InvertedVAEConfig:
    """The inverted semi-supervised VAE (Gemp et al., arXiv 1608.05983): loss weights of its bounds
    (rayssl.methods.inverted_vae) and where its label-only records come from."""

    latent_dim: int = 16
    hidden: int = 500  # width of the encoder's and decoder's two hidden layers
    temperature: float = 0.5  # Gumbel-Softmax (y) and relaxed-Bernoulli (generated pixels) temperature
    labelled: float = 1.0  # weight of the labelled bound
    classification: float = 50.0  # weight of -log q(y|x) on labelled images (M2's alpha; the bounds are in nats over all pixels)
    unlabelled: float = 1.0  # weight of the unlabelled (forward) bound
    # Weight of the reverse bound on label-only records (0 = plain M2). Its gradient is a few nats of
    # class likelihood against ~100-200 nats of pixel likelihood in the forward bounds: at 300 MNIST
    # steps the classifier agreed with y on 15% of the decoder's images at weight 10, 42% at 50.
    label_only: float = 50.0
    # Label-only records: a parquet or CSV file (or folder of them) at any URI the shards accept, with
    # an integer column `label`, or soft labels as a list column `probs` or columns p0 .. p{K-1}.
    label_only_data: str = ""
    label_only_batch_size: int = 64  # label-only records drawn per step per worker

    def __post_init__(self) -> None:
        _check(self, POSITIVE, "latent_dim", "hidden", "temperature", "label_only_batch_size")
        _check(self, NON_NEGATIVE, "labelled", "classification", "unlabelled", "label_only")


@dataclass(frozen=True)
class FinetuneConfig:
    """Semi-supervised fine-tuning job (`rayssl finetune`)."""

    # classifier: a backbone + head under semisup's losses; inverted_vae: the inverted VAE, whose
    # classifier is the same backbone + head (semisup's alpha/beta/consistency do not apply).
    method: Literal["classifier", "inverted_vae"] = "classifier"
    run: RunConfig = field(default_factory=lambda: RunConfig(name="finetune"))
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    init: str | None = None  # pretraining run dir or checkpoint URI (its config.yaml names the method)
    semisup: SemiSupConfig = field(default_factory=SemiSupConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    ivae: InvertedVAEConfig = field(default_factory=InvertedVAEConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # train.epochs is a pretraining setting: fine-tuning runs schedule.steps
    train: TrainConfig = field(default_factory=lambda: TrainConfig(num_workers=1))
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayInitConfig = field(default_factory=RayInitConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        s = self.semisup
        # A pretrained backbone's model is named by its run's config: checked on the worker (rayssl.train.steps).
        _require(not (s.alpha > 0 and s.inversion == "multiscale" and not self.init and self.model.name not in BLOCK_BACKBONES),
                 "semisup.inversion", f"multiscale needs a backbone made of blocks {BLOCK_BACKBONES}, got model.name {self.model.name!r}")
        _require(self.method != "inverted_vae" or not (s.alpha or s.beta or s.consistency), "method",
                 "inverted_vae trains with its own bounds (ivae.*): set semisup.alpha, beta and consistency to 0")

    @property
    def uses_unlabelled(self) -> bool:
        """Whether fine-tuning reads the unlabelled image stream at all."""
        return self.ivae.unlabelled > 0 if self.method == "inverted_vae" else self.semisup.uses_unlabelled


@dataclass(frozen=True)
class SweepConfig:
    """Ray Tune search over label budgets x variants x label draws, alpha, beta and lr (`rayssl sweep`)."""

    name: str = "sweep"
    storage_path: str = "runs"
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # the base every trial overrides
    # Labels per class (grid), each drawn from the labels that exist; "all": every label (finetune.semisup.labels_per_class).
    budgets: list[int | Literal["all"]] = field(default_factory=lambda: [1, 5, 10, 50, 100])
    label_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # label draws per cell: mean +- std
    pretrained: dict[str, str] = field(default_factory=dict)  # variant name -> pretraining run dir
    # The row "+ inversion loss" (from scratch); the pretrained rows always use the inversion loss.
    inversion: bool = True
    # Adds the row "+ FixMatch" (weight: finetune.semisup.consistency, or 1).
    fixmatch: bool = False
    # Adds the row "inverted VAE" (finetune.ivae; its label-only records: finetune.ivae.label_only_data).
    # Tune draws its unlabelled and label-only bound weights log-uniformly from these ranges.
    inverted_vae: bool = False
    ivae_unlabelled_min: float = 0.3
    ivae_unlabelled_max: float = 3.0
    ivae_label_only_min: float = 10.0
    ivae_label_only_max: float = 100.0
    # Run only these rows (names as in the table, e.g. "+ FixMatch"); empty: every row the flags above
    # enable. For re-measuring one row after a change that only touches it (bench/label_efficiency.py).
    variants: list[str] = field(default_factory=list)
    samples: int = 2  # random draws of (alpha, beta, lr) per budget x variant x label draw
    seed: int = 0  # of those random draws: the same config samples the same settings
    alpha_min: float = 1e-3
    alpha_max: float = 1.0
    betas: list[float] = field(default_factory=lambda: [0.0])
    lr_min: float = 3e-4
    lr_max: float = 3e-3
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
    # Also score every selected trial on the corruption suite (rayssl robustness: 11 corruptions x 5
    # severities, seeded by `seed`): the table shows mean corruption accuracy next to test accuracy.
    robustness: bool = False

    def __post_init__(self) -> None:
        _check(self, NONEMPTY, "budgets", "label_seeds", "betas")
        _check(self, (lambda v: v == "all" or v > 0, '> 0 or "all"'), "budgets")
        _check(self, POSITIVE, "samples", "alpha_min", "lr_min", "max_concurrent_trials", "grace_period", "ivae_unlabelled_min", "ivae_label_only_min")
        _check(self, NON_NEGATIVE, "betas", "trial_max_failures")
        _require(self.alpha_min <= self.alpha_max, "alpha_max", f"must be >= alpha_min ({self.alpha_min}), got {self.alpha_max}")
        _require(self.lr_min <= self.lr_max, "lr_max", f"must be >= lr_min ({self.lr_min}), got {self.lr_max}")
        for bound in ("unlabelled", "label_only"):
            low, high = getattr(self, f"ivae_{bound}_min"), getattr(self, f"ivae_{bound}_max")
            _require(low <= high, f"ivae_{bound}_max", f"must be >= ivae_{bound}_min ({low}), got {high}")


@dataclass(frozen=True)
class QualityConfig:
    """Corpus quality report (`rayssl quality`): one streaming pass over every split of a shard set."""

    shards: str = "data/shards/digits"
    out: str = "runs/quality"  # quality.json, quality.md, quality.png and the decode quarantine go here
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayInitConfig = field(default_factory=RayInitConfig)
    neighbours: int = 10  # near-duplicate candidates per image from the thumbnail index
    max_changed_fraction: float = 0.05  # near duplicates: structure pixels changed after alignment (see quality.signatures)
    align_radius: int = 2  # px searched in each direction when aligning a candidate pair
    min_per_class: int = 10  # classes with fewer labelled images are listed
    label_issues: bool = True  # likely mislabelled images (cleanlab), from a fine-tuned run or a kNN on thumbnails
    finetune_run: str = ""  # a fine-tuned run directory whose classifier gives the predicted probabilities
    examples_per_finding: int = 8  # images per row of the contact sheet

    def __post_init__(self) -> None:
        _check(self, POSITIVE, "neighbours", "min_per_class", "examples_per_finding")
        _check(self, OPEN_UNIT, "max_changed_fraction")
        _check(self, NON_NEGATIVE, "align_radius")
        _require(bool(self.shards), "shards", "must name a shard set URI")


CORRUPTION_NAMES = ("gaussian_noise", "shot_noise", "impulse_noise", "gaussian_blur", "motion_blur", "contrast",
                    "brightness", "jpeg", "pixelate", "rotate", "translate")  # rayssl.data.corruptions.CORRUPTIONS


@dataclass(frozen=True)
class RobustnessConfig:
    """Accuracy under common corruptions and domain shift (`rayssl robustness`)."""

    # A fine-tuned run (its classifier is scored) or a pretraining run (a linear probe on its frozen backbone).
    run: str = ""
    shards: str = ""  # corrupt the test split of these shards (default: the run's own data.shards)
    target_shards: str = ""  # a shard set standing for a new domain: its clean test accuracy is reported too
    out: str = ""  # robustness.{json,md,png} (default: <run>/robustness)
    corruptions: list[str] = field(default_factory=lambda: list(CORRUPTION_NAMES))
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    seed: int = 0  # of every corrupted sample's randomness: the same suite in every run
    probe_train_samples: int = 10_000  # pretraining runs: clean train images the linear probe is fit on
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayInitConfig = field(default_factory=RayInitConfig)

    def __post_init__(self) -> None:
        _require(bool(self.run), "run", "must name a fine-tuned or pretraining run directory")
        _check(self, NONEMPTY, "corruptions", "severities")
        _check(self, (lambda v: v in CORRUPTION_NAMES, f"one of {', '.join(CORRUPTION_NAMES)}"), "corruptions")
        _check(self, (lambda v: 1 <= v <= 5, "between 1 and 5"), "severities")
        _check(self, POSITIVE, "probe_train_samples")


C = TypeVar("C")


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] = ()) -> C:
    """Build `cls` from its defaults, then the YAML at `path`, then `key.path=value` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
        raw = loaded or {}
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(cls, raw)


def _apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `a.b.c=value` override; the value is parsed as YAML (so 3 is an int)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like key.path=value")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(value) if value else ""


def from_dict(cls: type[C], raw: dict[str, Any], prefix: str = "") -> C:
    """Recursively build dataclass `cls` from a plain mapping, checking keys and types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or '<root>'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key {where}{unknown[0]!r}"
            f" (valid keys{' under ' + prefix if prefix else ''}: {', '.join(sorted(fields))})"
        )
    kwargs = {name: _coerce(hints[name], value, _join(prefix, name)) for name, value in raw.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a range rule of this section: name the key by its full dotted path
        raise ConfigError(_join(prefix, str(exc))) from None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _coerce(hint: Any, value: Any, path: str) -> Any:
    """Check `value` against the annotation `hint`; int -> float is the only widening."""
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise ConfigError(f"{path}: {value!r} matches none of: " + "; ".join(e.removeprefix(f"{path}: ") for e in errors))
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__} {value!r}")
        key_type, item = typing.get_args(hint)
        return {_coerce(key_type, k, path): _coerce(item, v, f"{path}.{k}") for k, v in value.items()}
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{path}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
        # PyYAML follows YAML 1.1, where 1e-4 (no dot) is a string; it is meant as a number.
        return float(value)
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(
                f"{path}: expected {hint.__name__}, got {type(value).__name__} {value!r}"
            )
        return value
    raise ConfigError(f"{path}: unsupported annotation {hint!r}")  # a bug in the dataclass


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config (for YAML dumps and for shipping to Ray workers)."""
    return dataclasses.asdict(config)


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
