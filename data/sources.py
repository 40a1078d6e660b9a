"""The data a training run names: vaectl.data's torch-free loaders, plus torchvision datasets (which download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserInputError
from . import MNIST_SAMPLE, ImageDataset, load_data, resize_dataset
from .store import cache_root

TORCHVISION_DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST", "cifar10": "CIFAR10"}
DATASET_CHOICES = (MNIST_SAMPLE, *TORCHVISION_DATASETS)


def default_cache_dir() -> Path:
    return cache_root() / "datasets"


def _torchvision_split(cls, root: Path, train: bool):
    try:
        ds = cls(str(root), train=train, download=True)
    except (RuntimeError, OSError) as e:  # URLError is an OSError
        raise UserInputError(f"could not download {cls.__name__} into {root} (no internet?): {e}") from None
    x = ds.data.numpy() if hasattr(ds.data, "numpy") else np.asarray(ds.data)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # -> (N, C, H, W)
    y = np.asarray(ds.targets, dtype=np.int64)
    return np.ascontiguousarray(x, dtype=np.uint8), y, tuple(ds.classes)


def load_torchvision(name: str, cache_dir: Path | None = None) -> ImageDataset:
    import torchvision.datasets as tvd

    cls = getattr(tvd, TORCHVISION_DATASETS[name])
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    x, y, classes = _torchvision_split(cls, root, True)
    xt, yt, _ = _torchvision_split(cls, root, False)
    return ImageDataset(name, x, xt, y, yt, classes)


def load_training_data(
    data_dir=None,
    dataset: str | None = MNIST_SAMPLE,
    image_size=None,
    channels=None,
    cache_dir=None,
    seed: int = 0,
    skip_bad_images: bool = False,
) -> ImageDataset:
    if data_dir is not None:
        return load_data(data_dir, image_size, channels, seed, skip_bad_images)
    if dataset in (None, MNIST_SAMPLE):
        return load_data(None, image_size, channels, seed)
    if dataset not in TORCHVISION_DATASETS:
        raise UserInputError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASET_CHOICES)}")
    return resize_dataset(load_torchvision(dataset, cache_dir), image_size, channels)
