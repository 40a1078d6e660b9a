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

    return wrapper


class TerminalProgress:
    """`_progress`'s bar for work whose total is known only once it starts: created on the first update."""

    def __init__(self, label: str):
        self.label, self.bar = label, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = _progress(total, self.label)
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


@main.command()
@click.option("--data", "data_dir", type=click.Path(), default=None,
              help="IDX folder (train-images-idx3-ubyte[.gz], ...) or a folder of images (subfolders = labels).")
@click.option("--dataset", default="mnist-sample", show_default=True,
              help="mnist-sample (embedded, offline) or a torchvision dataset: mnist, fashion-mnist, kmnist, cifar10 (downloads).")
@click.option("--cache-dir", type=click.Path(), default=None, help="Download cache for --dataset [~/.cache/vaectl/datasets].")
@click.option("--image-size", type=int, default=None, help="Resize images to this square size.")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None, help="Convert images to 1 or 3 channels.")
@click.option("--out", default="runs/vae", show_default=True, type=click.Path(), help="Run directory for checkpoints, metrics and grids.")
@click.option("--resume", type=click.Path(), default=None, help="Continue the run in this directory (its last.pt).")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None, help="A named recipe: tutorial (MLP, MSE, beta 3, 2-D latent) or quality (the recommended recipe); explicit flags win.")
@click.option("--arch", type=click.Choice(["mlp", "conv"]), default=None, help="Model architecture [mlp].")
@click.option("--latent-dim", type=int, default=None, help="Latent dimensions [32; 2 with --conditional].")
@click.option("--hidden", default=None, help="MLP hidden widths, comma-separated [512,256].")
@click.option("--conv-channels", default=None, help="Conv channels per stride-2 stage, comma-separated [32,64,128].")
@click.option("--context-channels", type=int, default=None,
              help="Row-autoregressive decoder: hidden channels of a convolution over the rows above each row (0: off) [0; 16 with --preset quality].")
@click.option("--context-kernel", type=int, default=None, help="Row context size: sees K//2 rows above, K//2 columns either side [7].")
@click.option("--likelihood", type=click.Choice(["bernoulli", "gaussian"]), default=None,
              help="bernoulli: BCE; gaussian: summed squared error (the tutorial's MSE) [bernoulli].")
@click.option("--beta", type=float, default=None, help="Weight on the KL term; 0 is a plain autoencoder [1.0].")
@click.option("--conditional", is_flag=True, help="Condition encoder and decoder on the labels (generate a chosen class); z then defaults to 2-D style.")
@click.option("--epochs", type=int, default=None,
              help="Epochs to train [20]; with --resume, the run's new total [the run's own].")
