"""The inference commands of the CLI (generate, reconstruct, interpolate, traverse, data-images, encode, info).

Base install only: onnxruntime, numpy, Pillow, click. Each command parses its flags and calls one library
function (vaectl.infer.commands); cli.py registers COMMANDS on the `vaectl` group.
"""

from __future__ import annotations

import click

from .cli_common import (
    ANY_PATH,
    DIR_PATH,
    FILE_PATH,
    MODEL_HELP,
    TerminalProgress,
    decoder_option,
    encoder_option,
    handle_errors,
    model_and_images,
    model_argument,
    model_graphs,
    wrote,
)
from .contract import INFORMATIVE_RULE
from .errors import plural
from .infer import defaults

_THREADS = click.option(
    "--threads", type=int, default=None, help="onnxruntime intra-op threads [VAECTL_THREADS, else the free cores]."
)
_LABEL_HELP = "Conditional models: a class index or name"
_SCALE = click.option(
    "--scale",
    type=int,
    default=1,
    show_default=True,
    help="Upscale the written images N times (nearest neighbour: crisp pixels).",
)
_VIEW_SCALE = click.option(
    "--scale",
    type=int,
    default=None,
    help="Upscale the picture N times (nearest neighbour: crisp pixels); 1: the decoder's exact pixels "
    "[each image at least 56 px, the picture at least 256 px wide].",
)
_NO_LABELS = click.option("--no-labels", is_flag=True, help="Leave out the labels: the bare grid of images.")
_FPS = click.option(
    "--fps", type=float, default=defaults.FPS, show_default=True, help="Frames per second of a .gif --out."
)
_PRIOR = click.option(
    "--prior",
    default=None,
    help="Draw z from this prior: 'gmm', the mixture fitted to the encoded training data, or 'normal', "
    "N(0, I) [the graph's default: gmm when the export carries it, else normal; `vaectl info` shows it].",
)
_DEMO = click.option(
    "--demo",
    is_flag=True,
    help="Use the demo model shipped with vaectl (2-D latent, conditional and guided, mnist-sample).",
)


@click.command(epilog=MODEL_HELP)
@model_argument()
@decoder_option()
@_DEMO
@click.option("-n", "n", type=int, default=64, show_default=True, help="Images to draw (per class with --label all).")
@click.option("--seed", type=int, default=None, help="Random seed; the same seed gives byte-identical PNGs [random].")
@click.option(
    "--temperature",
    type=float,
    default=1.0,
    show_default=True,
    help="Scale the prior's spread: z = center + t * offset (N(0, I): z ~ N(0, t^2 I); a mixture: each "
    "component's); below 1 is cleaner but less varied.",
)
@_PRIOR
@click.option(
    "--label",
    default=None,
    help=f"{_LABEL_HELP}, or 'all' for one row per class [cycle through classes]; "
    "a model trained with --label-dropout also takes 'none' (unconditional).",
)
@click.option(
    "--same-z", is_flag=True, help="With --label all: the same latents in every row, so style carries across classes."
)
@click.option(
    "--guidance",
    type=float,
    default=None,
    help="Guided conditional models: the pull towards the label (1 plain conditional, 0 the reference) [the model's].",
)
@click.option(
    "--out",
    type=FILE_PATH,
    default=None,
    help="Write one PNG grid, or with .npy one uint8 array (N, C, H, W) of the same pixels.",
)
@click.option(
    "--out-dir",
    type=DIR_PATH,
    default=None,
    help="Write one PNG per image into this directory (created if missing); memory stays flat for any -n.",
)
@click.option("--nrow", type=int, default=8, show_default=True, help="Images per grid row (--label all: -n).")
@click.option(
    "--overwrite",
    is_flag=True,
    help="With --out-dir: replace the images an earlier generate wrote there (deletes them, nothing else).",
)
@_SCALE
@_THREADS
@handle_errors
def generate(
    model,
    decoder,
    demo,
    n,
    seed,
    temperature,
    prior,
    label,
    same_z,
    guidance,
    out,
    out_dir,
    nrow,
    overwrite,
    scale,
    threads,
):
    """Draw new images from a decoder (no torch needed)."""
    from .infer import commands

    decoder = model_graphs(model, ("decoder",), decoder=decoder, demo=demo)["decoder"]
    bar = TerminalProgress("generating")
    try:
        total = commands.generate(
            decoder,
            n,
            seed=seed,
            temperature=temperature,
            label=label,
            same_z=same_z,
            guidance=guidance,
            prior=prior,
            out=out,
            out_dir=out_dir,
            nrow=nrow,
            threads=threads,
            progress=bar,
            scale=scale,
            overwrite=overwrite,
        )
    finally:
        bar.close()
    wrote(plural(total, "image"), out or out_dir)


