"""Typed, frozen job configs, one module per job (rules and loading shared).

Every job has a dataclass tree with defaults. A YAML file only overrides those defaults, and
``--set a.b=c`` overrides the YAML. Unknown keys and values of the wrong type fail before anything
starts, with the dotted path of the offending key, so a typo never silently trains the default.
`docs/configuration.md` lists every key (generated from these classes: rayssl.config.reference).
"""

from rayssl.config.common import (
    BLOCK_BACKBONES,
    AugmentConfig,
    DataConfig,
    JobConfig,
    ModelConfig,
    OptimConfig,
    RayInitConfig,
    RunConfig,
    StorageConfig,
    TrainConfig,
    ViTConfig,
)
from rayssl.config.finetune import FinetuneConfig, FixMatchConfig, InversionConfig, InvertedVAEConfig, ScheduleConfig, SemiSupConfig
from rayssl.config.loading import dump_yaml, from_dict, load_config, to_dict
from rayssl.config.pretrain import ContrastiveConfig, EvalConfig, MAEConfig, NATConfig, PretrainConfig
from rayssl.config.quality import CORRUPTION_NAMES, QualityConfig, RobustnessConfig
from rayssl.config.rules import ConfigError
from rayssl.config.sweep import SweepConfig

__all__ = [
    "BLOCK_BACKBONES",
    "CORRUPTION_NAMES",
    "AugmentConfig",
    "ConfigError",
    "ContrastiveConfig",
    "DataConfig",
    "EvalConfig",
    "FinetuneConfig",
    "JobConfig",
    "FixMatchConfig",
    "InversionConfig",
    "InvertedVAEConfig",
    "MAEConfig",
    "ModelConfig",
    "NATConfig",
    "OptimConfig",
    "PretrainConfig",
    "QualityConfig",
    "RayInitConfig",
    "RobustnessConfig",
    "RunConfig",
    "ScheduleConfig",
    "SemiSupConfig",
    "StorageConfig",
    "SweepConfig",
    "TrainConfig",
    "ViTConfig",
    "dump_yaml",
    "from_dict",
    "load_config",
    "to_dict",
]
