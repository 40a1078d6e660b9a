"""The `vaectl` command line: a thin layer over library functions.

torch is imported only inside the commands that need it, so the inference commands run on the
base install. Library errors (vaectl.errors) become one line on stderr and an exit code.
"""

from __future__ import annotations

import functools
import sys

import click

from . import __version__
from .errors import MissingExtraError, VaectlError

TRAIN_EXTRA_MODULES = ("torch", "torchvision", "onnx", "tqdm")


def _fail(message: str, code: int):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn):
    """Turn library errors into one-line messages and exit codes; never a traceback for user errors."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] in TRAIN_EXTRA_MODULES:
                _fail(str(MissingExtraError("train", e.name.split(".")[0])), 2)
            raise
        except VaectlError as e:
            _fail(str(e), e.exit_code)
        except OSError as e:  # a path the library did not expect to fail (files.py maps every write it makes)
            from .files import os_error_reason

            _fail(f"{e.filename + ': ' if e.filename else ''}{os_error_reason(e)}", 2)
        except KeyboardInterrupt:  # Ctrl-C: every file written so far is complete (atomic writes)
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


class TerminalProgress:
    """A progress bar on stderr for long work (1,000+ items) on a terminal; nothing otherwise (logs stay clean).

    Called as progress(done_now, total): the bar is made on the first call, once the total is known.
    """

    def __init__(self, label: str):
        self.label, self.bar = label, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            if total < 1000 or not sys.stderr.isatty():
                return
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vaectl")
def main():
    """Train VAEs with PyTorch, export ONNX encoder/decoder graphs, and sample from them without torch."""


# ----------------------------------------------------------------------------- train

from .models.presets import PRESETS  # noqa: E402  (torch-free)
from .training.config import default  # noqa: E402  (torch-free: the defaults shown in --help)


def _d(name: str) -> str:
    value = default(name)
    return f"[{','.join(map(str, value)) if isinstance(value, tuple) else value}]"


def _int_list(flag: str, text: str) -> tuple[int, ...]:
    from .errors import UserInputError

    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UserInputError(f"{flag} takes comma-separated integers, got {text!r}") from None


@main.command()
@click.option("--data", "data", type=click.Path(), default=None,
              help="IDX folder (train-images-idx3-ubyte[.gz], ...) or a folder of images (subfolders = labels).")
@click.option("--dataset", default=None,
              help=f"mnist-sample (embedded, offline) or a torchvision dataset: mnist, fashion-mnist, kmnist, cifar10 (downloads) {_d('dataset')}.")
@click.option("--cache-dir", type=click.Path(), default=None, help="Download cache for --dataset [~/.cache/vaectl/datasets].")
@click.option("--image-size", type=int, default=None, help="Resize images to this square size.")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None, help="Convert images to 1 or 3 channels.")
@click.option("--out", type=click.Path(), default=None, help=f"Run directory for checkpoints, metrics and grids {_d('out')}.")
@click.option("--resume", type=click.Path(), default=None, help="Continue the run in this directory (its last.pt).")
@click.option("--overwrite", is_flag=True, default=False,
              help="Start a new run in an --out that holds one: first delete that run's files (checkpoints, "
                   "config.json, metrics.jsonl, epoch grids, graphs exported into a subdirectory); nothing else.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None, help="A named recipe: tutorial (MLP, MSE, beta 3, 2-D latent) or quality (the recommended recipe); explicit flags win.")
@click.option("--arch", type=click.Choice(["mlp", "conv"]), default=None, help=f"Model architecture {_d('arch')}.")
@click.option("--latent-dim", type=int, default=None, help=f"Latent dimensions {_d('latent_dim')}; 2 with --conditional.")
@click.option("--hidden", default=None, help=f"MLP hidden widths, comma-separated {_d('hidden')}.")
@click.option("--conv-channels", default=None, help=f"Conv channels per stride-2 stage, comma-separated {_d('conv_channels')}.")
@click.option("--context-channels", type=int, default=None,
              help=f"Row-autoregressive decoder: hidden channels of a convolution over the rows above each row (0: off) {_d('context_channels')}; 16 with --preset quality.")
@click.option("--context-kernel", type=int, default=None, help=f"Row context size: sees K//2 rows above, K//2 columns either side {_d('context_kernel')}.")
@click.option("--likelihood", type=click.Choice(["bernoulli", "gaussian"]), default=None,
              help=f"bernoulli: BCE; gaussian: summed squared error (the tutorial's MSE) {_d('likelihood')}.")
@click.option("--beta", type=float, default=None, help=f"Weight on the KL term; 0 is a plain autoencoder {_d('beta')}.")
@click.option("--conditional", is_flag=True, default=None, help="Condition encoder and decoder on the labels (generate a chosen class); defaults then: 2-D latent, beta 3.")
@click.option("--label-dropout", type=float, default=None,
              help="Conditional: train this fraction of images without their label, for guidance (0: off) [see README].")
@click.option("--guidance", type=float, default=None,
              help="Conditional with label dropout: the guidance weight generate uses unless told [see README].")
@click.option("--epochs", type=int, default=None, help=f"Epochs to train {_d('epochs')}; with --resume, the run's new total [the run's own].")
@click.option("--batch-size", type=int, default=None, help=f"Global batch size (split across processes) {_d('batch_size')}.")
@click.option("--lr", type=float, default=None, help=f"Peak learning rate (Adam) {_d('lr')}.")
@click.option("--schedule", type=click.Choice(["onecycle", "constant"]), default=None, help=f"Learning-rate schedule {_d('schedule')}.")
@click.option("--kl-warmup", type=float, default=None, help=f"Epochs over which beta ramps up from 0 {_d('kl_warmup')}.")
@click.option("--seed", type=int, default=None, help=f"Random seed {_d('seed')}.")
@click.option("--device", default=None, help=f"auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps {_d('device')}.")
@click.option("--amp", is_flag=True, default=None, help="bf16 autocast (CUDA).")
@click.option("--compile", "compile", is_flag=True, default=None, help="torch.compile the model.")
@click.option("--grid-every", type=int, default=None, help=f"Write sample/reconstruction grids every N epochs (0: never) {_d('grid_every')}.")
@handle_errors
def train(resume, overwrite, preset, epochs, hidden, conv_channels, channels, **flags):
    """Train a VAE (needs the [train] extra)."""
    from .training import Interrupted
    from .training import train as run_training

    given = {name: value for name, value in flags.items() if value is not None}  # only what was typed
    if hidden is not None:
        given["hidden"] = _int_list("--hidden", hidden)
    if conv_channels is not None:
        given["conv_channels"] = _int_list("--conv-channels", conv_channels)
    if channels is not None:
        given["channels"] = int(channels)
    if resume is None and epochs is not None:
        given["epochs"] = epochs
    try:
        summary = run_training(preset=preset, resume=resume, resume_epochs=epochs if resume else None,
                               overwrite=overwrite, log=lambda m: click.echo(m, err=True), **given)
    except Interrupted as e:
        click.echo(str(e), err=True)
        sys.exit(130)
    except KeyboardInterrupt:  # a Ctrl-C before the loop, or a second one: nothing new was saved
        click.echo("interrupted", err=True)
        sys.exit(130)
    click.echo(f"done: best validation loss {summary['best_val']:.2f}; checkpoints in {summary['out']}", err=True)


# ----------------------------------------------------------------------------- export


@main.command()
@click.argument("source", type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Directory for encoder.onnx and decoder.onnx (created if missing).")
@click.option("--last", is_flag=True, help="From a run directory, export last.pt instead of best.pt.")
@click.option("--opset", type=int, default=None, help="ONNX opset, 13-20 [17].")
@click.option("--atol", type=float, default=1e-4, show_default=True,
              help="Largest allowed absolute difference between onnxruntime and PyTorch outputs.")
@click.option("--fp16", is_flag=True, help="Also write decoder.fp16.onnx (float16 weights, float32 inputs/outputs).")
@click.option("--int8", is_flag=True, help="Also write decoder.int8.onnx (dynamically quantized int8 weights).")
@handle_errors
def export(source, out_dir, last, opset, atol, fp16, int8):
    """Export RUN_DIR or CHECKPOINT to verified ONNX encoder/decoder graphs (needs the [train] extra)."""
    from .export import export_model  # imports torch and onnx

    result = export_model(source, out_dir, last=last, opset=opset, atol=atol, fp16=fp16, int8=int8,
                          log=lambda m: click.echo(m, err=True))
    for path in (result.encoder, result.decoder, *result.variants.values()):
        click.echo(str(path))

# ----------------------------------------------------------------------------- inference (no torch)

_THREADS = click.option("--threads", type=int, default=None, help="onnxruntime intra-op threads [all cores].")
_LABEL_HELP = "Conditional models: a class index or name"
_SCALE = click.option("--scale", type=int, default=1, show_default=True,
                      help="Upscale the written images N times (nearest neighbour: crisp pixels).")
_FPS = click.option("--fps", type=float, default=8.0, show_default=True, help="Frames per second of a .gif --out.")
_DEMO = click.option("--demo", is_flag=True, help="Use the demo model shipped with vaectl (2-D latent, conditional, mnist-sample).")


def _model(path, demo: bool, role: str, flag: str):
    """The graph a command runs: the path given with `flag`, or the shipped demo's with --demo."""
    from .errors import UserInputError

    if demo and path is not None:
        raise UserInputError(f"give {flag} or --demo, not both")
    if demo:
        from .demo import demo_path

        return demo_path(role)
    if path is None:
        raise UserInputError(f"give {flag} {role}.onnx (or --demo for the demo model shipped with vaectl)")
    return path


