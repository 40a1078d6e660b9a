"""The `vaectl` command line: a thin layer over library functions.

This module holds the `vaectl` group and registers the commands of cli_training (train, export, eval),
cli_inference (generate, reconstruct, ...) and cli_tools (doctor, explore). Those import what they share
from cli_common, never this module, so imports run one way. A command's module is imported only when that
command runs (or `vaectl --help` lists them all), so `vaectl generate` does not pay for train's imports; torch
is imported only inside the commands that need it, so the inference commands run on the base install.
Library errors (vaectl.errors) become one line on stderr and an exit code.
"""

from __future__ import annotations

import importlib

import click

from . import __version__

# command name -> the module that defines it (in its COMMANDS); tests/test_layout.py checks this table
COMMAND_MODULES = {
    **dict.fromkeys(("train", "export", "eval"), "cli_training"),
    **dict.fromkeys(
        ("generate", "reconstruct", "interpolate", "traverse", "data-images", "encode", "info"), "cli_inference"
    ),
    **dict.fromkeys(("doctor", "explore"), "cli_tools"),
}


class CommandsByModule(click.Group):
    """A group whose commands are loaded from their module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            module = importlib.import_module(f"{__package__}.{COMMAND_MODULES[cmd_name]}")
            for command in module.COMMANDS:
                self.add_command(command)
        return self.commands.get(cmd_name)


@click.group(cls=CommandsByModule, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vaectl")
def main():
    """Train VAEs with PyTorch, export ONNX encoder/decoder graphs, and sample from them without torch."""


if __name__ == "__main__":  # python -m vaectl.cli
    main()
