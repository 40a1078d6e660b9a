"""The `vaectl` command line: a thin layer over library functions.

This module holds the `vaectl` group and registers the commands of cli_training (train, export, eval),
cli_inference (generate, reconstruct, ...) and cli_tools (doctor, explore). Those import what they share
from cli_common, never this module, so imports run one way. torch is imported only inside the commands
that need it, so the inference commands run on the base install. Library errors (vaectl.errors) become
one line on stderr and an exit code.
"""

from __future__ import annotations

import click

from . import __version__, cli_inference, cli_tools, cli_training


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vaectl")
def main():
    """Train VAEs with PyTorch, export ONNX encoder/decoder graphs, and sample from them without torch."""


for _command in (*cli_training.COMMANDS, *cli_inference.COMMANDS, *cli_tools.COMMANDS):
    main.add_command(_command)

if __name__ == "__main__":  # python -m vaectl.cli
    main()
