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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vaectl")
def main():
    """Train VAEs with PyTorch, export ONNX encoder/decoder graphs, and sample from them without torch."""


# ----------------------------------------------------------------------------- train

PRESETS = {
    # the tutorial: MLP, squared error, beta = 3
    "tutorial": dict(arch="mlp", likelihood="gaussian", beta=3.0, latent_dim=2, hidden=(512, 256)),
}


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
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None, help="A named set of model flags (explicit flags win).")
@click.option("--arch", type=click.Choice(["mlp", "conv"]), default=None, help="Model architecture [conv].")
@click.option("--latent-dim", type=int, default=None, help="Latent dimensions [32].")
@click.option("--hidden", default=None, help="MLP hidden widths, comma-separated [512,256].")
@click.option("--conv-channels", default=None, help="Conv channels per stride-2 stage, comma-separated [32,64,128].")
@click.option("--likelihood", type=click.Choice(["bernoulli", "gaussian"]), default=None,
              help="bernoulli: BCE; gaussian: summed squared error (the tutorial's MSE) [bernoulli].")
@click.option("--beta", type=float, default=None, help="Weight on the KL term; 0 is a plain autoencoder [1.0].")
@click.option("--conditional", is_flag=True, help="Condition encoder and decoder on the labels (generate a chosen class).")
@click.option("--epochs", type=int, default=20, show_default=True)
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
          conv_channels, likelihood, beta, conditional, epochs, batch_size, lr, schedule, kl_warmup, seed, device,
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

    overrides = dict(PRESETS[preset]) if preset else {}
    given = dict(arch=arch, latent_dim=latent_dim, likelihood=likelihood, beta=beta,
                 hidden=int_list("--hidden", hidden) if hidden else None,
                 conv_channels=int_list("--conv-channels", conv_channels) if conv_channels else None)
    overrides.update({k: v for k, v in given.items() if v is not None})
    if data_dir is not None and dataset != "mnist-sample":
        raise UserInputError("give either --data or --dataset, not both")
    tcfg = TrainConfig(out=out, data=data_dir, dataset=dataset, cache_dir=cache_dir, image_size=image_size,
                       channels=int(channels) if channels else None, conditional=conditional, epochs=epochs,
                       batch_size=batch_size, lr=lr, schedule=schedule, kl_warmup=kl_warmup, seed=seed,
                       device=device, amp=amp, compile=compile_, grid_every=grid_every)
    if resume is None:
        tcfg.validate()
    try:
        summary = run_training(tcfg, overrides, resume=resume, log=lambda m: click.echo(m, err=True))
    except Interrupted as e:
        click.echo(str(e), err=True)
        sys.exit(130)
    click.echo(f"done: best validation loss {summary['best_val']:.2f}; checkpoints in {summary['out']}", err=True)


# ----------------------------------------------------------------------------- export
# (export command goes here)

# ----------------------------------------------------------------------------- inference
# (generate, reconstruct, interpolate, traverse, info go here)

# ----------------------------------------------------------------------------- eval
# (eval goes here)


if __name__ == "__main__":
    main()