@click.option("--batch-size", type=int, default=128, show_default=True, help="Global batch size (split across processes).")
@click.option("--lr", type=float, default=2e-3, show_default=True, help="Peak learning rate (Adam).")
@click.option("--schedule", type=click.Choice(["onecycle", "constant"]), default="onecycle", show_default=True)
@click.option("--kl-warmup", type=float, default=0.0, show_default=True, help="Epochs over which beta ramps up from 0.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps.")
@click.option("--amp", is_flag=True, help="bf16 autocast (CUDA).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model.")
@click.option("--grid-every", type=int, default=1, show_default=True, help="Write sample/reconstruction grids every N epochs (0: never).")
@handle_errors
def train(data_dir, dataset, cache_dir, image_size, channels, out, resume, preset, arch, latent_dim, hidden,
          conv_channels, context_channels, context_kernel, likelihood, beta, conditional, epochs, batch_size, lr, schedule, kl_warmup, seed, device,
          amp, compile_, grid_every):
    """Train a VAE (needs the [train] extra)."""
    from .errors import UserInputError
    from .training import Interrupted, TrainConfig
    from .training import train as run_training

    def int_list(flag, text):
        try:
            return tuple(int(v) for v in text.split(","))
        except ValueError:
            raise UserInputError(f"{flag} takes comma-separated integers, got {text!r}") from None

    recipe = PRESETS[preset] if preset else {"model": {}, "train": {}}
    overrides = dict(recipe["model"])
    ctx = click.get_current_context()
    flags = dict(batch_size=batch_size, lr=lr, kl_warmup=kl_warmup, epochs=epochs)
    for name, value in recipe["train"].items():  # preset training flags, unless given on the command line
        if ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT:
            flags[name] = value
    batch_size, lr, kl_warmup, epochs = flags["batch_size"], flags["lr"], flags["kl_warmup"], flags["epochs"]
    given = dict(arch=arch, latent_dim=latent_dim, likelihood=likelihood, beta=beta,
                 context_channels=context_channels, context_kernel=context_kernel,
                 hidden=int_list("--hidden", hidden) if hidden else None,
                 conv_channels=int_list("--conv-channels", conv_channels) if conv_channels else None)
    overrides.update({k: v for k, v in given.items() if v is not None})
    if data_dir is not None and dataset != "mnist-sample":
        raise UserInputError("give either --data or --dataset, not both")
    tcfg = TrainConfig(out=out, data=data_dir, dataset=dataset, cache_dir=cache_dir, image_size=image_size,
                       channels=int(channels) if channels else None, conditional=conditional,
                       epochs=TrainConfig.epochs if epochs is None else epochs,
                       batch_size=batch_size, lr=lr, schedule=schedule, kl_warmup=kl_warmup, seed=seed,
                       device=device, amp=amp, compile=compile_, grid_every=grid_every)
    if resume is None:
        tcfg.validate()
    elif epochs is not None and epochs < 1:
        raise UserInputError(f"--epochs must be at least 1, got {epochs}")
    try:
        summary = run_training(tcfg, overrides, resume=resume, log=lambda m: click.echo(m, err=True),
                               resume_epochs=epochs)
    except Interrupted as e:
        click.echo(str(e), err=True)
        sys.exit(130)
    except KeyboardInterrupt:  # a Ctrl-C before the loop, or a second one: nothing new was saved
        click.echo("interrupted", err=True)
        sys.exit(130)
    click.echo(f"done: best validation loss {summary['best_val']:.2f}; checkpoints in {summary['out']}", err=True)


# ----------------------------------------------------------------------------- export
# (export command goes here)


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

# ----------------------------------------------------------------------------- inference
# (generate, reconstruct, interpolate, traverse, info go here)

_THREADS = click.option("--threads", type=int, default=None, help="onnxruntime intra-op threads [all cores].")
_LABEL_HELP = "Conditional models: a class index or name"


class _NoProgress:
    def update(self, n):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress(total: int, label: str):
    """A progress bar on stderr for long runs on a terminal; nothing otherwise (logs stay clean)."""
    if total >= 1000 and sys.stderr.isatty():
        return click.progressbar(length=total, label=label, file=sys.stderr)
    return _NoProgress()


def _wrote(what: str, where) -> None:
    click.echo(f"wrote {what} to {where}", err=True)


@main.command()
@click.option("--onnx", "decoder_path", required=True, type=click.Path(dir_okay=False),
              help="decoder.onnx (or its .fp16/.int8 variant) from `vaectl export`.")
@click.option("-n", "n", type=int, default=64, show_default=True, help="Images to draw (per class with --label all).")
@click.option("--seed", type=int, default=None, help="Random seed; the same seed gives byte-identical PNGs [random].")
@click.option("--temperature", type=float, default=1.0, show_default=True,
              help="z ~ N(0, t^2 I): below 1 is cleaner but less varied.")