def _wrote(what: str, where) -> None:
    click.echo(f"wrote {what} to {where}", err=True)


@main.command()
@click.option("--onnx", "decoder_path", default=None, type=click.Path(dir_okay=False),
              help="decoder.onnx (or its .fp16/.int8 variant) from `vaectl export`.")
@_DEMO
@click.option("-n", "n", type=int, default=64, show_default=True, help="Images to draw (per class with --label all).")
@click.option("--seed", type=int, default=None, help="Random seed; the same seed gives byte-identical PNGs [random].")
@click.option("--temperature", type=float, default=1.0, show_default=True,
              help="z ~ N(0, t^2 I): below 1 is cleaner but less varied.")
@click.option("--label", default=None, help=f"{_LABEL_HELP}, or 'all' for one row per class [cycle through classes]; "
              "a guided model also takes 'none' (unconditional).")
@click.option("--same-z", is_flag=True, help="With --label all: the same latents in every row, so style carries across classes.")
@click.option("--guidance", type=float, default=None,
              help="Guided conditional models: the pull towards the label (0 unconditional, 1 plain conditional) [the model's].")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write one PNG grid.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Write one PNG per image into this directory (created if missing); memory stays flat for any -n.")
@click.option("--nrow", type=int, default=8, show_default=True, help="Images per grid row (--label all: -n).")
@_SCALE
@_THREADS
@handle_errors
def generate(decoder_path, demo, n, seed, temperature, label, same_z, guidance, out, out_dir, nrow, scale, threads):
    """Draw new images from a decoder (no torch needed)."""
    from .infer import commands

    decoder_path = _model(decoder_path, demo, "decoder", "--onnx")
    bar = TerminalProgress("generating")
    try:
        total = commands.generate(decoder_path, n, seed=seed, temperature=temperature, label=label, same_z=same_z,
                                  guidance=guidance, out=out, out_dir=out_dir, nrow=nrow, threads=threads, progress=bar,
                                  scale=scale)
    finally:
        bar.close()
    _wrote(f"{total} images", out or out_dir)


