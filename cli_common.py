"""What every CLI command module shares: the error handler, the progress bar, the "wrote ..." line.

The command modules (cli_training, cli_inference, cli_tools) import this module; cli.py imports them
and registers their commands on the `vaectl` group. Imports run one way: cli -> cli_* -> cli_common.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings

import click

from .errors import MissingExtraError, Note, VaectlError, render

TRAIN_EXTRA_MODULES = ("torch", "torchvision", "onnx", "tqdm")

# Library parameters whose flag is not the command's own option of that name, nor --NAME-WITH-HYPHENS.
FLAGS = {
    "data_dir": "--data",
    "dims": "--dim",
    "all_dims": "--all",
    "count": "-n",
    "n": "-n",
    "seeds": "--seed-a/--seed-b",
}


def flag_name(param: str) -> str:
    """The flag of the running command that sets library parameter `param`: the one place where the
    library's parameter names (in its error messages) become the command line's."""
    ctx = click.get_current_context(silent=True)
    for option in ctx.command.params if ctx is not None else ():
        if option.name == param:
            if isinstance(option, click.Argument):
                return option.human_readable_name
            return next((o for o in option.opts if o.startswith("--")), option.opts[0])
    return FLAGS.get(param, "--" + param.replace("_", "-"))


def fail(message: str, code: int):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


# The kinds of path the commands take, each made once and shared (a ParamType holds no state): making a
# click.Path looks its name ("file", "directory", "path") up through gettext, a few file lookups every time.
ANY_PATH = click.Path()
FILE_PATH = click.Path(dir_okay=False)
DIR_PATH = click.Path(file_okay=False)


def decoder_option(help: str = "decoder.onnx (or a .fp16/.int8 variant), or the export directory holding it."):
    """--decoder on every command that runs a decoder graph; --onnx is the same option."""
    return click.option("--decoder", "--onnx", "decoder", type=ANY_PATH, default=None, help=help)


def encoder_option(help: str = "encoder.onnx, or the export directory holding it."):
    return click.option("--encoder", "encoder", type=ANY_PATH, default=None, help=help)


# Every command that takes a model takes it as MODEL, the same way.
MODEL_HELP = (
    "MODEL is a run directory (its export, else its checkpoint), an export directory, or a .onnx or .pt file; "
    "--encoder/--decoder name graphs that live apart, --demo the model shipped with vaectl."
)
MODEL_SUFFIXES = (".onnx", ".pt")


def model_argument(metavar: str = "[MODEL]"):
    return click.argument("model", required=False, type=ANY_PATH, metavar=metavar)


def model_and_images(paths: tuple, named: bool) -> tuple[str | None, tuple]:
    """Split `[MODEL] IMAGES...`: the first path is the model when no graph was named by option (`named`) and it
    is a directory or a .onnx/.pt file; the rest are images."""
    from pathlib import Path

    if paths and not named and (Path(paths[0]).is_dir() or Path(paths[0]).suffix.lower() in MODEL_SUFFIXES):
        return paths[0], paths[1:]
    return None, paths


def model_graphs(model, roles: tuple[str, ...], *, encoder=None, decoder=None, demo: bool = False, optional=()):
    """What each of `roles` ("encoder", "decoder") of a command runs: the graph named by --encoder/--decoder,
    else MODEL's, else the demo's with --demo. A checkpoint (a .pt file, or a run directory not exported yet)
    runs through PyTorch (vaectl.pytorch, the [train] extra). Roles in `optional` may stay None."""
    from pathlib import Path

    from .errors import UserInputError

    named = {"encoder": encoder, "decoder": decoder}
    if demo and (model is not None or any(named[r] is not None for r in roles)):
        raise UserInputError("give a model or --demo, not both")
    if demo:
        from .demo import demo_path

        return {role: demo_path(role) for role in roles}
    graphs: dict = {}
    for role in roles:
        graphs[role] = named[role] if named[role] is not None else _graph_of(model, role)
        if graphs[role] is None and role not in optional:
            raise UserInputError(
                f"give a MODEL (a run or export directory, or a .onnx file), --{role}, or --demo for the demo model"
            )
    # MODEL may be a checkpoint; --encoder and --decoder name graphs
    checkpoints = {r: g for r, g in graphs.items() if named[r] is None and g is not None and _is_checkpoint(Path(g))}
    if checkpoints:
        source = next(iter(checkpoints.values()))
        require_torch_for(source)
        from .pytorch import checkpoint_pair

        pair = checkpoint_pair(source, prior=None)  # the prior export would fit, so samples match the export's
        from .errors import note

        note(f"{source} is a checkpoint: running it with PyTorch (vaectl export makes the ONNX graphs)")
        graphs.update({role: getattr(pair, role) for role in checkpoints})
    return graphs


def require_torch_for(checkpoint, doing: str = "running") -> None:
    """UserInputError naming the way on when a checkpoint is given to an install without torch: the [train]
    extra, or the graphs exported from its run (the exact path when the run has an export)."""
    import importlib.util
    import shlex
    from pathlib import Path

    from . import layout
    from .errors import UserInputError

    if importlib.util.find_spec("torch") is not None:
        return
    path = Path(checkpoint)
    run = path if path.is_dir() else path.parent
    exports = [d for d in layout.export_dirs_in(run) if (d / layout.DECODER).is_file()]
    context = click.get_current_context(silent=True)
    command = f"vaectl {context.info_name if context else 'generate'}"
    if exports:
        way = f"without it, give the graphs exported from it: {command} {shlex.quote(str(exports[0]))}"
    else:
        onnx = run / layout.RUN_EXPORT_DIR
        export = f"vaectl export {shlex.quote(str(run))}"  # a run directory exports into RUN/onnx by default
        if layout.default_export_dir(path) != onnx:
            export = f"vaectl export {shlex.quote(str(path))} --out {shlex.quote(str(onnx))}"
        way = f"without it, export it where torch is installed ({export}), then: {command} {shlex.quote(str(onnx))}"
    raise UserInputError(
        f"{doing} the PyTorch checkpoint {checkpoint} needs torch, which comes with the [train] extra "
        f"(pip install 'vaectl[train]'); {way}"
    )


def _graph_of(model, role: str):
    """MODEL's graph of `role`: a directory as it is (vaectl.infer finds the graph in it), a .onnx file, or the
    other role's graph beside it (encoder.onnx for a decoder.onnx MODEL)."""
    from pathlib import Path

    from . import layout

    if model is None:
        return None
    path = Path(model)
    if path.suffix.lower() != ".onnx" or path.name.startswith(role):
        return model
    beside = path.parent / layout.graph_name(role)
    return beside if beside.is_file() else model


