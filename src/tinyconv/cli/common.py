"""What every command shares: the Command record, argument types, the data
options, and how an error becomes one line.

Exit status: 0 on success; 1 when training diverged; 2 on bad usage or bad
input, with one line ``tinyconv: error: ...`` on stderr and never a
traceback; 130 when interrupted with Ctrl-C; 141 when the output's reader
went away (a closed pipe), quietly.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..data.datasets import DataNotFound
from ..models.serialize import model_path
from ..models.spec import SpecError

PROG = "tinyconv"

EXIT_OK, EXIT_DIVERGED, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141

# Errors that mean "the input was wrong": reported in one line, exit status 2.
# The project's own (ModelFileError, SpecError, IdxError, CheckpointError) are
# ValueErrors; ImportError is a missing optional dependency such as Pillow;
# MemoryError is input too large for this machine.
BAD_INPUT_ERRORS = (DataNotFound, ValueError, TypeError, OSError, ImportError, MemoryError)


@dataclass(frozen=True)
class Command:
    """A subcommand: ``add_arguments(parser)`` declares its options,
    ``run(args)`` does the work and returns an exit status (None means 0)."""

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


class UsageError(Exception):
    """A command line that argparse could not make sense of."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like every other error."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ---------------------------------------------------------------- argument types

def int_at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum``, or a clear error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a number of at least {minimum}, got {value}")
        return value
    return parse


positive_int, natural = int_at_least(1), int_at_least(0)


def float_in(low: float, high: float, *, low_open: bool = False, high_open: bool = False):
    """An argparse type: a finite float in the interval from ``low`` to ``high``."""
    interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, got {text}")
        return value

    return parse


def add_data_arguments(parser: argparse.ArgumentParser, default: str | None) -> None:
    """The options that say where the images come from (train and evaluate)."""
    shown = default or "the data the model was trained on"
    parser.add_argument("--data", default=default, metavar="NAME|DIR",
                        help="'fashion-mnist', 'mnist', or a folder of your own images "
                             "with one subfolder per class, or with train/ and test/ "
                             "subfolders that each have one per class; without test/, "
                             "a sixth of the images, drawn with --seed, is held out as "
                             f"the test set (default: {shown})")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="look for the dataset files here first, then in "
                             "$TINYCONV_DATA, ~/.cache/tinyconv and "
                             "/usr/share/datasets; if absent they are downloaded into "
                             "~/.cache/tinyconv")
    parser.add_argument("--no-download", dest="download", action="store_false",
                        help="never download: fail if the dataset files are not found")
    parser.add_argument("--mirror", metavar="URL",
                        help="download from this mirror instead of the official one")
    parser.add_argument("--limit-test", type=positive_int, metavar="N",
                        help="use only the first N test images (for quick trials)")


def say(line: str) -> None:
    print(line, flush=True)


def one_line(message) -> str:
    """A possibly multi-line error message as one line (lists joined with '; ')."""
    lines = [line.strip().removeprefix("- ") for line in str(message).splitlines()]
    text = ""
    for line in filter(None, lines):
        text += line if not text else (" " if text.endswith(":") else "; ") + line
    return text


def error_text(error: BaseException) -> str:
    """The one line that reports ``error``."""
    if isinstance(error, SpecError):
        # The message's caret line cannot survive being joined into one
        # line, so the position is marked inside the spec's text instead.
        lines = error.text.splitlines() or [""]
        source, column = lines[error.line - 1], error.column - 1
        where = str(error).splitlines()[0]
        return f"{where}: {source[:column]}<here>{source[column:]}"
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    if isinstance(error, MemoryError):
        # NumPy says "Unable to allocate 37.3 GiB for an array with shape ...".
        detail = one_line(error).removeprefix("Unable to ")
        return f"not enough memory to {detail or 'go on'}"
    return one_line(error) or type(error).__name__


def model_or_run(target: Path) -> Path:
    """The model file a MODEL|RUN_DIR argument names; refuses a path that is neither."""
    if not target.exists():
        raise ValueError(f"{target} does not exist: expected a model.npz file or a training "
                         f"run directory")
    return model_path(target)


def data_location(args: argparse.Namespace) -> dict:
    """Where the data options say the dataset files are found, as keyword arguments."""
    return dict(data_dir=args.data_dir, download=args.download, mirror=args.mirror)


def add_flip_average_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flip-average", action="store_true",
                        help="average each image's class probabilities with those of its "
                             "left-right flip (test-time augmentation); meant for models "
                             "trained with --augment, which learnt that flipped clothes "
                             "are the same clothes")
