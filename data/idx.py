"""Reader for the MNIST-family IDX format (torch-free), gzipped or raw."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ..errors import UserInputError

_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file: magic (0, 0, dtype, ndim), big-endian dims, then the data."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserInputError(f"{path}: cannot read IDX file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise UserInputError(f"{path}: not an IDX file (wrong magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise UserInputError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise UserInputError(
            f"{path}: truncated or padded IDX file (header promises {expected:,} bytes of data, found {len(raw) - header:,})"
        )
    # a copy: frombuffer's view is read-only, which torch.from_numpy warns about on stderr
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def find_idx_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    # some distributions use a dot before idx: train-images.idx3-ubyte
    alt = stem.replace("-idx", ".idx")
    for name in (alt, alt + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def has_idx_files(directory: Path) -> bool:
    return find_idx_file(directory, SPLIT_FILES["train"][0]) is not None


def load_idx_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(images uint8 (N, 1, H, W), labels int64 (N,) or None), or None if the split's images are absent."""
    img_stem, lbl_stem = SPLIT_FILES[split]
    img_path = find_idx_file(directory, img_stem)
    if img_path is None:
        return None
    images = read_idx(img_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise UserInputError(f"{img_path}: expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}")
    lbl_path = find_idx_file(directory, lbl_stem)
    labels = None
    if lbl_path is not None:
        labels = read_idx(lbl_path)
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise UserInputError(f"{lbl_path}: labels of shape {labels.shape} for {images.shape[0]} images")
        if np.issubdtype(labels.dtype, np.floating) or (len(labels) and labels.min() < 0):
            raise UserInputError(f"{lbl_path}: labels must be non-negative integers")
        labels = labels.astype(np.int64)
    return images[:, None], labels
