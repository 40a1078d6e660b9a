"""Training (needs the [train] extra: torch). `TrainConfig`, `resolve` and `read_metrics` are torch-free."""

from .config import TrainConfig, resolve
from .metrics import read_metrics

__all__ = ["Interrupted", "TrainConfig", "read_metrics", "resolve", "train"]


def __getattr__(name):  # lazy: the CLI reads TrainConfig's defaults without importing torch
    if name in ("train", "Interrupted"):
        from . import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'vaectl.training' has no attribute {name!r}")