@click.option("--label", default=None, help=f"{_LABEL_HELP}, or 'all' for one row per class [cycle through classes].")
@click.option("--same-z", is_flag=True, help="With --label all: the same latents in every row, so style carries across classes.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write one PNG grid.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Write one PNG per image into this directory (created if missing); memory stays flat for any -n.")
@click.option("--nrow", type=int, default=8, show_default=True, help="Images per grid row (--label all: -n).")
@_THREADS
@handle_errors
def generate(decoder_path, n, seed, temperature, label, same_z, out, out_dir, nrow, threads):
    """Draw new images from a decoder (no torch needed)."""
    import itertools

    import numpy as np

    from .errors import UserInputError
    from .infer import Decoder
    from .infer.output import MAX_GRID_IMAGES, check_output_file, prepare_output_dir, save_image_batches, save_image_grid

    if (out is None) == (out_dir is None):
        raise UserInputError("give one of --out FILE.png (one grid) or --out-dir DIR (one PNG per image)")
    if n < 1:
        raise UserInputError(f"-n must be a positive number of images, got {n}")
    if nrow < 1:
        raise UserInputError(f"--nrow must be at least 1, got {nrow}")
    if out is not None:
        check_output_file(out)
    decoder = Decoder(decoder_path, threads)
    total = decoder.sample_count(n, label)
    if out is not None and total > MAX_GRID_IMAGES:
        raise UserInputError(f"{total:,} images is too many for one grid (at most {MAX_GRID_IMAGES:,}); use --out-dir")
    batches = decoder.iter_sample(n, seed, temperature, label, same_z)
    batches = itertools.chain([next(batches)], batches)  # bad --label etc. fail before anything is created
    with _progress(total, "generating") as bar:
        if out is not None:
            images = []
            for batch in batches:
                images.append(batch)
                bar.update(len(batch))
            save_image_grid(out, np.concatenate(images), nrow=n if label == "all" else nrow)
        else:
            prepare_output_dir(out_dir)
            save_image_batches(out_dir, batches, total, on_batch=bar.update)
    _wrote(f"{total} images", out or out_dir)


@main.command()
@click.option("--encoder", "encoder_path", required=True, type=click.Path(dir_okay=False), help="encoder.onnx")
@click.option("--decoder", "decoder_path", required=True, type=click.Path(dir_okay=False), help="decoder.onnx")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG grid: originals above reconstructions.")
@click.option("--label", default=None, help=f"{_LABEL_HELP}: the class of the input images.")
@click.option("--nrow", type=int, default=8, show_default=True, help="Images per row.")
@_THREADS
@handle_errors
def reconstruct(encoder_path, decoder_path, images, out, label, nrow, threads):
    """Encode images and decode their posterior means; originals above reconstructions."""
    import numpy as np

    from .errors import UserInputError
    from .files import to_uint8_images
    from .infer import VAEPair
    from .infer.output import check_output_file, save_image_grid

    if nrow < 1:
        raise UserInputError(f"--nrow must be at least 1, got {nrow}")
    check_output_file(out)
    pair = VAEPair.load(encoder_path, decoder_path, threads)
    x = pair.encoder.prepare(list(images))
    originals, recons = to_uint8_images(x), pair.reconstruct(x, label)
    rows = []
    for start in range(0, len(x), nrow):  # row pairs: originals, then their reconstructions
        for block in (originals, recons):
            row = block[start:start + nrow]
            pad = np.zeros((nrow - len(row), *row.shape[1:]), np.uint8) if len(x) > nrow else row[:0]
            rows.append(np.concatenate([row, pad]))
    save_image_grid(out, np.concatenate(rows), nrow=min(nrow, len(x)))
    _wrote(f"{len(x)} reconstructions", out)


@main.command()
@click.option("--encoder", "encoder_path", default=None, type=click.Path(dir_okay=False),
              help="encoder.onnx, to interpolate between two images.")
@click.option("--decoder", "decoder_path", required=True, type=click.Path(dir_okay=False), help="decoder.onnx")
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--seed-a", type=int, default=None, help="Without images: the seed of the first random latent point.")
@click.option("--seed-b", type=int, default=None, help="Without images: the seed of the second random latent point.")
@click.option("--steps", type=int, default=10, show_default=True, help="Images in the strip, endpoints included.")
@click.option("--method", type=click.Choice(["slerp", "lerp"]), default="slerp", show_default=True,
              help="slerp keeps points at typical norms under the N(0, I) prior; lerp is the straight line.")