@click.command(epilog=MODEL_HELP)
@encoder_option()
@decoder_option()
@_DEMO
@click.argument("paths", nargs=-1, required=True, type=ANY_PATH, metavar="[MODEL] IMAGES...")
@click.option("--out", required=True, type=FILE_PATH, help="PNG grid: originals above reconstructions.")
@click.option("--label", default=None, help=f"{_LABEL_HELP}: the class of the input images.")
@click.option("--nrow", type=int, default=8, show_default=True, help="Images per row.")
@_VIEW_SCALE
@_NO_LABELS
@_THREADS
@handle_errors
def reconstruct(encoder, decoder, demo, paths, out, label, nrow, scale, no_labels, threads):
    """Encode images and decode their posterior means; originals above reconstructions."""
    from .infer import commands

    model, images = model_and_images(paths, encoder is not None or decoder is not None or demo)
    graphs = model_graphs(model, ("encoder", "decoder"), encoder=encoder, decoder=decoder, demo=demo)
    encoder, decoder = graphs["encoder"], graphs["decoder"]
    count = commands.reconstruct(
        encoder, decoder, images, out, label=label, nrow=nrow, threads=threads, scale=scale, labels=not no_labels
    )
    wrote(f"{plural(count, 'reconstruction')} ({'each ' if count != 1 else ''}below its original)", out)


@click.command(epilog=MODEL_HELP)
@encoder_option("encoder.onnx (or its export directory), to interpolate between two images.")
@decoder_option()
@_DEMO
@click.argument("paths", nargs=-1, type=ANY_PATH, metavar="[MODEL] [A B]")
@click.option("--seed-a", type=int, default=None, help="Without images: the seed of the first random latent point.")
@click.option("--seed-b", type=int, default=None, help="Without images: the seed of the second random latent point.")
@click.option("--steps", type=int, default=10, show_default=True, help="Images in the strip, endpoints included.")
@click.option(
    "--method",
    type=click.Choice(["slerp", "lerp"]),
    default="slerp",
    show_default=True,
    help="slerp keeps points at typical norms under the N(0, I) prior; lerp is the straight line.",
)
@click.option("--label", default=None, help=f"{_LABEL_HELP}, held fixed along the path.")
@_PRIOR
@click.option(
    "--out",
    required=True,
    type=FILE_PATH,
    help="PNG strip, or .gif: an animation, one frame per step.",
)
@_VIEW_SCALE
@_NO_LABELS
@_FPS
@_THREADS
@handle_errors
def interpolate(
    encoder, decoder, demo, paths, seed_a, seed_b, steps, method, label, prior, out, scale, no_labels, fps, threads
):
    """Decode a path between two images (A.png B.png) or two random latent points (--seed-a/--seed-b)."""
    from .infer import commands

    model, images = model_and_images(paths, encoder is not None or decoder is not None or demo)
    roles = ("encoder", "decoder") if images else ("decoder",)
    graphs = model_graphs(model, roles, encoder=encoder, decoder=decoder, demo=demo)
    encoder, decoder = graphs.get("encoder", encoder), graphs["decoder"]
    count = commands.interpolate(
        decoder,
        out,
        encoder=encoder,
        images=images,
        seeds=(seed_a, seed_b),
        steps=steps,
        method=method,
        label=label,
        prior=prior,
        threads=threads,
        scale=scale,
        fps=fps,
        labels=not no_labels,
    )
    order = "one a frame" if str(out).lower().endswith(".gif") else "left to right"
    wrote(f"{plural(count, 'image')} (A to B, {order})", out)


