"""Training (needs the [train] extra: torch)."""

from .train import Interrupted, TrainConfig, train

__all__ = ["Interrupted", "TrainConfig", "train"]
