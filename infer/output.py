"""Writing results: one PNG grid, a GIF animation, or one PNG per image into a directory (claimed under the
one overwrite rule, files.claim_out_dir), never half-written; --scale upscales them (nearest neighbour). The
pictures meant for a person (reconstruct, interpolate, traverse) are scaled to a visible size unless told
(visible_scale) and labelled in a margin (text drawn after upscaling, so labels stay small and crisp)."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..errors import UserInputError, WriteFailedError, arg
from ..files import Output, atomic_write, atomic_write_bytes, claim_out_dir, fsync_dir, make_grid, save_png

# A grid is built in memory; past this many images, write a directory instead.
MAX_GRID_IMAGES = 10_000
# An upscaled (--scale > 1) grid or GIF frame may hold at most this many pixels (the cap on an input image).
MAX_OUTPUT_PIXELS = 64 * 1024 * 1024
MAX_ANIMATION_PIXELS = 4 * MAX_OUTPUT_PIXELS  # all frames of a GIF together, before encoding
MIN_FPS, MAX_FPS = 0.1, 50.0
# The default (scale=None) size of a picture for a person: each image at least VISIBLE_TILE pixels wide (a 28 px
# digit drawn at 56 px) and the whole picture at least VISIBLE_WIDTH; scale=1 writes the decoder's exact pixels.
VISIBLE_TILE, VISIBLE_WIDTH = 56, 256
GIF_TICK_MS = 10


def check_output_file(path, allowed: tuple[str, ...] = (".png",)) -> Path:
    """Fail early (before any work) when `path` cannot be written: missing or unwritable directory, or a
    file type this command does not write (`allowed`: lower-case suffixes)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserInputError(f"{path}: is a directory; give a file name such as {path / ('out' + allowed[0])}")
    if not directory.is_dir():
        raise UserInputError(f"{path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserInputError(f"{path}: directory {directory} is not writable")
    suffix = path.suffix.lower()
    if suffix not in allowed:
        hint = " (GIF animations: interpolate and traverse only)" if suffix == ".gif" else ""
        if allowed == (".png",):
            raise UserInputError(f"{path}: output images are PNG here{hint}; give a file name ending in .png")
        raise UserInputError(f"{path}: give a file name ending in {' or '.join(allowed)}{hint}")
    return path


def check_scale(scale) -> int:
    """--scale: a whole number of screen pixels per image pixel, at least 1."""
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise UserInputError(f"{arg('scale')} must be a whole number >= 1, got {scale}")
    return int(scale)


def check_fps(fps) -> float:
    """--fps of a GIF: its frame delay is stored in 10 ms ticks, and browsers slow delays under 20 ms down."""
    if not isinstance(fps, (int, float, np.number)) or not MIN_FPS <= fps <= MAX_FPS:
        raise UserInputError(f"{arg('fps')} must be between {MIN_FPS:g} and {MAX_FPS:g}, got {fps}")
    return float(fps)


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling: each pixel becomes a scale x scale block (crisp, no smoothing)."""
    if check_scale(scale) == 1:
        return image  # unchanged, whatever its size: the default writes what vaectl always wrote
    h, w = image.shape[:2]
    if h * w * scale * scale > MAX_OUTPUT_PIXELS:
        raise UserInputError(
            f"{arg('scale', scale)} makes a {w * scale}x{h * scale} image, more than "
            f"{MAX_OUTPUT_PIXELS:,} pixels; use a smaller {arg('scale')}"
        )
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def visible_scale(scale, tile_width: int, width: int, height: int | None = None) -> int:
    """`scale` checked, or for None the smallest whole scale that makes each image (tile_width pixels wide) at
    least VISIBLE_TILE and the picture (width pixels) at least VISIBLE_WIDTH wide, within MAX_OUTPUT_PIXELS."""
    if scale is not None:
        return check_scale(scale)
    want = max(1, math.ceil(VISIBLE_TILE / tile_width), math.ceil(VISIBLE_WIDTH / width))
    fits = math.isqrt(MAX_OUTPUT_PIXELS // max(1, width * (height or width)))
    return max(1, min(want, fits))


# what `generate --out-dir` and `data-images --out-dir` write: 000000.png, ...; test_00014_8.png, ...
GENERATED_IMAGES = Output("generated images", (r"\d{6,}\.png",))
DATASET_IMAGES = Output("dataset images", (r"(train|test)_\d{5,}(_[^/]+)?\.png",))


def prepare_output_dir(path, output: Output, overwrite: bool = False) -> Path:
    """Claim the output directory under the one overwrite rule (its parent must exist), proved writable; with
    overwrite, the earlier run's images are deleted first."""
    claim_out_dir(path, output, overwrite=overwrite).clear()
    return Path(path)


def originals_above_reconstructions(originals: np.ndarray, recons: np.ndarray, nrow: int) -> tuple[np.ndarray, int]:
    """uint8 stacks (N, H, W[, 3]) -> (tiles, columns) for one grid: each row of up to `nrow` originals
    is followed by a row of their reconstructions (short last rows padded with black tiles)."""
    if nrow < 1:
        raise UserInputError(f"{arg('nrow')} must be at least 1, got {nrow}")
    n = len(originals)
    rows = []
    for start in range(0, n, nrow):
        for block in (originals, recons):
            row = block[start : start + nrow]
            pad = np.zeros((nrow - len(row), *row.shape[1:]), np.uint8) if n > nrow else row[:0]
            rows.append(np.concatenate([row, pad]))
    return np.concatenate(rows), min(nrow, n)


def save_image_grid(path, images: np.ndarray, nrow: int = 8, scale: int = 1) -> None:
    """uint8 (N, H, W[, 3]) -> one PNG with `nrow` images per row, upscaled `scale` times, written atomically."""
    if nrow < 1:
        raise UserInputError(f"{arg('nrow')} must be at least 1, got {nrow}")
    save_png(path, upscale(make_grid(images, nrow=nrow), scale))


def text_tile(lines: list[str], width: int, height: int, like: np.ndarray) -> np.ndarray:
    """White text, one line per entry, centred in a black uint8 tile with the channels of image `like`, (H, W)
    or (H, W, 3) (Pillow's built-in bitmap font: the same pixels on every machine)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default_imagefont()
    tile = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(tile)
    top = (height - LINE_PX * len(lines)) // 2
    for i, line in enumerate(lines):
        draw.text(((width - int(font.getlength(line))) // 2, top + i * LINE_PX), line, fill=255, font=font)
    text = np.asarray(tile)
    return text if like.ndim == 2 else np.repeat(text[..., None], like.shape[-1], axis=-1)


LINE_PX, CHAR_PX = 11, 6  # the bitmap font's line height and character width


def latent_labels(dims, kl_per_dim=None) -> list[list[str]]:
    """['z3', 'KL 2.41'] for each latent dimension: its name, and its KL to the prior in nats when known."""

    def kl(v: float) -> str:
        return f"KL {v:.2f}" if v < 10 else f"KL {v:.1f}" if v < 100 else f"KL {v:.0f}"

    return [[f"z{d}"] + ([kl(kl_per_dim[d])] if kl_per_dim is not None else []) for d in dims]


def _label_width(labels: list[list[str]]) -> int:
    return CHAR_PX * max(len(line) for lines in labels for line in lines) + 2 * CHAR_PX


def label_rows(grid: np.ndarray, labels: list[list[str]], tile_height: int, padding: int = 2) -> np.ndarray:
    """A make_grid image (upscaled: tile_height and padding in its pixels) with one row per entry of `labels`,
    the label drawn to the left of its row."""
    column = np.zeros((grid.shape[0], _label_width(labels), *grid.shape[2:]), np.uint8)
    for r, lines in enumerate(labels):
        y = padding + r * (tile_height + padding)
        column[y : y + tile_height] = text_tile(lines, column.shape[1], tile_height, grid)
    return np.concatenate([column, grid], axis=1)


def label_columns(
    grid: np.ndarray, labels: list[str], tile_width: int, padding: int = 2, left: int = 0, corner: str = ""
) -> np.ndarray:
    """A make_grid image (upscaled, perhaps with row labels `left` pixels wide) with a line of text above each
    column, and `corner` above the row labels."""
    pitch = tile_width + padding
    header = np.zeros((LINE_PX + 4, grid.shape[1], *grid.shape[2:]), np.uint8)
    for c, text in enumerate(labels):
        x = left + padding // 2 + c * pitch
        header[:, x : x + pitch] = text_tile([text], pitch, header.shape[0], grid)
    if corner and left:
        header[:, :left] = text_tile([corner], left, header.shape[0], grid)
    return np.concatenate([header, grid], axis=0)


def title_above(image: np.ndarray, title: str) -> np.ndarray:
    """One line of text in a black band above an image (a GIF frame's caption)."""
    return np.concatenate([text_tile([title], image.shape[1], LINE_PX + 5, image), image], axis=0)


def step_values(span: float, steps: int) -> list[str]:
    """The column labels of a traversal: its steps in prior standard deviations from the mean, -3 .. 0 .. +3."""
    return ["0" if abs(v) < 1e-12 else f"{v:+.3g}" for v in np.linspace(-span, span, steps)]


def labelled_grid(images: np.ndarray, labels: list[list[str]], ncol: int, padding: int = 2) -> np.ndarray:
    """uint8 (N, H, W[, 3]) -> one image of `ncol` columns, each tile with its label beneath it."""
    n, h, w = images.shape[:3]
    cell_w, text_h = max(w, _label_width(labels) - CHAR_PX), LINE_PX * max(len(lines) for lines in labels)
    cells = np.zeros((n, h + text_h, cell_w, *images.shape[3:]), np.uint8)
    x = (cell_w - w) // 2
    for i, (image, lines) in enumerate(zip(images, labels)):
        cells[i, :h, x : x + w] = image
        cells[i, h:] = text_tile(lines, cell_w, text_h, image)
    return make_grid(cells, nrow=ncol, padding=padding)


def animation_columns(rows: int) -> int:
    """How many images a row of an animation's frame holds: R images about square."""
    return math.ceil(math.sqrt(rows))


def animation_frames(
    rows: np.ndarray,
    forth_and_back: bool = False,
    scale: int | None = 1,
    labels: list[list[str]] | None = None,
    titles: list[str] | None = None,
) -> list[np.ndarray]:
    """uint8 (R, S, H, W[, 3]): R rows of S steps -> S frames, frame k the k-th image of every row (a grid of
    R images, about square, border included; with `labels`, each row's label under its image; with `titles`,
    frame k's title above it); forth_and_back appends steps S-2 .. 1, so a looping GIF sweeps back without
    showing an endpoint twice. scale None: visible_scale."""
    order = list(range(rows.shape[1]))
    if forth_and_back:
        order += order[-2:0:-1]
    ncol = animation_columns(len(rows))
    h, w = rows.shape[2:4]
    scale = visible_scale(scale, w, ncol * (w + 2) + 2, math.ceil(len(rows) / ncol) * (h + 2) + 2)

    def frame(k: int) -> np.ndarray:
        grid = upscale(make_grid(rows[:, k], nrow=ncol), scale)
        if labels is not None:
            grid = labelled_grid(upscale_each(rows[:, k], scale), labels, ncol)
        return grid if titles is None else title_above(grid, titles[k])

    first = frame(0)
    if first.size * len(order) > MAX_ANIMATION_PIXELS:
        raise UserInputError(
            f"{len(order)} frames of {first.shape[1]}x{first.shape[0]} pixels is more than "
            f"{MAX_ANIMATION_PIXELS:,} pixels in all; use fewer {arg('steps')} or a smaller {arg('scale')}"
        )
    return [first] + [frame(k) for k in order[1:]]


def upscale_each(images: np.ndarray, scale: int) -> np.ndarray:
    """uint8 (N, H, W[, 3]), each image upscaled `scale` times."""
    return images if scale == 1 else np.stack([upscale(image, scale) for image in images])


def frame_duration_ms(fps: float) -> int:
    """The delay of one frame at `fps`, rounded to GIF's 10 ms ticks."""
    return GIF_TICK_MS * max(1, round(1000 / check_fps(fps) / GIF_TICK_MS))


def gif_bytes(frames: list[np.ndarray], fps: float = 8.0) -> bytes:
    """uint8 frames (H, W) or (H, W, 3) -> a looping GIF file's bytes. Grey frames are exact;
    colour frames are reduced to GIF's 256-colour palette by Pillow."""
    from PIL import Image

    duration = frame_duration_ms(fps)
    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return buffer.getvalue()


def save_gif(path, frames: list[np.ndarray], fps: float = 8.0) -> None:
    """gif_bytes(frames, fps), written atomically."""
    atomic_write_bytes(path, gif_bytes(frames, fps))


def image_names(total: int) -> Callable[[int], str]:
    width = max(6, len(str(total - 1)))
    return lambda i: f"{i:0{width}d}.png"


def save_image_batches(
    out_dir, batches: Iterable[np.ndarray], total: int, on_batch: Callable[[int], None] | None = None, scale: int = 1
) -> int:
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
                save_png(out_dir / name(written), upscale(image, scale), fsync=False)
                written += 1
            if on_batch is not None:
                on_batch(len(batch))
    except WriteFailedError as e:
        fsync_dir(out_dir)
        done = (
            f"the {written} images before it ({name(0)} to {name(written - 1)}) are complete"
            if written
            else "no image was written"
        )
        raise e.but(f"{done}; free space and run again") from None
    fsync_dir(out_dir)
    return written


def save_image_array(path, batches: Iterable[np.ndarray], total: int, image_shape: tuple[int, int, int]) -> None:
    """Stream uint8 image batches ((B, H, W) grey or (B, H, W, 3) colour, as Decoder.decode gives) into one .npy
    file: uint8 (total, C, H, W), the pixels the PNGs hold. Written atomically; one batch in memory at a time."""

    def write(f) -> None:
        header = {"descr": "|u1", "fortran_order": False, "shape": (total, *image_shape)}
        np.lib.format.write_array_header_1_0(f, header)
        written = 0
        for batch in batches:
            chw = batch[:, None] if batch.ndim == 3 else batch.transpose(0, 3, 1, 2)  # (B, C, H, W)
            f.write(np.ascontiguousarray(chw, dtype=np.uint8).tobytes())
            written += len(batch)
        if written != total:  # the header promised `total` images
            raise ValueError(f"wrote {written} images, expected {total}")

    atomic_write(path, write)


LATENT_FORMATS = (".npy", ".csv")


def latent_dtype(latent_dim: int, logvar: bool, label: bool) -> np.dtype:
    """The .npy layout of `vaectl encode`: one record per image, fields mu [, logvar] [, label]."""
    fields: list[tuple] = [("mu", "<f4", (latent_dim,))]
    if logvar:
        fields.append(("logvar", "<f4", (latent_dim,)))
    if label:
        fields.append(("label", "<i8"))
    return np.dtype(fields)


def write_latents(path, batches: Iterable[np.ndarray], total: int, dtype: np.dtype) -> None:
    """Stream record batches (of `dtype`, `total` rows in all) into a .npy or .csv file, written atomically.

    .npy: a structured array, np.load(path)["mu"] -> float32 (N, D). .csv: a header row (mu_0, ...,
    logvar_0, ..., label), floats with 9 significant digits (float32 round-trips exactly).
    Only one batch is in memory at a time; an error part-way leaves no file (and any old one untouched).
    """
    as_csv = Path(path).suffix.lower() == ".csv"

    def write(f) -> None:
        if as_csv:
            f.write((",".join(_csv_columns(dtype)) + "\n").encode())
        else:
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (total,)}
            np.lib.format.write_array_header_1_0(f, header)
        written = 0
        for batch in batches:
            if as_csv:
                _write_csv_rows(f, batch)
            else:
                f.write(np.ascontiguousarray(batch, dtype=dtype).tobytes())
            written += len(batch)
        if written != total:  # the .npy header promised `total` rows
            raise ValueError(f"wrote {written} latent rows, expected {total}")

    atomic_write(path, write)


def _csv_columns(dtype: np.dtype) -> list[str]:
    columns: list[str] = []
    for name in dtype.names or ():
        shape = dtype[name].shape
        columns += [f"{name}_{i}" for i in range(shape[0])] if shape else [name]
    return columns


def _write_csv_rows(f, batch: np.ndarray) -> None:
    columns: list[np.ndarray] = []
    formats: list[str] = []
    for name in batch.dtype.names or ():
        values = batch[name].reshape(len(batch), -1).astype(np.float64)  # float32 and int64 labels are exact here
        columns.append(values)
        formats += ["%.9g" if batch.dtype[name].base.kind == "f" else "%d"] * values.shape[1]
    np.savetxt(f, np.concatenate(columns, axis=1), fmt=formats, delimiter=",")
