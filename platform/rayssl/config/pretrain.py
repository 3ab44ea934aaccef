"""`rayssl pretrain`: the self-supervised methods' sections and the job's config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rayssl.config.common import JobConfig
from rayssl.config.rules import FRACTION, NON_NEGATIVE, OPEN_UNIT, POSITIVE, check, require


@dataclass(frozen=True)
class NATConfig:
    """Noise-As-Targets (Bojanowski & Joulin 2017)."""

    target_dim: int = 64  # dimension of the unit-sphere targets (= projection head output)
    reassign_every: int = 3  # epochs between reassignment epochs (paper: 3)
    seed: int = 0  # targets and the initial assignment are regenerated from this seed

    def __post_init__(self) -> None:
        check(self, POSITIVE, "target_dim", "reassign_every")


@dataclass(frozen=True)
class MAEConfig:
    """Masked autoencoder (He et al. 2021); the encoder is model.vit."""

    mask_ratio: float = 0.75  # fraction of patches hidden from the encoder
    decoder_width: int = 32  # the decoder's token width
    decoder_depth: int = 2  # decoder transformer blocks
    decoder_heads: int = 4  # the decoder's attention heads
    norm_pix_loss: bool = True  # targets are per-patch normalised pixels
    recon_images: int = 8  # held-out images in the reconstruction PNG grid

    def __post_init__(self) -> None:
        check(self, OPEN_UNIT, "mask_ratio")
        check(self, POSITIVE, "decoder_width", "decoder_depth", "decoder_heads")
        check(self, NON_NEGATIVE, "recon_images")
        require(
            self.decoder_width % self.decoder_heads == 0,
            "decoder_width",
            f"{self.decoder_width} is not divisible by decoder_heads ({self.decoder_heads})",
        )


@dataclass(frozen=True)
class ContrastiveConfig:
    """SimCLR (Chen et al. 2020) and the masked contrastive objective. Both views of an image are
    made with data.augment in the Ray Data CPU stage (use SimCLR's crop, colour and blur there)."""

    temperature: float = 0.2  # NT-Xent temperature (lower: harder negatives)
    projection_hidden: int = 512  # hidden width of the projection head's MLP
    projection_dim: int = 128  # output width of the projection head (where NT-Xent compares views)
    # masked_contrastive: loss = weight * NT-Xent + (1 - weight) * MAE loss, both views masked with
    # mae.mask_ratio (CAN masks 50% of both views). NT-Xent starts near log(2 x global batch) ~ 6 and
    # the normalised-pixel MSE near 1, so a small weight keeps the two terms of similar size.
    weight: float = 0.1

    def __post_init__(self) -> None:
        check(self, POSITIVE, "temperature", "projection_hidden", "projection_dim")
        check(self, FRACTION, "weight")


@dataclass(frozen=True)
class EvalConfig:
    """Frozen-feature evaluation (kNN + linear probe) on the labelled splits."""

    after_pretrain: bool = True  # `rayssl pretrain` evaluates the frozen features when it finishes
    knn_k: int = 20  # neighbours of the kNN probe
    max_train_samples: int | None = None  # probes train on the first N train rows (None = all)
    compare_random_init: bool = True  # also probe a randomly initialised backbone (the row to beat)

    def __post_init__(self) -> None:
        check(self, POSITIVE, "knn_k", "max_train_samples")


@dataclass(frozen=True)
class PretrainConfig(JobConfig):
    """Self-supervised pretraining job (`rayssl pretrain`): the shared sections, then each method's."""

    method: Literal["nat", "mae", "simclr", "masked_contrastive"] = "nat"  # rayssl.methods.registry.PRETRAINING
    nat: NATConfig = field(default_factory=NATConfig)
    mae: MAEConfig = field(default_factory=MAEConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        require(
            self.method not in ("mae", "masked_contrastive") or self.model.name == "vit",
            "model.name",
            f"method {self.method!r} needs model.name: vit, got {self.model.name!r}",
        )