@click.option("--label", default=None, help=f"{_LABEL_HELP}, held fixed along the path.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG strip.")
@_THREADS
@handle_errors
def interpolate(encoder_path, decoder_path, images, seed_a, seed_b, steps, method, label, out, threads):
    """Decode a path between two images (A.png B.png) or two random latent points (--seed-a/--seed-b)."""
    from .errors import UserInputError
    from .infer import Decoder, Encoder, VAEPair
    from .infer.output import check_output_file, save_image_grid

    if steps < 2:
        raise UserInputError(f"--steps must be at least 2 (the two endpoints), got {steps}")
    if encoder_path is not None:
        if len(images) != 2 or seed_a is not None or seed_b is not None:
            raise UserInputError("with --encoder, give exactly two images A B (and no --seed-a/--seed-b)")
    elif images:
        raise UserInputError("interpolating between images needs --encoder encoder.onnx")
    elif seed_a is None or seed_b is None:
        raise UserInputError("give --encoder and two images, or --seed-a and --seed-b for two random latent points")
    check_output_file(out)
    if encoder_path is not None:
        strip = VAEPair(Encoder(encoder_path, threads), Decoder(decoder_path, threads)).interpolate(
            images[0], images[1], steps, method, label)
    else:
        decoder = Decoder(decoder_path, threads)
        z_a, z_b = decoder.latents(1, seed_a)[0], decoder.latents(1, seed_b)[0]
        strip = decoder.interpolate(z_a, z_b, steps, method, label)
    save_image_grid(out, strip, nrow=steps)
    _wrote(f"{steps} images", out)


@main.command()
@click.option("--onnx", "decoder_path", required=True, type=click.Path(dir_okay=False), help="decoder.onnx")
@click.option("--dim", "dims", type=int, multiple=True, help="Latent dimension to vary (repeatable) [all].")
@click.option("--all", "all_dims", is_flag=True, help="One row per latent dimension.")
@click.option("--span", type=float, default=3.0, show_default=True, help="Sweep the component from -span to +span.")
@click.option("--steps", type=int, default=9, show_default=True, help="Images per row.")
@click.option("--seed", type=int, default=None, help="Fix the other components at a random draw [0, the prior's mean].")
@click.option("--label", default=None, help=f"{_LABEL_HELP}, held fixed.")
@click.option("--encoder", "encoder_path", type=click.Path(dir_okay=False), default=None,
              help="encoder.onnx, with --image: start from that image's posterior mean.")
@click.option("--image", type=click.Path(dir_okay=False), default=None,
              help="Start from this image's encoding (the tutorial's 8 that morphs into a 3); needs --encoder.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG grid, one row per dimension.")
@_THREADS
@handle_errors
def traverse(decoder_path, dims, all_dims, span, steps, seed, label, encoder_path, image, out, threads):
    """Vary one latent component at a time while the others stay fixed.

    The varied component sweeps from -span to +span; the others stay at 0 (the prior's mean), at a
    --seed draw, or at an --image's encoding.
    """
    from .errors import UserInputError
    from .infer import Decoder, Encoder, VAEPair
    from .infer.output import check_output_file, save_image_grid

    if dims and all_dims:
        raise UserInputError("give --dim or --all, not both")
    if steps < 2:
        raise UserInputError(f"--steps must be at least 2, got {steps}")
    if (encoder_path is None) != (image is None):
        raise UserInputError("--image and --encoder go together")
    if image is not None and seed is not None:
        raise UserInputError("give --image or --seed, not both")
    check_output_file(out)
    decoder = Decoder(decoder_path, threads)
    if image is not None:
        pair = VAEPair(Encoder(encoder_path, threads), decoder)
        grid = pair.traverse(image, list(dims) or None, span, steps, label)
    else:
        grid = decoder.traverse(None, list(dims) or None, span, steps, label, seed)
    save_image_grid(out, grid, nrow=steps)
    _wrote(f"{len(grid) // steps} rows of {steps}", out)


