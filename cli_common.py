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


class AliasedOption(click.Option):
    """An option whose later names are accepted but not shown in --help (a name earlier command lines used)."""

    def get_help_record(self, ctx):
        shown, self.opts = self.opts, self.opts[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def decoder_option(help: str = "decoder.onnx (or a .fp16/.int8 variant), or the export directory holding it."):
    """--decoder on every command that runs a decoder graph (--onnx: the same, not shown in --help)."""
    return click.option("--decoder", "--onnx", "decoder", cls=AliasedOption, type=ANY_PATH, default=None, help=help)


def encoder_option(help: str = "encoder.onnx, or the export directory holding it."):
    return click.option("--encoder", "encoder", type=ANY_PATH, default=None, help=help)


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


def wrote(what: str, where) -> None:
    click.echo(f"wrote {what} to {where}", err=True)
