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
            f"this command needs {module}, which comes with the [{extra}] extra: pip install 'vaectl[{extra}]'"
        )


class VerificationError(VaectlError):
    """An exported graph disagrees with PyTorch beyond tolerance. Exit 1."""

    exit_code = 1


class TrainingDivergedError(VaectlError):
    """The loss became NaN or inf. Exit 1; the last good checkpoint is left intact."""

    exit_code = 1


class WriteFailedError(UserInputError):
    """Writing a file failed for a reason outside vaectl: a full disk, a read-only filesystem, no permission.

    Exit 2 (an unusable path). `survived` says what the user still has ("the previous file is unchanged",
    "last.pt from epoch 3 is intact; free space and --resume runs/x"); callers that know more replace it.
    """

    exit_code = 2

    def __init__(self, path, reason: str, survived: str):
        self.path, self.reason, self.survived = str(path), reason, survived
        super().__init__(f"{self.path}: cannot write ({reason}); {survived}")

    def but(self, survived: str) -> "WriteFailedError":
        """The same failure, saying what survived in the caller's terms."""
        return WriteFailedError(self.path, self.reason, survived)


class CorruptCheckpointError(UserInputError):
    """A checkpoint's contents do not match the digest stored in it. Exit 2."""