@main.command("data-images")
@click.option("--data", "data_dir", type=click.Path(), default=None, help="IDX folder or image folder [the embedded mnist-sample].")
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--label", default=None, help="Only images of this class (index or name).")
@click.option("-n", "count", type=int, default=8, show_default=True, help="How many images (the first N that match).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write one PNG grid.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Write one PNG per image, named SPLIT_INDEX_LABEL.png (created if missing).")
@handle_errors
def data_images(data_dir, split, label, count, out, out_dir):
    """Write images from a dataset as PNGs: e.g. an 8 and a 3 to interpolate or traverse from (no torch needed)."""
    import numpy as np

    from .data import load_data
    from .errors import UserInputError
    from .files import save_png
    from .infer.output import check_output_file, prepare_output_dir, save_image_grid

    if (out is None) == (out_dir is None):
        raise UserInputError("give --out or --out-dir")
    if count < 1:
        raise UserInputError(f"-n must be at least 1, got {count}")
    if out is not None:
        check_output_file(out)
    ds = load_data(data_dir)
    images = ds.train if split == "train" else ds.test  # (N, C, H, W) uint8
    labels = ds.train_labels if split == "train" else ds.test_labels
    index = np.arange(len(images))
    if label is not None:
        if labels is None or not ds.class_names:
            raise UserInputError(f"dataset {ds.name!r} has no labels")
        if label in ds.class_names:
            wanted = ds.class_names.index(label)
        elif label.isdigit() and int(label) < len(ds.class_names):
            wanted = int(label)
        else:
            raise UserInputError(f"unknown label {label!r}; classes: {', '.join(ds.class_names)}")
        index = index[labels == wanted]
    index = index[:count]
    if len(index) == 0:
        raise UserInputError(f"no images of class {label!r} in the {split} split of {ds.name!r}")
    picked = images[index]
    picked = picked[:, 0] if picked.shape[1] == 1 else picked.transpose(0, 2, 3, 1)  # (N, H, W[, 3])
    if out is not None:
        save_image_grid(out, picked)
        _wrote(f"{len(picked)} images", out)
        return
    directory = prepare_output_dir(out_dir)
    for i, image in zip(index, picked):
        tag = "" if labels is None else "_" + ds.class_names[labels[i]].replace("/", "-").replace(" ", "-")
        path = directory / f"{split}_{i:05d}{tag}.png"
        save_png(path, image)
        click.echo(str(path))


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def info(model, as_json):
    """Print an ONNX graph's role, vaectl metadata, and input/output names and shapes."""
    import json

    from .infer import describe_model

    d = describe_model(model)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return

    def sig(t):
        return f"{t['name']}: {t['type']} [{', '.join(map(str, t['shape']))}]"

    lines = [f"model       {d['path']} ({d['bytes']:,} bytes; {d['producer'] or 'unknown producer'})"]
    if d["vaectl"]:
        lines += [f"role        {d['role']} (variant {d['variant']})",
                  f"latent_dim  {d['latent_dim']}",
                  f"image       {'x'.join(map(str, d['image_shape']))} (channels x height x width)",
                  f"classes     {', '.join(d['class_names']) or 'none (unconditional)'}",
                  f"checkpoint  sha256 {d['checkpoint_sha256'] or '?'}"]
    else:
        lines.append("role        unknown: no vaectl metadata (not made by `vaectl export`)")
    lines += [f"input       {sig(t)}" for t in d["inputs"]]
    lines += [f"output      {sig(t)}" for t in d["outputs"]]
    lines += [f"metadata    {k} = {v}" for k, v in d["metadata"].items()]
    click.echo("\n".join(lines))

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
    from .infer.evaluate import format_report

    onnx_path = encoder_path is not None or decoder_path is not None
    if onnx_path == (source is not None):
        raise UserInputError("give either a run directory/checkpoint, or --encoder and --decoder")
    if k < 1:
        raise UserInputError(f"--k must be at least 1, got {k}")
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
