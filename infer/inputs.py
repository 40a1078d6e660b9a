"""Turn whatever the user gives as images (paths, PIL images, arrays) into the model's float input."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ..data import GREY_MODES
from ..data.images import open_image, to_array
from ..errors import UserInputError, note


def _array_to_pil(arr: np.ndarray, name: str) -> Image.Image:
    """One image as an array: (H, W), (H, W, 3|4), or (1|3, H, W) as a dataset holds it; uint8 0..255, or float
    in [0, 1]."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (3, 4):  # channels first
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)) or a.size == 0:
        raise UserInputError(
            f"{name}: expected an image array (H, W), (H, W, 3|4) or (1|3, H, W), got shape {arr.shape}"
        )
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
            raise UserInputError(f"{name}: image array has unsupported dtype {a.dtype}")
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise UserInputError(f"{name}: image array contains NaN or inf")
        scale = 255.0 if np.issubdtype(arr.dtype, np.floating) else 1.0  # floats are [0, 1], ints 0..255
        a = np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(a)


def _open(source, index: int) -> Image.Image:
    if isinstance(source, np.ndarray):
        return _array_to_pil(source, f"image {index}")
    if isinstance(source, (Image.Image, str, os.PathLike)) or hasattr(source, "read"):
        return open_image(source)
    raise UserInputError(f"image {index}: expected a path, PIL image or array, got {type(source).__name__}")


def note_conversions(modes: list[str], sizes: list[tuple[int, int]], shape: tuple[int, int, int]) -> None:
    """Say what bringing images (their PIL modes and sizes) to the model's input changed: colour, size, aspect."""
    c, h, w = shape
    parts = ["colour made grey"] if c == 1 and any(m not in GREY_MODES for m in modes) else []
    resized = [(a, b) for a, b in sizes if (a, b) != (w, h)]
    if resized:
        stretched = any(a * h != b * w for a, b in resized)
        parts.append("resized" + (" with the aspect ratio changed (stretched, not cropped)" if stretched else ""))
    if parts:  # the same words for every batch of a long run: said once (errors.note)
        note(f"images brought to the model's input ({'grey' if c == 1 else 'RGB'} {w}x{h}): {', '.join(parts)}")


def prepare_images(images, shape: tuple[int, int, int]) -> np.ndarray:
    """Images -> float32 (N, C, H, W) in [0, 1] at the model's channels and size.

    `images` is one image (path, PIL image, file object, (H, W), (H, W, 3|4) or (1|3, H, W) array) or a sequence
    of them, or a batch array: (N, C, H, W) at the model's shape, (N, H, W, 3|4), or (N, H, W) as
    `Decoder.sample` returns them. Arrays are uint8 0..255 or float in [0, 1].
    """
    if isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[-1] not in (3, 4):
        batch = list(images)  # (N, H, W) grayscale stack
    elif isinstance(images, np.ndarray) and images.ndim == 4:
        if tuple(images.shape[1:]) == tuple(shape):
            if images.dtype == np.uint8:
                return images.astype(np.float32) / 255.0
            x = np.asarray(images, dtype=np.float32)
            if not np.isfinite(x).all():
                raise UserInputError("image batch contains NaN or inf")
            return np.clip(x, 0.0, 1.0)
        batch = list(images)
    elif isinstance(images, (list, tuple)):
        batch = list(images)
    else:
        batch = [images]
    if not batch:
        raise UserInputError("no images given")
    c, h, w = shape
    arrays, modes, sizes = [], [], []
    for i, src in enumerate(batch):  # one decoded image in memory at a time
        img = _open(src, i)
        modes.append(img.mode)
        sizes.append(img.size)
        arrays.append(to_array(img, c, h, w))
    note_conversions(modes, sizes, shape)
    return np.stack(arrays).astype(np.float32) / 255.0
