"""Writing results: one PNG grid, or one PNG per image into a directory (checked by files.prepare_out_dir),
never half-written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import UserInputError, WriteFailedError
from ..files import fsync_dir, make_grid, prepare_out_dir, save_png

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
    prepare_out_dir(path)
    return Path(path)


def originals_above_reconstructions(originals: np.ndarray, recons: np.ndarray, nrow: int) -> tuple[np.ndarray, int]:
    """uint8 stacks (N, H, W[, 3]) -> (tiles, columns) for one grid: each row of up to `nrow` originals
    is followed by a row of their reconstructions (short last rows padded with black tiles)."""
    if nrow < 1:
        raise UserInputError(f"--nrow must be at least 1, got {nrow}")
    n = len(originals)
    rows = []
    for start in range(0, n, nrow):
        for block in (originals, recons):
            row = block[start:start + nrow]
            pad = np.zeros((nrow - len(row), *row.shape[1:]), np.uint8) if n > nrow else row[:0]
            rows.append(np.concatenate([row, pad]))
    return np.concatenate(rows), min(nrow, n)


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
    A failed write (full disk, ...) raises WriteFailedError naming the images already complete.
    """
    out_dir = Path(out_dir)
    name = image_names(total)
    written = 0
    try:
        for batch in batches:
            for image in batch:
                save_png(out_dir / name(written), image, fsync=False)
                written += 1
            if on_batch is not None:
                on_batch(len(batch))
    except WriteFailedError as e:
        fsync_dir(out_dir)
        done = f"the {written} images before it ({name(0)} to {name(written - 1)}) are complete" if written else \
            "no image was written"
        raise e.but(f"{done}; free space and run again") from None
    fsync_dir(out_dir)
    return written
