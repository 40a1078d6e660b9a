"""The library functions behind the CLI's inference commands: each one call, usable from Python.

    from vaectl.infer.commands import generate
    generate("onnx/decoder.onnx", 64, seed=0, out="grid.png")
Arguments that name graphs take a path or an already loaded Decoder/Encoder.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable

import numpy as np

from ..data import load_data, pick_images
from ..errors import UserInputError
from ..files import save_png, to_uint8_images
from .output import (MAX_GRID_IMAGES, check_output_file, originals_above_reconstructions, prepare_output_dir,
                     save_image_batches, save_image_grid)
from .sessions import Decoder, Encoder, VAEPair

Progress = Callable[[int, int], None]  # (images done now, total)


def _decoder(decoder, threads) -> Decoder:
    return decoder if isinstance(decoder, Decoder) else Decoder(decoder, threads)


def _encoder(encoder, threads) -> Encoder:
    return encoder if isinstance(encoder, Encoder) else Encoder(encoder, threads)


def _one_target(out, out_dir) -> None:
    if (out is None) == (out_dir is None):
        raise UserInputError("give one of --out FILE.png (one grid) or --out-dir DIR (one PNG per image)")
    if out is not None:
        check_output_file(out)


def generate(decoder, n: int = 64, *, seed: int | None = None, temperature: float = 1.0, label=None,
             same_z: bool = False, guidance: float | None = None, out=None, out_dir=None, nrow: int = 8,
             threads: int | None = None, progress: Progress | None = None) -> int:
    """Draw n images (n per class with label="all") into one PNG grid `out` or one PNG each in `out_dir`.

    guidance: a guided decoder's weight (Decoder.sample) [the graph's default]."""
    _one_target(out, out_dir)
    if nrow < 1:
        raise UserInputError(f"--nrow must be at least 1, got {nrow}")
    dec = _decoder(decoder, threads)
    total = dec.sample_count(n, label)
    if out is not None and total > MAX_GRID_IMAGES:
        raise UserInputError(f"{total:,} images is too many for one grid (at most {MAX_GRID_IMAGES:,}); use --out-dir")
    batches = dec.iter_sample(n, seed, temperature, label, same_z, guidance=guidance)
    batches = itertools.chain([next(batches)], batches)  # bad --label etc. fail before anything is created

    def tick(k: int) -> None:
        if progress is not None:
            progress(k, total)

    if out is not None:
        images = []
        for batch in batches:
            images.append(batch)
            tick(len(batch))
        save_image_grid(out, np.concatenate(images), nrow=n if label == "all" else nrow)
    else:
        prepare_output_dir(out_dir)
        save_image_batches(out_dir, batches, total, on_batch=tick)
    return total


def reconstruct(encoder, decoder, images, out, *, label=None, nrow: int = 8, threads: int | None = None) -> int:
    """Encode images, decode their posterior means; one PNG with each row of originals above its reconstructions."""
    check_output_file(out)
    pair = VAEPair(_encoder(encoder, threads), _decoder(decoder, threads))
    x = pair.encoder.prepare(list(images))
    tiles, columns = originals_above_reconstructions(to_uint8_images(x), pair.reconstruct(x, label), nrow)
    save_image_grid(out, tiles, nrow=columns)
    return len(x)


def interpolate(decoder, out, *, encoder=None, images=(), seeds=(None, None), steps: int = 10,
                method: str = "slerp", label=None, threads: int | None = None) -> int:
    """A strip of `steps` images from image A to image B (with an encoder) or between the latents of two seeds."""
    if steps < 2:
        raise UserInputError(f"--steps must be at least 2 (the two endpoints), got {steps}")
    seed_a, seed_b = seeds
    if encoder is not None:
        if len(images) != 2 or seed_a is not None or seed_b is not None:
            raise UserInputError("with --encoder, give exactly two images A B (and no --seed-a/--seed-b)")
    elif images:
        raise UserInputError("interpolating between images needs --encoder encoder.onnx")
    elif seed_a is None or seed_b is None:
        raise UserInputError("give --encoder and two images, or --seed-a and --seed-b for two random latent points")
    check_output_file(out)
    dec = _decoder(decoder, threads)
    if encoder is not None:
        strip = VAEPair(_encoder(encoder, threads), dec).interpolate(images[0], images[1], steps, method, label)
    else:
        z_a, z_b = dec.latents(1, seed_a)[0], dec.latents(1, seed_b)[0]
        strip = dec.interpolate(z_a, z_b, steps, method, label)
    save_image_grid(out, strip, nrow=steps)
    return steps


def traverse(decoder, out, *, dims=None, all_dims: bool = False, span: float = 3.0, steps: int = 9,
             seed: int | None = None, label=None, encoder=None, image=None, threads: int | None = None) -> list[int]:
    """One row of `steps` images per latent dimension, that component swept from -span to +span; returns the dims.

    Which dimensions: `dims`; or all of them (`all_dims`); by default those that carry information
    (the export's KL per dimension), or all when the graph does not record it.
    """
    if dims and all_dims:
        raise UserInputError("give --dim or --all, not both")
    if steps < 2:
        raise UserInputError(f"--steps must be at least 2, got {steps}")
    if (encoder is None) != (image is None):
        raise UserInputError("--image and --encoder go together")
    if image is not None and seed is not None:
        raise UserInputError("give --image or --seed, not both")
    check_output_file(out)
    dec = _decoder(decoder, threads)
    if dims:
        chosen = [int(d) for d in dims]
    elif all_dims:
        chosen = list(range(dec.latent_dim))
    else:
        chosen = dec.info.informative_dims() or list(range(dec.latent_dim))
    if image is not None:
        grid = VAEPair(_encoder(encoder, threads), dec).traverse(image, chosen, span, steps, label)
    else:
        grid = dec.traverse(None, chosen, span, steps, label, seed)
    save_image_grid(out, grid, nrow=steps)
    return chosen


def data_images(data_dir=None, *, split: str = "test", label=None, count: int = 8, out=None,
                out_dir=None) -> tuple[int, list[Path]]:
    """Dataset images as PNGs: one grid `out`, or SPLIT_INDEX_CLASS.png files in `out_dir`.

    Returns (images written, the files written).
    """
    if (out is None) == (out_dir is None):
        raise UserInputError("give --out or --out-dir")
    if out is not None:
        check_output_file(out)
    _, picked, names = pick_images(load_data(data_dir), split, label, count)
    if out is not None:
        save_image_grid(out, picked)
        return len(picked), [Path(out)]
    directory = prepare_output_dir(out_dir)
    paths = [directory / name for name in names]
    for path, image in zip(paths, picked):
        save_png(path, image)
    return len(picked), paths
