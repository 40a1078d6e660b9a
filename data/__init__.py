"""Datasets as uint8 arrays (torch-free): the embedded MNIST sample, IDX folders (in memory), image folders
and .npy/.npz arrays (memory-mapped from their image store, data/store.py).

Training (torch) and ONNX evaluation (no torch) both load data through here.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserInputError, arg, note
from ..models.config import class_index
from .idx import has_idx_files, load_idx_split
from .images import to_array
from .store import ARRAY_SUFFIXES, GREY_MODES, Stored, StoreFile, array_store, folder_store  # noqa: F401

SAMPLE_DIR = Path(__file__).parent / "mnist-5k"
MNIST_SAMPLE = "mnist-sample"
FASHION_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
VALIDATION_FRACTION = 0.1
HOLDOUT = "hold-out"


@dataclass
class ImageDataset:
    """Train and validation images as uint8 (N, C, H, W), labels int64 (N,) or None."""

    name: str
    train: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    # where `test` comes from: the data's own test split, or HOLDOUT (VALIDATION_FRACTION of the images,
    # held out with a fixed seed because the data has no test split)
    test_split: str = "test"
    # the image store that `train` and `test` map (rows [0, n_test) test, the rest train), or None in memory
    stored: StoreFile | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])

    @property
    def has_labels(self) -> bool:
        return self.train_labels is not None and len(self.class_names) > 0


def _holdout(images, labels, seed: int):
    """Split off VALIDATION_FRACTION of the data with a fixed seed (for data without a test split)."""
    n = len(images)
    if n < 2:
        raise UserInputError(f"need at least 2 images to hold out a validation set, found {n}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * VALIDATION_FRACTION)))
    val, tr = perm[:n_val], perm[n_val:]

    def pick(a, i):
        return None if a is None else a[i]

    return images[tr], pick(labels, tr), images[val], pick(labels, val)


def verify_sample_checksums() -> None:
    """Check the embedded sample against its SHA256SUMS; a damaged install should say so."""
    for line in (SAMPLE_DIR / "SHA256SUMS").read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split()
        got = hashlib.sha256((SAMPLE_DIR / name.lstrip("*")).read_bytes()).hexdigest()
        if got != digest:
            raise UserInputError(f"embedded sample file {name} fails its checksum; reinstall vaectl")


def load_mnist_sample() -> ImageDataset:
    verify_sample_checksums()
    ds = load_idx_dir(SAMPLE_DIR, seed=0)
    ds.name = MNIST_SAMPLE
    return ds


def load_idx_dir(directory: Path, seed: int = 0) -> ImageDataset:
    train = load_idx_split(directory, "train")
    if train is None:
        raise UserInputError(f"{directory}: no train-images-idx3-ubyte[.gz] file")
    test = load_idx_split(directory, "test")
    x, y = train
    if len(x) == 0:
        raise UserInputError(f"{directory}: the training IDX file holds no images")
    notes = []
    if test is not None and (y is None) != (test[1] is None):
        # conditional training needs labels on both splits; unlabelled training ignores them anyway
        notes.append(f"note: {directory}: only one split has a label file; ignoring labels")
        y, test = None, (test[0], None)
    if test is not None and len(test[0]) == 0:
        test = None  # an empty test file: hold out part of the training data instead
    split = HOLDOUT if test is None else "test"
    if test is None:
        x, y, xt, yt = _holdout(x, y, seed)
    else:
        xt, yt = test
        if xt.shape[1:] != x.shape[1:]:
            raise UserInputError(f"{directory}: train images are {x.shape[2:]} but test images are {xt.shape[2:]}")
    names: tuple[str, ...] = ()
    if y is not None:
        k = int(max(y.max(), yt.max() if yt is not None else 0)) + 1
        if "fashion" in str(directory).lower() and k == 10:
            names = FASHION_NAMES
        else:
            names = tuple(str(i) for i in range(k))
    return ImageDataset(directory.name, x, xt, y, yt, names, notes, split)


def load_image_folder(
    directory: Path,
    image_size: int | None,
    channels: int | None,
    seed: int = 0,
    skip_bad_images: bool = False,
    workers: int | None = None,
) -> ImageDataset:
    """Every PNG/JPEG/... below `directory`; first-level subfolder names become labels. The images are decoded
    once into the folder's image store (data/store.py); train and test map it."""
    return stored_dataset(
        directory.name,
        folder_store(directory, image_size, channels, seed, VALIDATION_FRACTION, skip_bad_images, workers),
    )


def load_array_file(path: Path, seed: int = 0) -> ImageDataset:
    """A .npy (uint8 images (N, H, W) or (N, H, W, C)) or .npz (images/x, labels/y, test_images/x_test, ...)."""
    return stored_dataset(path.stem, array_store(path, seed, VALIDATION_FRACTION))


def stored_dataset(name: str, s: Stored) -> ImageDataset:
    """Train and test as views of the store's memory map: no image is copied."""
    images, k = s.store.open(), s.store.n_test  # (N, C, H, W) uint8
    labels = s.labels
    split = HOLDOUT if s.hold_out else "test"
    return ImageDataset(
        name,
        images[k:],
        images[:k],
        None if labels is None else labels[k:],
        None if labels is None else labels[:k],
        s.class_names,
        list(s.notes),
        split,
        s.store,
    )


