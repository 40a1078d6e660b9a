"""Error types raised by vaectl's library code; the CLI turns them into one-line messages.

A message names the caller's arguments with arg(): str(error) shows the Python parameter ("n must be at least
1"), the CLI shows its flag instead ("-n must be at least 1"; cli_common.flag_name is the one mapping).
note() says something vaectl did that the caller did not spell out (an image resized to the model's input):
a Note warning from Python, a `note:` line from the CLI.
"""

import re
import warnings

_ARG = re.compile("\x1f(\\w+)(?:=([^\x1f]*))?\x1f")


def arg(name: str, value=None) -> str:
    """A caller's argument inside an error message: its Python parameter `name` (with `value`: "name=value"),
    or, from the CLI, its flag ("--name value"; a value of True: the flag alone)."""
    return f"\x1f{name}\x1f" if value is None else f"\x1f{name}={value}\x1f"


def render(message: str, flag_name=None) -> str:
    """`message` with its arg() markers as Python parameters, or as flags through flag_name(parameter)."""

    def one(m: re.Match) -> str:
        name, value = m.group(1), m.group(2)
        if flag_name is None:
            return name if value is None else f"{name}={value}"
        flag = flag_name(name)
        if value == "False" and flag.startswith("--"):  # a switch's off side: --hflip/--no-hflip
            return "--no-" + flag[2:]
        return flag if value in (None, "True") else f"{flag} {value}"

    return _ARG.sub(one, message)


def say(message: str) -> None:
    """A library log line printed from Python (the default `log` of train and export_model): arg() markers as
    Python parameters. The CLI passes its own log, which shows them as flags."""
    print(render(message))


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """'1 image', '3 images' (`nouns`: an irregular plural)."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


class Note(UserWarning):
    """Something vaectl did that the caller did not ask for in so many words: an image converted to the
    model's input, a conditional model cycling through its classes, earlier output removed by overwrite."""

    def __str__(self) -> str:
        return render(super().__str__())


def note(message: str) -> None:
    """Say `message` once: a Note warning from Python; the CLI prints it as one `note:` line on stderr."""
    warnings.warn(message, Note, stacklevel=3)


class VaectlError(Exception):
    """Base class. `exit_code` is what the CLI exits with; the message may name arguments with arg()."""

    exit_code = 1

    def __str__(self) -> str:
        return render(super().__str__())

    def for_cli(self, flag_name) -> str:
        """The message with the command line's flags for the arguments it names."""
        return render(super().__str__(), flag_name)


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


class OutputExistsError(UserInputError):
    """An output directory already holds what this writer writes (an earlier run's files): refused unless
    overwrite (files.claim_out_dir). Exit 2."""


class CorruptCheckpointError(UserInputError):
    """A checkpoint's contents do not match the digest stored in it. Exit 2."""
