"""Self-supervised methods: pure torch, no Ray, testable in unit tests.

`METHODS` maps the config's `method` to a class with the `PretrainMethod` interface
(rayssl.methods.base); the training loop and eval only talk to that interface.
"""

from rayssl.methods.base import PretrainMethod, StepContext
from rayssl.methods.registry import METHODS, build_method

__all__ = ["METHODS", "PretrainMethod", "StepContext", "build_method"]