@main.command()
@click.option("--encoder", "encoder_path", default=None, type=click.Path(dir_okay=False), help="encoder.onnx")
@click.option("--decoder", "decoder_path", default=None, type=click.Path(dir_okay=False), help="decoder.onnx")
@_DEMO
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG grid: originals above reconstructions.")
@click.option("--label", default=None, help=f"{_LABEL_HELP}: the class of the input images.")
@click.option("--nrow", type=int, default=8, show_default=True, help="Images per row.")
@_SCALE
@_THREADS
@handle_errors
def reconstruct(encoder_path, decoder_path, demo, images, out, label, nrow, scale, threads):
    """Encode images and decode their posterior means; originals above reconstructions."""
    from .infer import commands

    encoder_path = _model(encoder_path, demo, "encoder", "--encoder")
    decoder_path = _model(decoder_path, demo, "decoder", "--decoder")
    count = commands.reconstruct(encoder_path, decoder_path, images, out, label=label, nrow=nrow, threads=threads,
                                 scale=scale)
    _wrote(f"{count} reconstructions", out)


@main.command()
@click.option("--encoder", "encoder_path", default=None, type=click.Path(dir_okay=False),
              help="encoder.onnx, to interpolate between two images.")
@click.option("--decoder", "decoder_path", default=None, type=click.Path(dir_okay=False), help="decoder.onnx")
@_DEMO
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--seed-a", type=int, default=None, help="Without images: the seed of the first random latent point.")
@click.option("--seed-b", type=int, default=None, help="Without images: the seed of the second random latent point.")
@click.option("--steps", type=int, default=10, show_default=True, help="Images in the strip, endpoints included.")
@click.option("--method", type=click.Choice(["slerp", "lerp"]), default="slerp", show_default=True,
              help="slerp keeps points at typical norms under the N(0, I) prior; lerp is the straight line.")
