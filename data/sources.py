"""The data a training run names: vaectl.data's torch-free loaders, plus torchvision datasets (which download)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import UserInputError, arg
from . import MNIST_SAMPLE, ImageDataset, load_data, recorded_data_dir, resize_dataset
from .store import cache_root

TORCHVISION_DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST", "cifar10": "CIFAR10"}
DATASET_CHOICES = (MNIST_SAMPLE, *TORCHVISION_DATASETS)


def default_cache_dir() -> Path:
    return cache_root() / "datasets"


# Where a local copy comes from when the download cannot be made; its IDX files read with --data.
LOCAL_COPY = {
    "FashionMNIST": "on Debian, `apt install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist "
    "(`dpkg -L dataset-fashion-mnist` shows where)"
}


def _download_failed(cls, root: Path, e: Exception) -> UserInputError:
    """One line: why (the last line of torchvision's message, which lists every mirror it tried), and --data."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip() and not line.startswith("Tried ")]
    why = lines[-1] if lines else type(e).__name__
    files = "a folder of images (subfolders = labels)" if cls.__name__.startswith("CIFAR") else "its IDX files"
    local = f"; {LOCAL_COPY[cls.__name__]}" if cls.__name__ in LOCAL_COPY else ""
    return UserInputError(
        f"could not download {cls.__name__} into {root} ({why}); with a local copy, give {arg('data')} DIR instead of "
        f"{arg('dataset')}, DIR holding {files}{local}"
    )


def _torchvision_split(cls, root: Path, train: bool):
    try:
        ds = cls(str(root), train=train, download=True)
    except (RuntimeError, OSError) as e:  # URLError is an OSError
        raise _download_failed(cls, root, e) from None
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


def load_run_data(train: Mapping, config, run, data_dir=None, dataset: str | None = None) -> ImageDataset:
    """The images a run trained on, as its settings record them (`train`: a checkpoint's or config.json's), or
    `data_dir` / `dataset` in their place, read with the run's recipe (its image_size and channels), so that
    every command reading a run's data reads the images it trained on. They must then have the model's image
    shape (`config`: its VAEConfig). UserInputError naming data_dir otherwise."""
    own = data_dir is None and dataset is None
    if own:
        if not train:
            raise UserInputError(f"{run} does not record the data it was trained on: give {arg('data_dir')}")
        data_dir = recorded_data_dir(train, run) if train.get("data") else None
        dataset = None if data_dir is not None else train.get("dataset") or MNIST_SAMPLE
    size, channels, seed = train.get("image_size"), train.get("channels"), train.get("seed", 0)
    try:
        skip = bool(train.get("skip_bad_images")) and own  # the run's choice for its own folder, not for others
        ds = load_training_data(data_dir, dataset, size, channels, train.get("cache_dir"), seed, skip)
    except UserInputError as e:
        if dataset in TORCHVISION_DATASETS and data_dir is None:
            raise UserInputError(f"{e.args[0]}; give {arg('data_dir')} with its images") from None
        raise
    if tuple(ds.image_shape) != config.image_shape:
        raise UserInputError(
            f"dataset {ds.name!r} has images of shape {tuple(ds.image_shape)}, but the model takes {config.image_shape}"
        )
    if config.conditional and (ds.train_labels is None or ds.test_labels is None):
        raise UserInputError(f"dataset {ds.name!r} has no labels; the conditional model needs them")
    return ds


def load_model_data(config, data_dir=None, run_dir=None, seed: int | None = None) -> ImageDataset:
    """The images a torch-free command reads for a model (`config`: its VAEConfig): data_dir's, brought to the
    model's channels and (square) size, with the hold-out `seed` chose (the graphs' hold_out_seed; 0 when
    None) where the data has no test split; without data_dir, for a model in its run directory, the data that
    run trained on, read with its recipe (load_run_data: its size, its hold-out); else the embedded sample.
    UserInputError when they do not have the model's shape."""
    if data_dir is None and run_dir is not None:
        from .. import layout

        return load_run_data(layout.run_config(run_dir).get("train", {}), config, run_dir)
    c, h, w = config.image_shape
    ds = load_data(data_dir, image_size=h if h == w else None, channels=c, seed=seed or 0)
    if tuple(ds.image_shape) != config.image_shape:
        raise UserInputError(
            f"dataset {ds.name!r} has images of shape {tuple(ds.image_shape)}, but the model takes {config.image_shape}"
        )
    return ds