TRAVERSE_HELP = f"""Vary one latent component at a time while the others stay fixed.

The varied component sweeps the prior's mean -span..+span of its standard deviations (N(0, I): -span to
+span); the others stay at the prior's mean, at a --seed draw, or at an --image's encoding. Each row is labelled with its component and its KL to the prior, most
informative first. Without --dim or --all: the informative dimensions ({INFORMATIVE_RULE}).
"""


@click.command(help=TRAVERSE_HELP, epilog=MODEL_HELP)
@model_argument()
@decoder_option()
@_DEMO
@click.option(
    "--dim", "dims", type=int, multiple=True, help="Latent dimension to vary (repeatable) [the informative ones]."
)
@click.option(
    "--all", "all_dims", is_flag=True, help="One row for every latent dimension [only those that carry information]."
)
@click.option(
    "--span",
    type=float,
    default=defaults.TRAVERSE_SPAN,
    show_default=True,
    help="Sweep the component over the prior's mean -span..+span standard deviations.",
)
@click.option("--steps", type=int, default=defaults.TRAVERSE_STEPS, show_default=True, help="Images per row.")
@click.option("--seed", type=int, default=None, help="Fix the other components at a random draw [the prior's mean].")
@click.option("--label", default=None, help=f"{_LABEL_HELP}, held fixed.")
@_PRIOR
@encoder_option("encoder.onnx (or its export directory), with --image: start from that image's posterior mean.")
@click.option(
    "--image",
    type=FILE_PATH,
    default=None,
    help="Start from this image's encoding (the tutorial's 8 that morphs into a 3); needs --encoder.",
)
@click.option(
    "--out",
    required=True,
    type=FILE_PATH,
    help="PNG grid, one row per dimension; or .gif: frame k shows step k of every dimension in a grid, "
    "running forth and back.",
)
@click.option(
    "--no-labels",
    is_flag=True,
    help="Leave out the labels: each row's component and KL, each column's step in prior sd, a GIF frame's step.",
)
@_VIEW_SCALE
@_FPS
@_THREADS
@handle_errors
def traverse(
    model,
    decoder,
    demo,
    dims,
    all_dims,
    span,
    steps,
    seed,
    label,
    prior,
    encoder,
    image,
    out,
    no_labels,
    scale,
    fps,
    threads,
):
    """Vary one latent component at a time while the others stay fixed (TRAVERSE_HELP)."""
    from .infer import commands

    roles = ("encoder", "decoder") if image is not None else ("decoder",)
    graphs = model_graphs(model, roles, encoder=encoder, decoder=decoder, demo=demo)
    encoder, decoder = graphs.get("encoder", encoder), graphs["decoder"]
    chosen = commands.traverse(
        decoder,
        out,
        dims=dims,
        all_dims=all_dims,
        span=span,
        steps=steps,
        seed=seed,
        label=label,
        encoder=encoder,
        image=image,
        prior=prior,
        threads=threads,
        scale=scale,
        fps=fps,
        labels=not no_labels,
    )
    wrote(commands.describe_traverse(chosen, steps, out), out)


@click.command("data-images")
@click.option(
    "--data",
    "data_dir",
    type=ANY_PATH,
    default=None,
    help="IDX folder or image folder [the embedded mnist-sample].",
)
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--label", default=None, help="Only images of this class (index or name).")
@click.option("-n", "count", type=int, default=8, show_default=True, help="How many images (the first N that match).")
@click.option(
    "--index",
    multiple=True,
    help="The image at this index (0-based, as the file names and `vaectl explore` number them), or a range "
    "10-19; repeatable. Instead of -n and --label.",
)
@click.option("--out", type=FILE_PATH, default=None, help="Write one PNG grid.")
@click.option(
    "--out-dir",
    type=DIR_PATH,
    default=None,
    help="Write one PNG per image, named SPLIT_INDEX_LABEL.png (created if missing).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="With --out-dir: replace the images an earlier data-images wrote there (deletes them, nothing else).",
)
@_SCALE
@handle_errors
def data_images(data_dir, split, label, count, index, out, out_dir, overwrite, scale):
    """Write images from a dataset as PNGs: e.g. an 8 and a 3 to interpolate or traverse from (no torch needed)."""
    from .infer import commands

    written, paths = commands.data_images(
        data_dir,
        split=split,
        label=label,
        count=count,
        out=out,
        out_dir=out_dir,
        scale=scale,
        overwrite=overwrite,
        index=index,
    )
    if out is not None:
        wrote(plural(written, "image"), out)
        return
    for path in paths:
        click.echo(str(path))


