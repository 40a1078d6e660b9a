"""The library functions behind the CLI's inference commands: each one call, usable from Python.

    from vaectl.infer.commands import generate
    generate("onnx/decoder.onnx", 64, seed=0, out="grid.png")
Arguments that name graphs take a path or an already loaded Decoder/Encoder. `scale` upscales the
written images (nearest neighbour); `reconstruct`, `interpolate` and `traverse` write pictures for a person:
unless told (scale=None) upscaled to a visible size (output.visible_scale) and labelled (labels=False: the bare
grid; scale=1: the decoder's exact pixels). `interpolate` and `traverse` write an animated GIF when `out` ends
in .gif.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import layout
from ..contract import INFORMATIVE_RULE, informative_dims
from ..errors import UserInputError, WriteFailedError, arg, note, plural
from ..files import make_grid, save_png, to_uint8_images
from . import defaults
from .output import (
    DATASET_IMAGES,
    GENERATED_IMAGES,
    LATENT_FORMATS,
    MAX_GRID_IMAGES,
    animation_columns,
    animation_frames,
    check_fps,
    check_output_file,
    check_scale,
    label_columns,
    label_rows,
    latent_dtype,
    latent_labels,
    originals_above_reconstructions,
    prepare_output_dir,
    save_gif,
    save_image_array,
    save_image_batches,
    save_image_grid,
    step_values,
    upscale,
    visible_scale,
    write_latents,
)
from .sessions import DEFAULT_BATCH_SIZE, Decoder, Encoder, VAEPair, graph_path

Progress = Callable[[int, int], None]  # (images done now, total)
GRID_OR_GIF = (".png", ".gif")


def _decoder(decoder, threads) -> Decoder:
    return decoder if isinstance(decoder, Decoder) else Decoder(decoder, threads)


def _encoder(encoder, threads) -> Encoder:
    return encoder if isinstance(encoder, Encoder) else Encoder(encoder, threads)


def _encoder_of_run(encoder) -> tuple[object, Path | None]:
    """(the encoder graph, the training run it was exported from or None). `encoder` may be an export
    directory or a run directory holding one; the run is the directory above an export it holds."""
    if isinstance(encoder, Encoder):
        return encoder, None
    graph = graph_path(encoder, "encoder")
    return graph, layout.run_dir_of_graph(graph)


def generate(
    decoder,
    n: int = 64,
    *,
    seed: int | None = None,
    temperature: float = 1.0,
    label=None,
    same_z: bool = False,
    guidance: float | None = None,
    prior=None,
    out=None,
    out_dir=None,
    nrow: int = 8,
    threads: int | None = None,
    progress: Progress | None = None,
    scale: int = 1,
    overwrite: bool = False,
) -> int:
    """Draw n images (n per class with label="all") into one PNG grid `out`, one PNG each in `out_dir`, or
    (`out` ending in .npy) one uint8 array (N, C, H, W) of the same pixels, for other tools.

    guidance: a guided decoder's weight (Decoder.sample) [the graph's default]. prior: "normal", "gmm" or a
    Prior [the graph's default: its fitted prior when it carries one]. An out_dir that holds images of an
    earlier generate is refused unless overwrite=True, which deletes them first."""
    check_scale(scale)
    if (out is None) == (out_dir is None):
        raise UserInputError(
            f"give one of {arg('out')} FILE.png (one grid), {arg('out')} FILE.npy (one uint8 array) or "
            f"{arg('out_dir')} DIR (one PNG per image)"
        )
    as_array = out is not None and Path(out).suffix.lower() == ".npy"
    if out is not None:
        check_output_file(out, (".png", ".npy"))
    if as_array and scale != 1:
        raise UserInputError(f"{arg('scale')} is for images; a .npy {arg('out')} holds the decoder's pixels")
    if nrow < 1:
        raise UserInputError(f"{arg('nrow')} must be at least 1, got {nrow}")
    dec = _decoder(decoder, threads)
    total = dec.sample_count(n, label)
    if out is not None and not as_array and total > MAX_GRID_IMAGES:
        raise UserInputError(
            f"{total:,} images is too many for one grid (at most {MAX_GRID_IMAGES:,}); use {arg('out_dir')} "
            f"or a .npy {arg('out')}"
        )
    batches = dec.iter_sample(n, seed, temperature, label, same_z, guidance=guidance, prior=prior)
    batches = itertools.chain([next(batches)], batches)  # bad --label etc. fail before anything is created

    def tick(k: int) -> None:
        if progress is not None:
            progress(k, total)

    if as_array:

        def counted():
            for batch in batches:
                yield batch
                tick(len(batch))

        save_image_array(out, counted(), total, dec.image_shape)
    elif out is not None:
        images = []
        for batch in batches:
            images.append(batch)
            tick(len(batch))
        save_image_grid(out, np.concatenate(images), nrow=n if label == "all" else nrow, scale=scale)
    else:
        prepare_output_dir(out_dir, GENERATED_IMAGES, overwrite)
        save_image_batches(out_dir, batches, total, on_batch=tick, scale=scale)
    return total


RECONSTRUCT_ROWS = (["original"], ["reconstruction"])


def reconstruct(
    encoder,
    decoder,
    images,
    out,
    *,
    label=None,
    nrow: int = 8,
    threads: int | None = None,
    scale: int | None = None,
    labels: bool = True,
) -> int:
    """Encode images, decode their posterior means; one PNG with each row of originals above its
    reconstructions, the rows labelled "original" and "reconstruction" (`labels`)."""
    if scale is not None:
        check_scale(scale)
    check_output_file(out)
    pair = VAEPair(_encoder(encoder, threads), _decoder(decoder, threads))
    x = pair.encoder.prepare(list(images))
    tiles, columns = originals_above_reconstructions(to_uint8_images(x), pair.reconstruct(x, label), nrow)
    grid = make_grid(tiles, nrow=columns)
    w = tiles.shape[2]
    scale = visible_scale(scale, w, grid.shape[1], grid.shape[0])
    picture = upscale(grid, scale)
    if labels:
        row_names = [RECONSTRUCT_ROWS[r % 2] for r in range(len(tiles) // columns)]
        picture = label_rows(picture, row_names, tiles.shape[1] * scale, 2 * scale)
    save_png(out, picture)
    return len(x)


def interpolate(
    decoder,
    out,
    *,
    encoder=None,
    images=(),
    seeds=(None, None),
    steps: int = 10,
    method: str = "slerp",
    label=None,
    prior=None,
    threads: int | None = None,
    scale: int | None = None,
    fps: float = defaults.FPS,
    labels: bool = True,
) -> int:
    """A strip of `steps` images from image A to image B (with an encoder) or between the latents of two seeds
    (each drawn from the prior: the graph's default, or `prior`), A on the left.

    `out` ending in .gif: an animation, one frame per step in order, looping; each frame titled with its step
    ("A", "3/10", "B"; `labels`).
    """
    if scale is not None:
        check_scale(scale)
    check_fps(fps)
    if steps < 2:
        raise UserInputError(f"{arg('steps')} must be at least 2 (the two endpoints), got {steps}")
    seed_a, seed_b = seeds
    if encoder is not None:
        if len(images) != 2 or seed_a is not None or seed_b is not None:
            raise UserInputError(f"with {arg('encoder')}, give exactly two images A B (and no {arg('seeds')})")
    elif images:
        raise UserInputError(f"interpolating between images needs {arg('encoder')} {layout.ENCODER}")
    elif seed_a is None or seed_b is None:
        raise UserInputError(f"give {arg('encoder')} and two images, or {arg('seeds')} for two random latent points")
    check_output_file(out, GRID_OR_GIF)
    dec = _decoder(decoder, threads)
    if encoder is not None:
        if prior is not None:
            raise UserInputError(f"{arg('prior')} is for paths between {arg('seeds')}; images have their own latents")
        strip = VAEPair(_encoder(encoder, threads), dec).interpolate(images[0], images[1], steps, method, label)
    else:
        z_a = dec.latents(1, seed_a, prior=prior, label=label)[0]
        z_b = dec.latents(1, seed_b, prior=prior, label=label)[0]
        strip = dec.interpolate(z_a, z_b, steps, method, label)
    if _is_gif(out):
        titles = ["A" if k == 0 else "B" if k == steps - 1 else f"{k + 1}/{steps}" for k in range(steps)]
        save_gif(out, animation_frames(strip[None], scale=scale, titles=titles if labels else None), fps)
    else:
        grid = make_grid(strip, nrow=steps)
        picture = upscale(grid, visible_scale(scale, strip.shape[2], grid.shape[1], grid.shape[0]))
        save_png(out, picture)
    return steps


def traverse(
    decoder,
    out,
    *,
    dims=None,
    all_dims: bool = False,
    span: float = defaults.TRAVERSE_SPAN,
    steps: int = defaults.TRAVERSE_STEPS,
    seed: int | None = None,
    label=None,
    encoder=None,
    image=None,
    prior=None,
    threads: int | None = None,
    scale: int | None = None,
    fps: float = defaults.FPS,
    labels: bool = True,
) -> list[int]:
    """One row of `steps` images per latent dimension, that component swept over the prior's mean -span..+span
    standard deviations (N(0, I): -span..span); returns the dims. The other components: the prior's mean, a
    --seed draw from the prior, or an image's encoding. prior: the graph's default, or "normal", "gmm", a Prior.

    Which dimensions, in row order: traverse_rows. Each row is labelled with its component and KL, each column
    with its step in prior standard deviations from the mean (`labels`; False: the bare grid). `out` ending in
    .gif: an animation whose frame k shows step k of every dimension (a grid, each image labelled, the frame
    titled with the step), running forth and back.
    """
    if scale is not None:
        check_scale(scale)
    check_fps(fps)
    if dims and all_dims:
        raise UserInputError(f"give {arg('dims')} or {arg('all_dims', True)}, not both")
    if steps < 2:
        raise UserInputError(f"{arg('steps')} must be at least 2, got {steps}")
    if (encoder is None) != (image is None):
        raise UserInputError(f"{arg('image')} and {arg('encoder')} go together")
    if image is not None and seed is not None:
        raise UserInputError(f"give {arg('image')} or {arg('seed')}, not both")
    check_output_file(out, GRID_OR_GIF)
    dec = _decoder(decoder, threads)
    chosen, why = traverse_rows(dec, dims, all_dims)
    if image is not None:
        grid = VAEPair(_encoder(encoder, threads), dec).traverse(image, chosen, span, steps, label, prior)
    else:
        grid = dec.traverse(None, chosen, span, steps, label, seed, prior)
    names = latent_labels(chosen, dec.info.kl_per_dim) if labels else None
    values = step_values(span, steps)
    if _is_gif(out):
        rows = grid.reshape(len(chosen), steps, *grid.shape[1:])  # (R, S, H, W[, 3])
        titles = [f"{v} prior sd" if v != "0" else "the prior's mean" for v in values] if labels else None
        save_gif(out, animation_frames(rows, True, scale, names, titles), fps)
    else:
        tiles = make_grid(grid, nrow=steps)
        h, w = grid.shape[1:3]
        scale = visible_scale(scale, w, tiles.shape[1], tiles.shape[0])
        picture = upscale(tiles, scale)
        if names is not None:
            with_rows = label_rows(picture, names, h * scale, 2 * scale)
            left = with_rows.shape[1] - picture.shape[1]
            picture = label_columns(with_rows, values, w * scale, 2 * scale, left, corner="prior sd")
        save_png(out, picture)
    if why:
        note(why)
    return chosen


def describe_traverse(chosen: list[int], steps: int, out) -> str:
    """What traverse wrote, as the picture shows it: '3 rows of 9 steps (z0, z2, z1)' for a PNG grid; for a
    GIF, its frames and the grid each frame holds ('16 frames, 9 steps forth and back, each 32 components in
    6 columns (...)')."""
    shown = ", ".join(f"z{d}" for d in chosen[:12]) + (f", ... ({len(chosen) - 12} more)" if len(chosen) > 12 else "")
    if not _is_gif(out):
        return f"{plural(len(chosen), 'row')} of {steps} steps ({shown})"
    frames = 2 * steps - 2
    if len(chosen) == 1:
        return f"{frames} frames, {steps} steps forth and back ({shown})"
    return (
        f"{frames} frames, {steps} steps forth and back, each {len(chosen)} components in "
        f"{plural(animation_columns(len(chosen)), 'column')} ({shown})"
    )


def traverse_rows(decoder: Decoder, dims=None, all_dims: bool = False) -> tuple[list[int], str | None]:
    """The latent dimensions `traverse` draws, in row order, and how they were chosen when the caller did not
    say (a note): `dims` as given; else by KL to the prior, most informative first (by index when the graph
    records no KL): all of them with `all_dims`, by default the informative ones (contract.informative_dims)."""
    d, kl = decoder.latent_dim, decoder.info.kl_per_dim
    if dims:
        return [int(i) for i in dims], None
    if kl is None:
        why = f"{decoder.name} records no KL per dimension (an older export): one row for every latent dimension"
        return list(range(d)), None if all_dims else why
    by_kl = sorted(range(d), key=lambda i: -kl[i])
    if all_dims:
        return by_kl, None
    chosen = informative_dims(kl)
    if not chosen:
        return by_kl, f"no latent dimension carries information ({INFORMATIVE_RULE}): one row for each, by KL"
    return chosen, (
        f"rows: the {plural(len(chosen), 'informative latent dimension')} of {d} ({INFORMATIVE_RULE}), most "
        f"informative first; {arg('all_dims', True)} draws every dimension"
    )


def data_images(
    data_dir=None,
    *,
    split: str = "test",
    label=None,
    count: int = 8,
    out=None,
    out_dir=None,
    scale: int = 1,
    overwrite: bool = False,
    index=(),
) -> tuple[int, list[Path]]:
    """Dataset images as PNGs: one grid `out`, or SPLIT_INDEX_CLASS.png files in `out_dir` (one holding
    such files already is refused unless overwrite=True, which deletes them first). `index`: the images at
    these 0-based indices ('14', '10-19'; data.parse_indices) instead of the first `count`.

    Returns (images written, the files written).
    """
    check_scale(scale)
    if (out is None) == (out_dir is None):
        raise UserInputError(f"give {arg('out')} or {arg('out_dir')}")
    if out is not None:
        check_output_file(out)
    from ..data import load_data, parse_indices, pick_images  # local: only the commands that read datasets load them

    indices = parse_indices(index) if index else None
    _, picked, names = pick_images(load_data(data_dir), split, label, count, indices)
    if out is not None:
        save_image_grid(out, picked, scale=scale)
        return len(picked), [Path(out)]
    directory = prepare_output_dir(out_dir, DATASET_IMAGES, overwrite)
    paths = [directory / name for name in names]
    for i, (path, image) in enumerate(zip(paths, picked)):
        try:
            save_png(path, upscale(image, scale))
        except WriteFailedError as e:
            raise e.but(
                f"the {i} images before it are complete; free space and run again" if i else "no image was written"
            ) from None
    return len(picked), paths


def encode(
    encoder,
    images=(),
    out=None,
    *,
    data_dir=None,
    split: str = "test",
    logvar: bool = False,
    label=None,
    chunk_size: int = DEFAULT_BATCH_SIZE,
    refine_steps: int | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
) -> int:
    """Posterior means (and with `logvar` the log-variances) of images into `out` (.npy or .csv); returns the rows.
    refine_steps: a refining encoder's steps (Encoder.encode) [the model's own].

    `encoder`: encoder.onnx, an export directory, or a run directory holding one (an Encoder works too).
    The images: `images` (paths, PIL images, arrays, or one batch array as Encoder.encode takes), else the
    `split` of the dataset in `data_dir` (default: the data the encoder's training run recorded, when it was
    exported into its run directory; else the embedded mnist-sample), brought to the encoder's channels and size. Labels are written when the data
    has them, or when `label` (for a conditional encoder: the class of every image) is given; a conditional
    encoder needs one or the other. Encoded `chunk_size` images at a time, streamed to disk (flat memory).
    Layout: output.write_latents.
    """
    if out is None:
        raise UserInputError(f"give {arg('out')} latents.npy or latents.csv")
    check_output_file(out, LATENT_FORMATS)
    if chunk_size < 1:
        raise UserInputError(f"{arg('chunk_size')} must be at least 1, got {chunk_size}")
    encoder, run_dir = _encoder_of_run(encoder)
    enc = _encoder(encoder, threads)
    if not isinstance(images, np.ndarray):  # a batch array is sliced as it is; anything else becomes a list
        images = [images] if isinstance(images, (str, Path)) else list(images)
    if len(images) and data_dir is not None:
        raise UserInputError(f"give images or {arg('data_dir')} DIR, not both")
    if len(images):
        source, labels = images, None
    else:
        source, labels = _dataset_split(enc, data_dir, split, run_dir)
        if labels is not None and label is not None:
            raise UserInputError(f"{arg('label')} is for unlabelled images; this data labels each image itself")
    if label is not None:
        labels = np.full(len(source), enc.label_index(label), dtype=np.int64)
    elif enc.conditional and labels is None:
        enc.labels_for(None, 1)  # raises "conditional: give a --label"
    dtype = latent_dtype(enc.latent_dim, logvar, labels is not None)
    enc.refine_feed(refine_steps)  # a bad count fails before any image is read

    def records():
        for start in range(0, len(source), chunk_size):
            batch_labels = None if labels is None else labels[start : start + chunk_size]
            mu, lv = enc.encode(
                source[start : start + chunk_size], batch_labels if enc.conditional else None, chunk_size, refine_steps
            )
            rows = np.empty(len(mu), dtype)
            rows["mu"] = mu
            if logvar:
                rows["logvar"] = lv
            if batch_labels is not None:
                rows["label"] = batch_labels
            if progress is not None:
                progress(len(rows), len(source))
            yield rows

    write_latents(out, records(), len(source), dtype)
    return len(source)


def _dataset_split(enc: Encoder, data_dir, split: str, run_dir=None) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 (N, C, H, W) images of a dataset split at the encoder's shape, and their labels (or None).

    Without data_dir, for an encoder exported into its run directory: the data that run trained on, read
    with its recipe (data.sources.load_run_data), so that its test split is the run's own hold-out."""
    if split not in ("train", "test"):
        raise UserInputError(f"unknown split {split!r}; choose train or test")
    from ..data.sources import load_model_data  # local: only the commands that read datasets load them

    ds = load_model_data(enc.info.config, data_dir, run_dir, enc.info.hold_out_seed)
    if split == "train":
        return ds.train, ds.train_labels
    return ds.test, ds.test_labels


def _is_gif(out) -> bool:
    return Path(out).suffix.lower() == ".gif"
