"""What every CLI command module shares: the error handler, the progress bar, the "wrote ..." line.

The command modules (cli_training, cli_inference, cli_tools) import this module; cli.py imports them
and registers their commands on the `vaectl` group. Imports run one way: cli -> cli_* -> cli_common.
"""

from __future__ import annotations

import functools
import sys

import click

from .errors import MissingExtraError, VaectlError

TRAIN_EXTRA_MODULES = ("torch", "torchvision", "onnx", "tqdm")


def fail(message: str, code: int):
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
                fail(str(MissingExtraError("train", e.name.split(".")[0])), 2)
            raise
        except VaectlError as e:
            fail(str(e), e.exit_code)
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