@click.option("--label", default=None, help=f"{_LABEL_HELP}, held fixed along the path.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="PNG strip, or .gif: an animation, one frame per step.")
@_SCALE
@_FPS
@_THREADS
@handle_errors
def interpolate(encoder_path, decoder_path, demo, images, seed_a, seed_b, steps, method, label, out, scale, fps,
                threads):
    """Decode a path between two images (A.png B.png) or two random latent points (--seed-a/--seed-b)."""
    from .infer import commands

    if demo and images and encoder_path is None:
        encoder_path = _model(None, demo, "encoder", "--encoder")
    decoder_path = _model(decoder_path, demo, "decoder", "--decoder")
    count = commands.interpolate(decoder_path, out, encoder=encoder_path, images=images, seeds=(seed_a, seed_b),
                                 steps=steps, method=method, label=label, threads=threads, scale=scale, fps=fps)
    _wrote(f"{count} images", out)


@main.command()
@click.option("--onnx", "decoder_path", default=None, type=click.Path(dir_okay=False), help="decoder.onnx")
@_DEMO
@click.option("--dim", "dims", type=int, multiple=True, help="Latent dimension to vary (repeatable) [the informative ones].")
@click.option("--all", "all_dims", is_flag=True, help="One row for every latent dimension [only those that carry information].")
@click.option("--span", type=float, default=3.0, show_default=True, help="Sweep the component from -span to +span.")
@click.option("--steps", type=int, default=9, show_default=True, help="Images per row.")
@click.option("--seed", type=int, default=None, help="Fix the other components at a random draw [0, the prior's mean].")
@click.option("--label", default=None, help=f"{_LABEL_HELP}, held fixed.")
@click.option("--encoder", "encoder_path", type=click.Path(dir_okay=False), default=None,
              help="encoder.onnx, with --image: start from that image's posterior mean.")
@click.option("--image", type=click.Path(dir_okay=False), default=None,
              help="Start from this image's encoding (the tutorial's 8 that morphs into a 3); needs --encoder.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="PNG grid, one row per dimension; or .gif: frame k shows step k of every dimension side by side, "
                   "running forth and back.")
@_SCALE
@_FPS
@_THREADS
@handle_errors
def traverse(decoder_path, demo, dims, all_dims, span, steps, seed, label, encoder_path, image, out, scale, fps,
             threads):
    """Vary one latent component at a time while the others stay fixed.

    The varied component sweeps from -span to +span; the others stay at 0 (the prior's mean), at a
    --seed draw, or at an --image's encoding. Without --dim or --all: the dimensions that carry
    information (KL to the prior above 0.05 nats when the model was exported), else all of them.
    """
    from .infer import commands

    if demo and image is not None and encoder_path is None:
        encoder_path = _model(None, demo, "encoder", "--encoder")
    decoder_path = _model(decoder_path, demo, "decoder", "--onnx")
    chosen = commands.traverse(decoder_path, out, dims=dims, all_dims=all_dims, span=span, steps=steps, seed=seed,
                               label=label, encoder=encoder_path, image=image, threads=threads, scale=scale, fps=fps)
    _wrote(f"{len(chosen)} rows of {steps} (latent dimensions {', '.join(map(str, chosen))})", out)


@main.command("data-images")
@click.option("--data", "data_dir", type=click.Path(), default=None, help="IDX folder or image folder [the embedded mnist-sample].")
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--label", default=None, help="Only images of this class (index or name).")
@click.option("-n", "count", type=int, default=8, show_default=True, help="How many images (the first N that match).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write one PNG grid.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Write one PNG per image, named SPLIT_INDEX_LABEL.png (created if missing).")
@_SCALE
@handle_errors
def data_images(data_dir, split, label, count, out, out_dir, scale):
    """Write images from a dataset as PNGs: e.g. an 8 and a 3 to interpolate or traverse from (no torch needed)."""
    from .infer import commands

    written, paths = commands.data_images(data_dir, split=split, label=label, count=count, out=out, out_dir=out_dir,
                                          scale=scale)
    if out is not None:
        _wrote(f"{written} images", out)
        return
    for path in paths:
        click.echo(str(path))


@main.command()
@click.option("--encoder", "encoder_path", default=None, type=click.Path(dir_okay=False), help="encoder.onnx")
@_DEMO
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--data", "data_dir", type=click.Path(), default=None,
              help="IDX folder or image folder to encode (instead of IMAGES) [no IMAGES: the embedded mnist-sample].")
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True, help="Split of the data.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="latents.npy (structured: np.load(f)['mu']) or latents.csv (with a header).")
@click.option("--logvar", is_flag=True, help="Also write the posterior log-variances.")
@click.option("--label", default=None, help=f"{_LABEL_HELP}: the class of unlabelled input images.")
@click.option("--batch-size", type=int, default=256, show_default=True, help="Images encoded at a time.")
@_THREADS
@handle_errors
def encode(encoder_path, demo, images, data_dir, split, out, logvar, label, batch_size, threads):
    """Write the posterior means (deterministic embeddings) of images or a dataset as .npy or .csv."""
    from .infer import commands

    encoder_path = _model(encoder_path, demo, "encoder", "--encoder")
    bar = TerminalProgress("encoding")
    try:
        rows = commands.encode(encoder_path, images, out, data_dir=data_dir, split=split, logvar=logvar, label=label,
                               batch_size=batch_size, threads=threads, progress=bar)
    finally:
        bar.close()
    _wrote(f"{rows} latent rows", out)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def info(model, as_json):
    """Print an ONNX graph's role, vaectl metadata, and input/output names and shapes."""
    import json

    from .infer import describe_model, format_description

    d = describe_model(model)
    click.echo(json.dumps(d, indent=2) if as_json else format_description(d))

