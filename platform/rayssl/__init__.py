"""RaySSL: self-supervised pretraining and label-efficient fine-tuning on Ray."""

__version__ = "0.1.0"