def load_data(
    data_dir=None,
    image_size: int | None = None,
    channels: int | None = None,
    seed: int = 0,
    skip_bad_images: bool = False,
) -> ImageDataset:
    """The embedded sample (data_dir None), an IDX folder, an image folder, or a .npy / .npz array file."""
    if data_dir is None:
        ds = load_mnist_sample()
    else:
        directory = Path(data_dir)
        if not directory.exists():
            raise UserInputError(f"{directory}: no such data directory")
        if directory.is_file() and directory.suffix.lower() in ARRAY_SUFFIXES:
            return resize_dataset(load_array_file(directory, seed), image_size, channels)
        if not directory.is_dir():
            raise UserInputError(f"{directory}: not a directory, a .npy or a .npz file")
        if not any(directory.iterdir()):
            raise UserInputError(f"{directory}: data directory is empty")
        if has_idx_files(directory):
            ds = load_idx_dir(directory, seed)
        else:
            return load_image_folder(directory, image_size, channels, seed, skip_bad_images)
    return resize_dataset(ds, image_size, channels)


def recorded_data_dir(train: Mapping, run) -> Path | None:
    """The data a training run recorded in its settings (config.json's or the checkpoint's "train"), for the
    commands that use it by default: its --data folder, or None for the embedded sample. UserInputError, saying
    to give --data, when that data cannot be read from here (a torchvision download, a folder that is gone)."""
    data, dataset = train.get("data"), train.get("dataset")
    if isinstance(data, str) and data:
        if not Path(data).exists():
            raise UserInputError(
                f"{run} was trained on {data}, which is not there any more: give {arg('data_dir')} DIR"
            )
        return Path(data)
    if dataset in (None, MNIST_SAMPLE):
        return None
    raise UserInputError(f"{run} was trained on the {dataset!r} download: give {arg('data_dir')} DIR with its images")


def resize_dataset(ds: ImageDataset, image_size: int | None, channels: int | None) -> ImageDataset:
    """Bring an in-memory dataset to the requested size and channel count (no-op when they match)."""
    c, h, w = ds.image_shape
    want_c = channels or c
    want_h = want_w = image_size or None
    if want_c == c and (want_h is None or (want_h, want_w) == (h, w)):
        return ds
    from PIL import Image

    def convert(x):
        out = []
        for im in x:
            pil = Image.fromarray(im[0] if c == 1 else im.transpose(1, 2, 0))
            out.append(to_array(pil, want_c, want_h or h, want_w or w))
        return np.stack(out)

    ds.train, ds.test = convert(ds.train), convert(ds.test)
    ds.stored = None  # converted in memory
    return ds


def print_notes(ds: ImageDataset) -> None:
    for text in ds.notes:
        print(text, file=sys.stderr)


def warn_notes(ds: ImageDataset) -> None:
    """The dataset's notes as Note warnings (errors.note): the CLI prints each as one `note:` line."""
    for text in ds.notes:
        note(text.removeprefix("note: "))


def parse_indices(specs) -> list[int]:
    """'14', '10-19' (both ends included), or several of them: the 0-based image indices they name, in order."""
    picked: list[int] = []
    for spec in specs:
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(spec))
        if m is None or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise UserInputError(f"{arg('index')} takes an image index (14) or a range (10-19), got {spec!r}")
        first = int(m.group(1))
        picked += range(first, int(m.group(2) or first) + 1)
    return picked


def pick_images(
    ds: ImageDataset, split: str, label=None, count: int = 8, indices=None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The first `count` images of a split (of one class, given `label`), or the images at `indices` (0-based,
    as the file names number them), for `vaectl data-images`.

    Returns (indices (n,), uint8 images (n, H, W) or (n, H, W, 3), file names SPLIT_INDEX[_CLASS].png).
    """
    if split not in ("train", "test"):
        raise UserInputError(f"unknown {arg('split')} {split!r}; choose train or test")
    if count < 1:
        raise UserInputError(f"{arg('count')} must be at least 1, got {count}")
    images = ds.train if split == "train" else ds.test  # (N, C, H, W) uint8
    labels = ds.train_labels if split == "train" else ds.test_labels
    index = np.arange(len(images))
    if indices is not None:
        if label is not None:
            raise UserInputError(f"give {arg('index')} or {arg('label')}, not both")
        index = np.asarray(indices, dtype=np.int64)
        if len(index) and index.max() >= len(images):
            raise UserInputError(
                f"{arg('index')} {int(index.max())} is out of range: the {split} split of {ds.name!r} has "
                f"{len(images)} images (0 to {len(images) - 1})"
            )
        count = len(index)
    if label is not None:
        if labels is None or not ds.class_names:
            raise UserInputError(f"dataset {ds.name!r} has no labels")
        index = index[labels == class_index(label, ds.class_names)]
    index = index[:count]
    if len(index) == 0:
        raise UserInputError(f"no images of class {label!r} in the {split} split of {ds.name!r}")
    picked = images[index]
    picked = picked[:, 0] if picked.shape[1] == 1 else picked.transpose(0, 2, 3, 1)  # (n, H, W[, 3])
    names = []
    for i in index:
        tag = "" if labels is None else "_" + ds.class_names[labels[i]].replace("/", "-").replace(" ", "-")
        names.append(f"{split}_{i:05d}{tag}.png")
    return index, picked, names