# ----------------------------------------------------------------------------- eval
@main.command("eval")
@click.argument("source", required=False, type=click.Path())
@click.option("--encoder", "encoder_path", type=click.Path(), default=None, help="encoder.onnx (torch-free path, with --decoder).")
@click.option("--decoder", "decoder_path", type=click.Path(), default=None, help="decoder.onnx (torch-free path, with --encoder).")
@click.option("--data", "data_dir", type=click.Path(), default=None, help="IDX or image folder to score (its test split).")
@click.option("--dataset", default=None, help="mnist-sample or a torchvision dataset (checkpoint path only) [what the model was trained on].")
@click.option("--k", type=int, default=1000, show_default=True, help="Importance samples per image for the IWAE bound.")
@click.option("--n", "n_images", type=int, default=None, help="Score only the first N test images [all].")
@click.option("--binarize", is_flag=True, help="Score a fixed stochastic binarization of the pixels (exact NLL for bernoulli).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--last", is_flag=True, help="With a run directory: use last.pt instead of best.pt.")
@click.option("--threads", type=int, default=None, help="onnxruntime intra-op threads (ONNX path).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@handle_errors
def eval_(source, encoder_path, decoder_path, data_dir, dataset, k, n_images, binarize, seed, last, threads, as_json):
    """Score a model on test data: negative ELBO, IWAE NLL bound, bits/dim, active units, KL per dimension.

    SOURCE is a run directory or checkpoint (needs the [train] extra); or give --encoder and --decoder
    to score exported ONNX graphs on the base install.
    """
    import json

    from .errors import UserInputError
    from .scoring import format_report

    onnx_path = encoder_path is not None or decoder_path is not None
    if onnx_path == (source is not None):
        raise UserInputError("give either a run directory/checkpoint, or --encoder and --decoder")
    progress = TerminalProgress("scoring")
    try:
        if onnx_path:
            if encoder_path is None or decoder_path is None:
                raise UserInputError("the ONNX path needs both --encoder and --decoder")
            from .infer.evaluate import evaluate_onnx

            report = evaluate_onnx(encoder_path, decoder_path, data_dir=data_dir, dataset=dataset, k=k, n=n_images,
                                   seed=seed, binarize=binarize, threads=threads, progress=progress)
        else:
            from .training.eval_checkpoint import evaluate_checkpoint

            report = evaluate_checkpoint(source, data_dir=data_dir, dataset=dataset, k=k, n=n_images, seed=seed,
                                         binarize=binarize, last=last, progress=progress)
    finally:
        progress.close()
    click.echo(json.dumps(report.to_dict()) if as_json else format_report(report))


# ----------------------------------------------------------------------------- doctor

@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option("--no-smoke", is_flag=True, help="Versions, devices and install checks only (no training run).")
@handle_errors
def doctor(as_json, no_smoke):
    """What this machine can do with vaectl: versions, devices, and a short train -> export -> generate run
    on each device. Exits 0 when every check that applies passed, 1 otherwise."""
    import json

    from .doctor import format_report, run_doctor

    report = run_doctor(smoke=not no_smoke, progress=lambda m: click.echo(m, err=True))
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_report(report))
    sys.exit(0 if report.ok else 1)


