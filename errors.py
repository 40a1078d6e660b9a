"""Error types raised by vaectl's library code; cli.py turns them into one-line messages."""


class VaectlError(Exception):
    """Base class. `exit_code` is what the CLI exits with."""

    exit_code = 1


class UserInputError(VaectlError):
    """Bad input from the user: a missing file, a wrong flag value, a corrupt checkpoint. Exit 2."""

    exit_code = 2


class MissingExtraError(UserInputError):
    """A command needs an optional dependency group that is not installed."""

    def __init__(self, extra: str = "train", module: str = "torch"):
        super().__init__(
            f"this command needs {module}, which comes with the [{extra}] extra: "
            f"pip install 'vaectl[{extra}]'"
        )


class VerificationError(VaectlError):
    """An exported graph disagrees with PyTorch beyond tolerance. Exit 1."""

    exit_code = 1


class TrainingDivergedError(VaectlError):
    """The loss became NaN or inf. Exit 1; the last good checkpoint is left intact."""

    exit_code = 1
