"""Sections every training job shares: storage, data, model, optimiser, Ray Train, run, Ray."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rayssl.config.rules import FRACTION, HALF_OPEN_UNIT, NON_NEGATIVE, NONEMPTY, POSITIVE, check, require

# Backbones made of `blocks`: the layers the multiscale inversion loss reconstructs one by one.
BLOCK_BACKBONES = ("cnn", "small_cnn", "large_cnn")


@dataclass(frozen=True)
class StorageConfig:
    """How to reach object storage. Credentials never live here: they come from the environment
    or the standard AWS/GCP credential chain (instance profile, IRSA, ...)."""

    s3_endpoint: str | None = None  # e.g. "http://127.0.0.1:9000" for MinIO/moto; None = AWS
    s3_region: str = "us-east-1"  # region of the S3 bucket
    # An unreachable or silent store fails an operation after at most about
    # s3_max_attempts x (s3_connect_timeout_s + s3_request_timeout_s) + backoff (~1 min by default),
    # never hangs. s3_request_timeout_s is a stall limit (no byte for that long), not a cap on a
    # large transfer. Ray Data reads and Ray Train checkpoints use the same filesystem object.
    s3_connect_timeout_s: float = 5.0
    s3_request_timeout_s: float = 10.0
    s3_max_attempts: int = 4  # AWS "standard" retry mode: 5xx, throttling and network errors, with backoff

    def __post_init__(self) -> None:
        check(self, POSITIVE, "s3_connect_timeout_s", "s3_request_timeout_s", "s3_max_attempts")


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
    # FixMatch's strong view (Sohn et al. 2020, table 12; rayssl.data.randaugment): this many RandAugment
    # operations per image (FixMatch: 2), each drawn from 14 photometric and geometric ones (13 on grey
    # images) at a random magnitude, after the steps above; 0: off. Then a grey square Cutout of side
    # `cutout` times the image's side in every image (FixMatch: 0.5); 0: off.
    randaugment_ops: int = 0
    cutout: float = 0.0
    # The probability that each drawn RandAugment operation is applied (independently per image and
    # operation). FixMatch's reference code (google-research/fixmatch, libml/augment.py): 0.5, so a
    # quarter of the strong views get none; the paper's text names none. The benchmarks' rows ran 1.
    randaugment_p: float = 1.0

    def __post_init__(self) -> None:
        check(self, (lambda v: 0 < v <= 1, "> 0 and <= 1"), "crop_scale_min")
        check(self, NON_NEGATIVE, "translate_px", "color_jitter")
        check(self, (lambda v: 0 <= v <= 180, "between 0 and 180"), "rotate_deg")
        check(self, (lambda v: 0 <= v < 90, ">= 0 and < 90"), "shear_deg")
        check(self, NON_NEGATIVE, "elastic_alpha")
        check(self, FRACTION, "erase_p", "grayscale_p", "blur_p", "cutout", "randaugment_p")
        check(self, NON_NEGATIVE, "randaugment_ops")


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
        check(self, POSITIVE, "image_size", "batch_size")
        check(self, NON_NEGATIVE, "in_memory_max_mb")
        check(self, (lambda v: v in (1, 3), "1 (grey) or 3 (RGB)"), "channels")
        check(self, HALF_OPEN_UNIT, "quarantine_threshold")


@dataclass(frozen=True)
class ViTConfig:
    """Vision Transformer sizes (ViT-B/16: patch 16, width 768, depth 12, heads 12)."""

    patch_size: int = 4  # pixels per side of a patch (a token)
    width: int = 64  # token width
    depth: int = 4  # transformer blocks
    heads: int = 4  # attention heads per block (width must divide by it)
    mlp_ratio: float = 4.0  # each block's MLP hidden width / width
    class_token: bool = False  # prepend a learned class token
    pool: Literal["mean", "cls"] = "mean"  # how frozen features are read out (cls needs class_token)

    def __post_init__(self) -> None:
        check(self, POSITIVE, "patch_size", "width", "depth", "heads", "mlp_ratio")
        require(self.width % self.heads == 0, "width", f"{self.width} is not divisible by heads ({self.heads})")
        require(self.pool != "cls" or self.class_token, "pool", "cls needs class_token: true")


@dataclass(frozen=True)
class ModelConfig:
    """Backbone choice; see rayssl.models.build_backbone."""

    # cnn: VGG-style with batch norm (pretraining default); small_cnn / large_cnn: the ReLU/max-pool
    # nets of the network-inversion papers (rayssl.models.inversion_nets); resnet18 (CIFAR stem,
    # small images); resnet50 (ImageNet stem, 224 px); vit; mlp: fully connected layers on the
    # flattened image (mlp_hidden, mlp_activation).
    name: Literal["cnn", "small_cnn", "large_cnn", "resnet18", "resnet50", "vit", "mlp"] = "cnn"
    width: int = 32  # channels of the first CNN stage
    embed_dim: int = 128  # size of the feature vector the CNN/ResNet backbone returns
    batch_norm: bool = False  # small_cnn / large_cnn only (cnn always has it); see inversion_nets
    vit: ViTConfig = field(default_factory=ViTConfig)
    # mlp only: the widths of its hidden layers, each a linear layer + mlp_activation; the features
    # are the last one's output. Gemp et al.'s MNIST classifier is 784-50-50-10 with tanh: [50, 50].
    mlp_hidden: list[int] = field(default_factory=lambda: [256, 256])
    mlp_activation: Literal["relu", "tanh"] = "relu"  # mlp only: the hidden layers' nonlinearity

    def __post_init__(self) -> None:
        check(self, POSITIVE, "width", "embed_dim", "mlp_hidden")
        check(self, NONEMPTY, "mlp_hidden")


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adamw", "sgd"] = "adamw"  # optimiser
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 1e-4  # decoupled (AdamW) or L2 (SGD) weight decay
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only: Nesterov momentum (FixMatch's optimiser)
    eps: float = 1e-8  # AdamW's epsilon (the denominator's floor; Gemp et al.'s Adam: 1e-4)
    # Gradient clipping before each optimiser step (after the workers' gradients are averaged), in
    # this order: scale all gradients together to a total L2 norm of at most clip_grad_norm, then
    # clip every element to +-clip_grad_value (Gemp et al.: 5 and 1). 0: off.
    clip_grad_norm: float = 0.0
    clip_grad_value: float = 0.0

    def __post_init__(self) -> None:
        check(self, POSITIVE, "lr", "eps")
        check(self, NON_NEGATIVE, "weight_decay", "clip_grad_norm", "clip_grad_value")
        check(self, HALF_OPEN_UNIT, "momentum")
        require(
            not self.nesterov or (self.name == "sgd" and self.momentum > 0),
            "nesterov",
            f"Nesterov momentum needs name: sgd and momentum > 0, got name {self.name!r}, momentum {self.momentum}",
        )


@dataclass(frozen=True)
class TrainConfig:
    """Ray Train scaling, checkpointing and fault tolerance."""

    epochs: int = 10  # pretraining epochs (fine-tuning runs schedule.steps)
    num_workers: int = 2  # Ray Train workers (one process each)
    use_gpu: bool = False  # one GPU per worker
    cpus_per_worker: float = 1.0  # CPUs Ray reserves per worker
    # Ray placement group strategy for the workers: PACK fills a node first; SPREAD puts them on
    # different nodes (one GPU per node, or surviving the loss of one node with the others).
    placement_strategy: str = "PACK"
    checkpoint_every: int = 1  # epochs
    num_to_keep: int = 2  # checkpoints kept (the newest)
    max_failures: int = 2  # worker-group restarts before the run fails
    log_every: int = 20  # steps between progress lines on rank 0
    seed: int = 0  # initial weights, augmentation and masks are seeded from this
    # GPU workers only (a CPU worker always trains in fp32, contiguous, eager):
    precision: Literal["fp32", "bf16"] = "bf16"  # autocast dtype of the forward pass and loss
    channels_last: bool = True  # NHWC memory format for convnets (tensor cores read it directly)
    fused_optimizer: bool = True  # AdamW/SGD's fused CUDA kernels
    compile: bool = False  # torch.compile the model on every worker (any device)
    prefetch_batches: int = 2  # batches Ray Data prepares ahead of the loop on each worker

    def __post_init__(self) -> None:
        strategies = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
        require(self.placement_strategy in strategies, "placement_strategy", f"{self.placement_strategy!r} is not one of {strategies}")
        check(self, POSITIVE, "epochs", "num_workers", "cpus_per_worker", "checkpoint_every", "num_to_keep", "log_every")
        check(self, NON_NEGATIVE, "prefetch_batches")
        check(self, (lambda v: v >= -1, ">= 0, or -1 for unlimited"), "max_failures")


@dataclass(frozen=True)
class RunConfig:
    """Where a run lives: `<storage_path>/<name>`, local or s3://. Re-using a name resumes."""

    name: str = "nat_digits"  # the run directory: <storage_path>/<name>
    storage_path: str = "runs"  # where runs live, local or s3://


@dataclass(frozen=True)
class RayInitConfig:
    address: str | None = None  # None: RAY_ADDRESS if set, else start a local Ray
    # Logical CPUs of a local Ray: more than cores (Ray schedules by logical CPUs, not load), so train workers, concurrent
    # sweep trials and the Ray Data tasks feeding them can all be scheduled on a laptop.
    num_cpus: int | None = 8

    def __post_init__(self) -> None:
        check(self, POSITIVE, "num_cpus")


@dataclass(frozen=True)
class JobConfig:
    """The sections every training job has; a job's config adds its own after these."""

    method: str = ""  # the job's method (each job narrows it to its own names)
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayInitConfig = field(default_factory=RayInitConfig)