def holds_checkpoint(path) -> bool:
    """A .pt file, or a directory with a best.pt or last.pt in it."""
    from pathlib import Path

    from . import layout

    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".pt"
    return path.is_dir() and any((path / name).is_file() for name in (layout.BEST_CHECKPOINT, layout.LAST_CHECKPOINT))


def _is_checkpoint(path) -> bool:
    """What the inference commands run with PyTorch: a checkpoint, unless its run directory has an export."""
    from . import layout

    return holds_checkpoint(path) and not (path.is_dir() and layout.export_dirs_in(path))


@contextlib.contextmanager
def notes_on_stderr():
    """The library's notes (errors.note) as `note: ...` lines on stderr as they happen, each once per command
    however many batches repeat it; other warnings as Python shows them."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", Note)
        show, said = warnings.showwarning, set()

        def showwarning(message, category, filename, lineno, file=None, line=None):
            if not issubclass(category, Note):
                show(message, category, filename, lineno, file, line)
            elif message.args[0] not in said:
                said.add(message.args[0])
                click.echo(f"note: {render(message.args[0], flag_name)}", err=True)

        warnings.showwarning = showwarning
        yield


def handle_errors(fn):
    """Turn library errors into one-line messages and exit codes; never a traceback for user errors.
    Library notes become `note:` lines on stderr."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with notes_on_stderr():
                return fn(*args, **kwargs)
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] in TRAIN_EXTRA_MODULES:
                fail(str(MissingExtraError("train", e.name.split(".")[0])), 2)
            raise
        except VaectlError as e:
            fail(e.for_cli(flag_name), e.exit_code)
        except OSError as e:  # a path the library did not expect to fail (files.py maps every write it makes)
            from .files import os_error_reason

            fail(f"{e.filename + ': ' if e.filename else ''}{os_error_reason(e)}", 2)
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


def log(message: str) -> None:
    """A library log line on stderr, its arg() markers shown as the running command's flags."""
    click.echo(render(message, flag_name), err=True)


def wrote(what: str, where) -> None:
    click.echo(f"wrote {what} to {where}", err=True)