@click.command()
@encoder_option()
@_DEMO
@click.argument("paths", nargs=-1, type=ANY_PATH, metavar="[MODEL] [IMAGES...]")
@click.option(
    "--data",
    "data_dir",
    type=ANY_PATH,
    default=None,
    help="IDX folder or image folder to encode (instead of IMAGES) [no IMAGES: the data of the encoder's "
    "training run when it was exported into the run directory, else the embedded mnist-sample].",
)
@click.option(
    "--split", type=click.Choice(["train", "test"]), default="test", show_default=True, help="Split of the data."
)
@click.option(
    "--out",
    default=None,
    type=FILE_PATH,
    help="latents.npy (structured: np.load(f)['mu']) or latents.csv (with a header).",
)
@click.option("--logvar", is_flag=True, help="Also write the posterior log-variances.")
@click.option("--label", default=None, help=f"{_LABEL_HELP}: the class of unlabelled input images.")
@click.option(
    "--chunk-size",
    type=int,
    default=256,
    show_default=True,
    help="Images encoded per onnxruntime call and written at a time (memory, not results).",
)
@click.option(
    "--refine-steps",
    type=int,
    default=None,
    help="A resnet that refines its latent: steps from the encoder's mu, each about a decoder pass (0: the "
    "encoder's mu, fastest) [the model's own].",
)
@_THREADS
@handle_errors
def encode(encoder, demo, paths, data_dir, split, out, logvar, label, chunk_size, refine_steps, threads):
    """Write the posterior means (deterministic embeddings) of images or a dataset as .npy or .csv."""
    from .infer import commands

    model, images = model_and_images(paths, encoder is not None or demo)
    encoder = model_graphs(model, ("encoder",), encoder=encoder, demo=demo)["encoder"]
    bar = TerminalProgress("encoding")
    try:
        rows = commands.encode(
            encoder,
            images,
            out,
            data_dir=data_dir,
            split=split,
            logvar=logvar,
            label=label,
            chunk_size=chunk_size,
            refine_steps=refine_steps,
            threads=threads,
            progress=bar,
        )
    finally:
        bar.close()
    wrote(plural(rows, "latent row"), out)


@click.command(epilog=MODEL_HELP)
@click.argument("model", type=ANY_PATH)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list with a directory's graphs).")
@handle_errors
def info(model, as_json):
    """Print an ONNX graph's role, vaectl metadata, and input/output names and shapes (of each graph of a run or
    export directory)."""
    import json
    from pathlib import Path

    from . import layout
    from .cli_common import require_torch_for
    from .errors import UserInputError
    from .infer import describe_model, format_description
    from .infer.sessions import graph_path

    path = Path(model)
    if path.suffix.lower() == ".pt":
        require_torch_for(path)
        raise UserInputError(f"{path} is a checkpoint; info describes exported graphs: vaectl export {path.parent}")
    graphs = [path]
    if path.is_dir():
        graphs = [graph_path(path, "decoder")]  # a directory without a decoder: its error says what to do
        encoder = graphs[0].parent / layout.graph_name("encoder")
        graphs = [encoder, *graphs] if encoder.is_file() else graphs
    found = [describe_model(g) for g in graphs]
    if as_json:
        click.echo(json.dumps(found if path.is_dir() else found[0], indent=2))
    else:
        click.echo("\n\n".join(format_description(d) for d in found))


COMMANDS = (generate, reconstruct, interpolate, traverse, data_images, encode, info)
