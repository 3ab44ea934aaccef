"""Self-supervised pretraining and few-label fine-tuning methods: pure torch, no Ray, testable in unit tests.

One module per method; rayssl.methods.registry maps the config's names to them (PRETRAINING,
FINETUNING). The training loop and eval talk only to the interfaces in rayssl.methods.base.
"""

from rayssl.methods.base import PretrainMethod, StepContext
from rayssl.methods.registry import FINETUNING, PRETRAINING, build_method

__all__ = ["FINETUNING", "PRETRAINING", "PretrainMethod", "StepContext", "build_method"]
