"""Writing results: one PNG grid, or one PNG per image into a directory, never half-written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import UserInputError
from ..files import fsync_dir, make_grid, save_png

# A grid is built in memory; past this many images, write a directory instead.
MAX_GRID_IMAGES = 10_000


def check_output_file(path) -> Path:
    """Fail early (before any work) when `path` cannot be written: missing or unwritable directory."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserInputError(f"{path}: is a directory; give a file name such as {path / 'grid.png'}")
    if not directory.is_dir():
        raise UserInputError(f"{path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserInputError(f"{path}: directory {directory} is not writable")
    if path.suffix.lower() != ".png":
        raise UserInputError(f"{path}: output images are PNG; give a file name ending in .png")
    return path


def prepare_output_dir(path) -> Path:
    """Create the output directory (its parent must exist) and check that it is writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{path}: exists and is not a directory")
    if not path.exists():
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise UserInputError(f"{path}: parent directory {parent} does not exist")
        try:
            path.mkdir()
        except OSError as e:
            raise UserInputError(f"{path}: cannot create directory ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserInputError(f"{path}: directory is not writable")
    return path


def save_image_grid(path, images: np.ndarray, nrow: int = 8) -> None:
    """uint8 (N, H, W[, 3]) -> one PNG with `nrow` images per row, written atomically."""
    if nrow < 1:
        raise UserInputError(f"--nrow must be at least 1, got {nrow}")
    save_png(path, make_grid(images, nrow=nrow))


def image_names(total: int) -> Callable[[int], str]:
    width = max(6, len(str(total - 1)))
    return lambda i: f"{i:0{width}d}.png"


def save_image_batches(out_dir, batches: Iterable[np.ndarray], total: int,
                       on_batch: Callable[[int], None] | None = None) -> int:
    """Write each image of each uint8 batch as out_dir/000000.png, 000001.png, ...; returns the count.

    Only one batch is in memory at a time. Each file is written to a temp file and renamed; one
    fsync of the directory at the end instead of two per file (which would dominate large runs).
    """
    out_dir = Path(out_dir)
    name = image_names(total)
    written = 0
    for batch in batches:
        for image in batch:
            save_png(out_dir / name(written), image, fsync=False)
            written += 1
        if on_batch is not None:
            on_batch(len(batch))
    fsync_dir(out_dir)
    return written
