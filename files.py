"""Torch-free file helpers: atomic writes and PNG grids."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import UserInputError


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None], fsync: bool = True) -> None:
    """Write through `write(f)` into a temp file beside `path`, fsync, then os.replace.

    A crash or an exception at any point leaves the old file byte-identical and no temp file behind.
    fsync=False skips both fsyncs (still never a half-written file if the process dies; only a power
    loss can lose it): for writing thousands of small files, where fsync dominates the run time.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UserInputError(f"{path}: directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise UserInputError(f"{path}: cannot write here ({e.strerror})") from None
    try:
        os.fchmod(fd, _new_file_mode(path))  # mkstemp makes 0600; give what open() would have given
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if fsync:
        fsync_dir(directory)


def _new_file_mode(path: Path) -> int:
    """The replaced file's mode, or 0o666 minus the umask for a new file."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def fsync_dir(directory) -> None:
    """Make renames into `directory` durable (best effort: not every filesystem allows it)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_bytes(path, data: bytes, fsync: bool = True) -> None:
    atomic_write(path, lambda f: f.write(data), fsync)


def to_uint8_images(images: np.ndarray) -> np.ndarray:
    """Float (N, C, H, W) in [0, 1] -> uint8 (N, H, W) or (N, H, W, 3). Refuses non-finite values."""
    if not np.isfinite(images).all():
        raise ValueError("decoder output contains NaN or inf; refusing to write it as an image")
    x = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)


def make_grid(images: np.ndarray, nrow: int = 8, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """uint8 (N, H, W[, 3]) -> one uint8 image with `nrow` images per row."""
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(f"expected a non-empty stack of images, got shape {images.shape}")
    n, h, w = images.shape[:3]
    ncol = max(1, min(nrow, n))
    nrows = (n + ncol - 1) // ncol
    shape = (nrows * (h + padding) + padding, ncol * (w + padding) + padding) + images.shape[3:]
    grid = np.full(shape, pad_value, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        grid[y : y + h, x : x + w] = im
    return grid


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def save_png(path, image: np.ndarray, fsync: bool = True) -> None:
    """Save a uint8 (H, W) or (H, W, 3) array as PNG, atomically."""
    atomic_write_bytes(path, png_bytes(image), fsync)


def save_grid(path, images: np.ndarray, nrow: int = 8) -> None:
    save_png(path, make_grid(images, nrow=nrow))
