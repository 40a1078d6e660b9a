"""The CLI's training-side commands: `vaectl train`, `vaectl export` and `vaectl eval`.

torch is imported only inside the commands (train, export, and eval of a checkpoint need the [train]
extra); the help texts read their defaults from the torch-free configs. cli.py registers COMMANDS.
"""

from __future__ import annotations

import shlex
import sys

import click

from .cli_common import (
    ANY_PATH,
    MODEL_HELP,
    TerminalProgress,
    decoder_option,
    encoder_option,
    handle_errors,
    log,
    model_argument,
    model_graphs,
)
from .contract import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from .models.config import ARCHITECTURES, LIKELIHOODS  # torch-free
from .models.presets import CONDITIONAL, IMAGE_RECIPE, PRESETS, SMALL_IMAGE_TRAIN  # torch-free
from .scoring import IWAE_K
from .training.config import default  # torch-free: the defaults shown in --help

# ----------------------------------------------------------------------------- train


def _flag_value(value) -> str:
    """A default as typed on the command line: 1024,512 for a tuple, 3 for 3.0."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


# What --conditional changes: the model fields and the training schedule of the conditional recipe.
_CONDITIONAL_DEFAULTS = {**CONDITIONAL.model, **CONDITIONAL.train}
# What the recipe picked for colour images (or grey ones of 32 px and up) changes (models/presets.py).
_IMAGE_DEFAULTS = {**IMAGE_RECIPE.model, **IMAGE_RECIPE.train}


def _preset_value(preset: str, name: str) -> str:
    return _flag_value(PRESETS[preset].model.get(name, PRESETS[preset].train.get(name)))


def _d(name: str) -> str:
    """'[32]', with what the recipe picked for colour images and the conditional defaults change:
    '[0.3; 1 for colour or 32 px and up; 3 with --conditional]'."""
    values = [_flag_value(default(name))]
    if name in SMALL_IMAGE_TRAIN:  # the recipe's value depends on the image size
        small, large = _flag_value(SMALL_IMAGE_TRAIN[name]), _flag_value(_IMAGE_DEFAULTS[name])
        values.append(f"for colour or 32 px and up {small} up to 32 px, {large} above")
    elif name in _IMAGE_DEFAULTS and _IMAGE_DEFAULTS[name] != default(name):
        values.append(f"{_flag_value(_IMAGE_DEFAULTS[name])} for colour or 32 px and up")
    if name in _CONDITIONAL_DEFAULTS:
        values.append(f"{_flag_value(_CONDITIONAL_DEFAULTS[name])} with --conditional")
    return f"[{'; '.join(values)}]"


def _int_list(flag: str, text: str) -> tuple[int, ...]:
    from .errors import UserInputError

    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UserInputError(f"{flag} takes comma-separated integers, got {text!r}") from None


@click.command()
@click.option(
    "--data",
    "data",
    type=ANY_PATH,
    default=None,
    help="IDX folder (train-images-idx3-ubyte[.gz], ...), a folder of images (subfolders = labels; decoded once "
    "into an image store in ~/.cache/vaectl/stores, or $VAECTL_CACHE/stores), or a .npy / .npz file of uint8 "
    "images (N, H, W[, C]) (npz keys: images or x; labels or y; test_images, test_labels).",
)
@click.option(
    "--dataset",
    default=None,
    help=f"mnist-sample (embedded, offline) or a torchvision dataset: mnist, fashion-mnist, kmnist, cifar10 (downloads) {_d('dataset')}.",
)
@click.option(
    "--cache-dir", type=ANY_PATH, default=None, help="Download cache for --dataset [~/.cache/vaectl/datasets]."
)
@click.option(
    "--skip-bad-images",
    is_flag=True,
    default=None,
    help="Leave out images of the --data folder that cannot be decoded (a note names them) instead of stopping.",
)
@click.option(
    "--image-size",
    type=int,
    default=None,
    help="Resize images to this square size [the size most images share; else their median shorter side, at most 64].",
)
@click.option("--channels", type=click.Choice(["1", "3"]), default=None, help="Convert images to 1 or 3 channels.")
@click.option(
    "--out", type=ANY_PATH, default=None, help=f"Run directory for checkpoints, metrics and grids {_d('out')}."
)
@click.option(
    "--resume",
    type=ANY_PATH,
    default=None,
    help="Continue the run in this directory (its last.pt) with its own settings; "
    "--epochs N trains it to N epochs in total.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    default=False,
    help="Start a new run in an --out that holds one: first delete that run's files (checkpoints, "
    "config.json, metrics.jsonl, epoch grids, graphs exported into a subdirectory); nothing else.",
)
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default=None,
    help="A named recipe: tutorial (MLP, MSE, beta 3, 2-D latent) or quality (the recommended recipe); explicit flags win.",
)
@click.option(
    "--arch",
    type=click.Choice(ARCHITECTURES),
    default=None,
    help="Model architecture: mlp, conv, or resnet (diffusers-style blocks) [picked from the data: mlp for "
    "small grey images, resnet for colour or 32 px and up].",
)
@click.option(
    "--latent-dim",
    type=int,
    default=None,
    help=f"Latent dimensions {_d('latent_dim')}.",
)
@click.option("--hidden", default=None, help=f"MLP hidden widths, comma-separated {_d('hidden')}.")
@click.option(
    "--conv-channels",
    default=None,
    help=f"Conv channels per stride-2 stage, comma-separated {_d('conv_channels')}; the resnet picked for colour "
    "or 32 px and up: one stage per halving down to 4 px, 128 wide at the last, half as wide per stage before it "
    "(32 px: 32,64,128; 64 px: 16,32,64,128).",
)
@click.option(
    "--dropout",
    type=float,
    default=None,
    help=f"Resnet: dropout between the two convolutions of each block, in training only {_d('dropout')}.",
)
@click.option(
    "--refine-steps",
    type=int,
    default=None,
    help=f"Resnet: steps that move the encoder's z toward the one that best explains each image, at inference "
    f"(about a decoder pass each; 0: off) {_d('refine_steps')}.",
)
@click.option(
    "--context-channels",
    type=int,
    default=None,
    help=f"Row-autoregressive decoder: hidden channels of a convolution over the rows above each row (0: off) {_d('context_channels')}; {_preset_value('quality', 'context_channels')} with --preset quality.",
)
@click.option(
    "--context-kernel",
    type=int,
    default=None,
    help=f"Row context size: sees K//2 rows above, K//2 columns either side {_d('context_kernel')}.",
)
@click.option(
    "--likelihood",
    type=click.Choice(LIKELIHOODS),
    default=None,
    help="bernoulli: BCE; gaussian: summed squared error (the tutorial's MSE); gaussian-learned: a Gaussian "
    "with one learned sigma per channel [picked from the data: bernoulli for small grey images, "
    "gaussian-learned for colour or 32 px and up].",
)
@click.option("--beta", type=float, default=None, help=f"Weight on the KL term; 0 is a plain autoencoder {_d('beta')}.")
@click.option(
    "--conditional",
    is_flag=True,
    default=None,
    help="Condition encoder and decoder on the labels (generate a chosen class); defaults then: "
    + ", ".join(f"--{k.replace('_', '-')} {_flag_value(v)}" for k, v in _CONDITIONAL_DEFAULTS.items())
    + ".",
)
@click.option(
    "--label-dropout",
    type=float,
    default=None,
    help=f"Conditional: train this fraction of images without their label, for guidance (0: off) {_d('label_dropout')}.",
)
@click.option(
    "--guidance",
    type=float,
    default=None,
    help=f"Conditional: the guidance weight generate uses unless told (1: none) {_d('guidance')}.",
)
@click.option(
    "--epochs",
    type=int,
    default=None,
    help=f"Epochs to train {_d('epochs')}; with --resume, the run's new total [the run's own].",
)
@click.option(
    "--batch-size", type=int, default=None, help=f"Global batch size (split across processes) {_d('batch_size')}."
)
@click.option("--lr", type=float, default=None, help=f"Peak learning rate (Adam) {_d('lr')}.")
@click.option(
    "--hflip/--no-hflip",
    default=None,
    help="Mirror a random half of the training images left to right, another half each epoch: for images whose "
    "mirror image is as likely or merely rarer (faces, photographs, icons), not where it is wrong (digits, text) "
    "[off; on for colour images].",
)
@click.option(
    "--schedule",
    type=click.Choice(["onecycle", "constant"]),
    default=None,
    help=f"Learning-rate schedule {_d('schedule')}.",
)
@click.option(
    "--kl-warmup",
    type=float,
    default=None,
    help="Epochs over which beta ramps up from 0 [a quarter of --epochs; "
    f"{_flag_value(_CONDITIONAL_DEFAULTS['kl_warmup'])} with --conditional].",
)
@click.option("--seed", type=int, default=None, help=f"Random seed {_d('seed')}.")
@click.option("--device", default=None, help=f"auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps {_d('device')}.")
@click.option("--amp", is_flag=True, default=None, help="bf16 autocast (CUDA).")
@click.option("--compile", "compile", is_flag=True, default=None, help="torch.compile the model.")
@click.option(
    "--grid-every",
    type=int,
    default=None,
    help=f"Write sample/reconstruction grids every N epochs (0: never) {_d('grid_every')}.",
)
@click.option(
    "--tensorboard",
    is_flag=True,
    default=None,
    help="Also write TensorBoard event files into the run directory (needs: pip install tensorboard); "
    "view with: tensorboard --logdir runs/",
)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="CPU threads for torch [VAECTL_THREADS, else the free cores: all of them less the load average].",
)
@handle_errors
def train(resume, overwrite, preset, epochs, hidden, conv_channels, channels, **flags):
    """Train a VAE (needs the [train] extra)."""
    from .training import Interrupted
    from .training import train as run_training
    from .training.steps import wall_time

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
        summary = run_training(
            preset=preset,
            resume=resume,
            resume_epochs=epochs if resume else None,
            overwrite=overwrite,
            log=log,
            **given,
        )
    except Interrupted as e:
        click.echo(str(e), err=True)
        sys.exit(130)
    except KeyboardInterrupt:  # a Ctrl-C before the loop, or a second one: nothing new was saved
        click.echo("interrupted", err=True)
        sys.exit(130)
    if summary["trained_epochs"]:
        out = shlex.quote(str(summary["out"]))
        click.echo(
            f"done in {wall_time(summary['seconds'])}: best validation loss {summary['best_val']:.2f}; "
            f"checkpoints in {summary['out']}; "
            f"next: vaectl export {out}",
            err=True,
        )


# ----------------------------------------------------------------------------- export


@click.command()
@click.argument("model", type=ANY_PATH, metavar="MODEL")
@click.option(
    "--out",
    "out_dir",
    type=ANY_PATH,
    default=None,
    help="Directory for encoder.onnx and decoder.onnx (created if missing) [MODEL/onnx for a run directory, "
    "RUN/onnx for a checkpoint in one].",
)
@click.option("--last", is_flag=True, help="From a run directory, export last.pt instead of best.pt.")
@click.option("--opset", type=int, default=None, help=f"ONNX opset, {MIN_OPSET}-{MAX_OPSET} [{DEFAULT_OPSET}].")
@click.option(
    "--atol",
    type=float,
    default=1e-4,
    show_default=True,
    help="Largest allowed absolute difference between onnxruntime and PyTorch outputs "
    "(10 times this for a refining encoder's refined mu).",
)
@click.option("--fp16", is_flag=True, help="Also write decoder.fp16.onnx (float16 weights, float32 inputs/outputs).")
@click.option("--int8", is_flag=True, help="Also write decoder.int8.onnx (dynamically quantized int8 weights).")
@click.option(
    "--refine-steps",
    type=int,
    default=None,
    help="Resnet: refinement steps in the encoder graph, each about a decoder pass (0: the encoder's z as it "
    "is) [the run's own].",
)
@click.option(
    "--prior",
    default=None,
    help="The prior generate samples from: gmm (a Gaussian mixture fitted to the encoded training images, K by "
    "held-out likelihood), gmm:K (K components) or normal (N(0, I), nothing fitted) [gmm when the training "
    "data is at hand].",
)
@click.option(
    "--data",
    "data_dir",
    type=ANY_PATH,
    default=None,
    help="IDX or image folder of the training images to fit the prior to [the run's recorded data].",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace graphs exported there from another checkpoint (deletes them, nothing else). "
    "Re-exporting a run into a folder inside it needs no flag.",
)
@handle_errors
def export(model, out_dir, last, opset, atol, fp16, int8, refine_steps, prior, data_dir, overwrite):
    """Export MODEL, a run directory or a .pt checkpoint, to verified ONNX encoder/decoder graphs (needs the
    [train] extra)."""
    from .export import export_model  # imports torch and onnx

    result = export_model(
        model,
        out_dir,
        last=last,
        opset=opset,
        atol=atol,
        fp16=fp16,
        int8=int8,
        refine_steps=refine_steps,
        prior=prior,
        data_dir=data_dir,
        overwrite=overwrite,
        log=log,
    )
    for path in (result.encoder, result.decoder, *result.variants.values()):
        click.echo(str(path))
    graphs = shlex.quote(str(result.decoder.parent))
    click.echo(f"next: vaectl generate {graphs} --out samples.png, or vaectl explore {graphs}", err=True)


# ----------------------------------------------------------------------------- eval
@click.command("eval", epilog=MODEL_HELP)
@model_argument()
@encoder_option("encoder.onnx or its export directory (torch-free path, with --decoder).")
@decoder_option("decoder.onnx or its export directory (torch-free path, with --encoder).")
@click.option("--data", "data_dir", type=ANY_PATH, default=None, help="IDX or image folder to score (its test split).")
@click.option(
    "--dataset",
    default=None,
    help="mnist-sample or a torchvision dataset (checkpoint path only) [what the model was trained on].",
)
@click.option(
    "--k", type=int, default=IWAE_K, show_default=True, help="Importance samples per image for the IWAE bound."
)
@click.option("-n", "n", type=int, default=None, help="Score only the first N test images [all].")
@click.option(
    "--binarize", is_flag=True, help="Score a fixed stochastic binarization of the pixels (exact NLL for bernoulli)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--last", is_flag=True, help="With a run directory: use last.pt instead of best.pt.")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="onnxruntime intra-op threads (ONNX path) [VAECTL_THREADS, else the free cores].",
)
@click.option(
    "--prior",
    default=None,
    help="Also score under this prior: ONNX path: a prior the decoder carries (gmm, normal) [its default]; "
    "checkpoint: what export would fit (gmm, gmm:K, normal) [gmm when the training data is at hand].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@handle_errors
def eval_(model, encoder, decoder, data_dir, dataset, k, n, binarize, seed, last, threads, prior, as_json):
    """Score a model on test data: negative ELBO, IWAE NLL bound, bits/dim, active units, KL per dimension.

    A run directory or checkpoint is scored with PyTorch (the [train] extra; without it, the run's export);
    exported graphs with onnxruntime (the base install). The bounds are given under N(0, I) and under the
    prior `vaectl generate` samples from (the mixture `vaectl export` fits), when that is another.
    """
    import json

    from .scoring import format_report

    source, encoder, decoder = _eval_source(model, encoder, decoder)
    progress = TerminalProgress("scoring")
    try:
        if source is None:
            from .infer.evaluate import evaluate_onnx

            report = evaluate_onnx(
                encoder,
                decoder,
                data_dir=data_dir,
                dataset=dataset,
                k=k,
                n=n,
                seed=seed,
                binarize=binarize,
                threads=threads,
                progress=progress,
                prior=prior,
            )
        else:
            from .training.eval_checkpoint import evaluate_checkpoint

            report = evaluate_checkpoint(
                source,
                data_dir=data_dir,
                dataset=dataset,
                k=k,
                n=n,
                seed=seed,
                binarize=binarize,
                last=last,
                progress=progress,
                prior=prior,
                log=log,
            )
    finally:
        progress.close()
    if as_json:  # the warnings are in the JSON too; on stderr they reach whoever pipes stdout into a file
        for warning in report.warnings():
            click.echo(f"warning: {warning}", err=True)
    click.echo(json.dumps(report.to_dict()) if as_json else format_report(report))


def _eval_source(model, encoder, decoder):
    """(checkpoint or run directory to score with PyTorch, or None; encoder and decoder graphs otherwise).

    A run directory is scored through its checkpoint, the exact model, where torch is installed; without
    torch, through the run's export when it has one."""
    import importlib.util
    from pathlib import Path

    from . import layout
    from .cli_common import holds_checkpoint, require_torch_for
    from .errors import UserInputError, note

    if model is None and encoder is None and decoder is None:
        raise UserInputError("give a MODEL (a run directory, checkpoint, export directory or .onnx file)")
    if model is not None and holds_checkpoint(model) and encoder is None and decoder is None:
        path = Path(model)
        if importlib.util.find_spec("torch") is not None or not (path.is_dir() and layout.export_dirs_in(path)):
            require_torch_for(model, "scoring")
            return model, None, None
        note(f"scoring the export in {path} with onnxruntime: this install has no torch to score its checkpoint")
    graphs = model_graphs(model, ("encoder", "decoder"), encoder=encoder, decoder=decoder)
    return None, graphs["encoder"], graphs["decoder"]


COMMANDS = (train, export, eval_)
