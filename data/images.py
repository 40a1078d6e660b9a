"""Safe image decoding (torch-free): an allowlist of formats, decompression bombs refused, truncation refused."""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image

from ..errors import UserInputError

# Pillow picks a decoder by magic bytes; we only let it pick among these.
# No TIFF: libtiff is a large attack surface for files users did not make.
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "GIF")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
# Refuse images that declare more pixels than this before decoding them (Pillow's default is ~89M).
# Memory budget: an accepted image costs at most 4 bytes per pixel (256 MiB) to decode; a larger one
# (such as a 12 KB PNG declaring 100 megapixels) is refused from its header, before any pixel is
# allocated (tests/test_untrusted.py measures < 16 MiB peak growth for the refusal).
MAX_IMAGE_PIXELS = 64 * 1024 * 1024


def open_image(source, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open and fully decode an image from a path, file object or PIL image; raise UserInputError otherwise."""
    if isinstance(source, Image.Image):
        return source
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "<image>")
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = max_pixels
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source, formats=ALLOWED_FORMATS)
            img.load()  # decode now: truncated files fail here, not later
    except FileNotFoundError:
        raise UserInputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise UserInputError(f"{name}: is a directory, not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserInputError(f"{name}: image declares more than {max_pixels:,} pixels (decompression bomb?)") from None
    except Image.UnidentifiedImageError:
        raise UserInputError(f"{name}: not an image in an accepted format ({', '.join(ALLOWED_FORMATS)})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UserInputError(f"{name}: cannot decode image ({e})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    return img


def to_array(img: Image.Image, channels: int, height: int, width: int) -> np.ndarray:
    """PIL image of any mode and size -> uint8 (C, H, W) with the model's channels and size. Transparent pixels
    are composited onto white (icons, emoji, sprites), not left as whatever colour is stored under them."""
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1).copy()
