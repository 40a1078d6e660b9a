"""Images that show themselves in Jupyter: a grid (PNG) or an animation (GIF), pixels scaled up crisply.

    from vaectl.infer import Decoder, show
    show(Decoder("decoder.onnx").sample(64, seed=0))   # as a cell's last line: an 8 x 8 grid, each pixel 3 x 3
No matplotlib: Jupyter asks the object itself for a PNG (`_repr_png_`) or a GIF (`_repr_mimebundle_`).
The pictures are the ones the CLI writes (files.make_grid, output.animation_frames), scaled by nearest neighbour.
"""

from __future__ import annotations

import base64

import numpy as np

from ..errors import UserInputError
from ..files import make_grid, png_bytes, save_png, to_uint8_images
from . import defaults
from .output import animation_frames, check_output_file, check_scale, gif_bytes, save_gif, upscale

DEFAULT_SCALE = 3  # 28 px digits at 84 px: every pixel visible, an 8-wide grid under 700 px


def image_stack(images) -> np.ndarray:
    """Images as vaectl's API hands them around -> uint8 (N, H, W) or (N, H, W, 3).

    Accepts what Decoder.sample/decode return (uint8 (N, H, W[, 3])), Decoder.decode_float's float
    (N, C, H, W) in [0, 1], a dataset's uint8 (N, C, H, W), one image (H, W), or a list of such stacks
    (concatenated in order: e.g. [originals, reconstructions] with nrow=len(originals) puts one row above the other).
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise UserInputError("no images given")
        parts = [image_stack(part) for part in images]
        if len({p.shape[1:] for p in parts}) > 1:
            raise UserInputError(f"the stacks hold images of different shapes: {sorted({p.shape[1:] for p in parts})}")
        return np.concatenate(parts)
    a = np.asarray(images)
    if a.dtype != np.uint8 and not np.issubdtype(a.dtype, np.floating):
        raise UserInputError(f"images are uint8 0..255 or floats in [0, 1], got dtype {a.dtype}")
    if a.ndim == 2:  # one image
        a = a[None]
    if a.ndim == 4 and a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3):  # channels first, as graphs and datasets
        a = a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[-1] == 3)) or len(a) == 0:
        raise UserInputError(f"expected a stack of images (N, H, W) or (N, H, W, 3), got shape {np.shape(images)}")
    if a.dtype != np.uint8:
        if not np.isfinite(a).all():
            raise UserInputError("images contain NaN or inf")
        a = to_uint8_images(a[:, None] if a.ndim == 3 else a.transpose(0, 3, 1, 2))
    return a


class ImageGrid:
    """A grid of images, `nrow` per row (the CLI's layout), each pixel `scale` x `scale` screen pixels.

    Shown inline by Jupyter; `array()` is the picture as uint8, `save("x.png")` writes it."""

    def __init__(self, images, nrow: int = 8, scale: int = DEFAULT_SCALE):
        if isinstance(nrow, bool) or not isinstance(nrow, (int, np.integer)) or nrow < 1:
            raise UserInputError(f"nrow must be a whole number >= 1, got {nrow!r}")
        self.images = image_stack(images)
        self.nrow, self.scale = int(nrow), check_scale(scale)

    def array(self) -> np.ndarray:
        """The grid as one uint8 image (H, W) or (H, W, 3), upscaled."""
        return upscale(make_grid(self.images, nrow=self.nrow), self.scale)

    def _repr_png_(self) -> bytes:
        return png_bytes(self.array())

    def save(self, path) -> None:
        """Write the grid as a PNG (atomically)."""
        save_png(check_output_file(path), self.array())

    def __repr__(self) -> str:
        n, h, w = self.images.shape[:3]
        return f"<ImageGrid: {n} images of {w}x{h}, {min(self.nrow, n)} per row, scale {self.scale}>"


class Animation:
    """A looping GIF of uint8 images as the decoder returns them: one strip of S images (S, H, W[, 3]) or R strips
    (R, S, H, W[, 3]); frame k shows image k of every strip side by side (the CLI's GIFs). forth_and_back runs
    back to the start without showing an end twice."""

    def __init__(
        self, rows, fps: float = defaults.FPS, scale: int = DEFAULT_SCALE, forth_and_back: bool = False
    ) -> None:
        a = np.asarray(rows)
        one_strip = a.ndim == 3 or (a.ndim == 4 and a.shape[-1] == 3)
        strips = a[None] if one_strip else a
        if a.dtype != np.uint8 or strips.ndim not in (4, 5) or strips.shape[1] < 2 or strips.size == 0:
            raise UserInputError(
                f"an animation takes uint8 strips of at least 2 images, (S, H, W[, 3]) or (R, S, H, W[, 3]); "
                f"got {a.dtype} {a.shape}"
            )
        self.rows = strips
        self.fps, self.scale = fps, check_scale(scale)
        self.frames = animation_frames(strips, forth_and_back, self.scale)
        self.gif = gif_bytes(self.frames, fps)  # checks fps

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"image/gif": base64.b64encode(self.gif).decode("ascii"), "text/plain": repr(self)}

    def save(self, path) -> None:
        """Write the animation as a GIF (atomically)."""
        save_gif(check_output_file(path, (".gif",)), self.frames, self.fps)

    def __repr__(self) -> str:
        h, w = self.frames[0].shape[:2]
        return f"<Animation: {len(self.frames)} frames of {w}x{h} at {self.fps:g} fps>"


def show(images, nrow: int = 8, scale: int = DEFAULT_SCALE) -> ImageGrid:
    """An ImageGrid of `images` (anything image_stack takes): the last line of a Jupyter cell shows it."""
    return ImageGrid(images, nrow, scale)