# ----------------------------------------------------------------------------- explore
@main.command()
@click.argument("source", required=False, type=click.Path())
@click.option("--decoder", "decoder_path", type=click.Path(dir_okay=False), default=None, help="decoder.onnx (instead of an export directory).")
@click.option("--encoder", "encoder_path", type=click.Path(dir_okay=False), default=None, help="encoder.onnx, for the map and your own images.")
@click.option("--data", "data_dir", type=click.Path(), default=None, help="IDX or image folder for the latent map [the embedded mnist-sample].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 serves other machines too.")
@click.option("--port", type=int, default=0, show_default=True, help="Port; 0 picks a free one.")
@click.option("--no-browser", is_flag=True, help="Print the URL, do not open a browser.")
@click.option("--site", "site_dir", type=click.Path(file_okay=False), default=None,
              help="Write the page as a static folder (for any static host) instead of serving it.")
@handle_errors
def explore(source, decoder_path, encoder_path, data_dir, host, port, no_browser, site_dir):
    """Explore a model's latent space in the browser: sliders, a 2-D pad, the latent map, samples, paths.

    SOURCE is what `vaectl export` wrote (or a run directory holding an export). The graphs run in the
    page (onnxruntime-web); this process only serves files and small JSON. No SOURCE: the demo model.
    """
    from .errors import UserInputError
    from .explore import load_explore_model, make_server, server_url, write_site

    if source is None and decoder_path is None:
        try:
            from .demo import demo_dir
        except ImportError:
            raise UserInputError("no demo model in this install: give an export directory or --decoder") from None
        source = demo_dir()
    if not 0 <= port <= 65535:
        raise UserInputError(f"--port must be 0..65535, got {port}")
    model = load_explore_model(source, decoder_path, encoder_path, data_dir)
    if site_dir is not None:
        written = write_site(model, site_dir)
        _wrote(f"a static site ({len(written)} files; serve it over http, .mjs as text/javascript)", site_dir)
        return
    server = make_server(model, host, port)
    url = server_url(server)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: other machines on the network can open this page", err=True)
    click.echo(f"vaectl explore: {url}  (Ctrl-C stops)")
    if not no_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
        sys.exit(130)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
