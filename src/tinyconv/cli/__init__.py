"""The ``tinyconv`` command line: train a CNN, evaluate it, ask it about pictures.

::

    tinyconv train    [--data NAME|DIR] [--arch PRESET|SPEC] [--epochs N] ... [--out DIR]
                      [--workers K]
    tinyconv evaluate MODEL [--data NAME|DIR] [--json] [--flip-average] [--workers K]
    tinyconv predict  MODEL IMAGE... [--top K] [--flip-average]
    tinyconv summary  PRESET|SPEC|MODEL
    tinyconv explain  conv|conv-backward|pool [--input ARRAY] ...
    tinyconv visualize MODEL|RUN_DIR [--what PICTURE|all] [--image FILE|--index N] [--out DIR]
    tinyconv report   RUN_DIR [--out FILE]
    tinyconv explore  MODEL|RUN_DIR [IMAGE ...] [--out FILE]
    tinyconv export   MODEL|RUN_DIR OUT.onnx
    tinyconv import   MODEL.onnx OUT.npz [--classes A,B,...] [--mean M] [--std S]
    tinyconv bench    [--batch N...] [--epoch] [--json FILE]

Each subcommand is a module of this package with a :class:`~.common.Command`
named ``COMMAND``: its name, a function that adds its arguments to an argparse
parser and a function that runs it. A command parses, calls the library and
prints; the work itself is done by the library, and can be done from Python
the same way. A new subcommand is one more module, listed in :data:`COMMANDS`.

Exit status: 0 on success; 1 when training diverged; 2 on bad usage or bad
input, with one line ``tinyconv: error: ...`` on stderr and never a
traceback; 130 when interrupted with Ctrl-C; 141 (128 + SIGPIPE, as Unix
tools) when the output's reader went away, without a word. With several
workers, a failed worker ends them all with its status (and one line).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from ..training.distributed import WorkerError, under_launcher
from ..training.loop import TrainingDiverged
from . import (bench, evaluate, explain, explore, export, import_, predict, report, summary,
               train, visualize)
from .common import (BAD_INPUT_ERRORS, EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_DIVERGED,
                     EXIT_INTERRUPTED, EXIT_OK, PROG, Command, Parser, UsageError, error_text)
from .workers import before_error_line, end_job

__all__ = ["Command", "COMMANDS", "build_parser", "main"]

COMMANDS: list[Command] = [module.COMMAND for module in (
    train, evaluate, predict, summary, explain, visualize, report, explore, export, import_,
    bench)]


def build_parser(commands=COMMANDS) -> argparse.ArgumentParser:
    """The ``tinyconv`` parser with one subparser per :class:`Command`."""
    parser = Parser(prog=PROG, description="A CNN from scratch in NumPy: train it, "
                                           "evaluate it, ask it about your pictures.",
                    epilog="exit status: 0 success, 1 training diverged, 2 bad usage "
                           "or input, 130 interrupted")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands:
        sub = subparsers.add_parser(command.name, help=command.help,
                                    description=command.description)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv=None) -> int:
    """Run ``tinyconv`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    In a worker of an MPI job (see :mod:`.workers`) a failure ends the whole
    job, so that no other worker waits for this one forever.
    """
    argv = [str(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    if not under_launcher():
        return _run(argv)
    try:
        status = _run(argv)
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else EXIT_BAD_INPUT
    except BaseException:
        print(f"{PROG}: {before_error_line()}an unexpected error:", file=sys.stderr)
        traceback.print_exc()
        status = EXIT_DIVERGED
    if status != EXIT_OK:
        end_job(status)
    return status


def _run(argv: list[str]) -> int:
    """Parse ``argv`` and run its command; an expected error becomes one line and a status."""
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv  # --workers starts the same command again under mpiexec
        status = args.run(args) or EXIT_OK
        sys.stdout.flush()  # a closed pipe is found here, not at the interpreter's exit
        return status
    except BrokenPipeError:
        # The reader went away (`tinyconv evaluate ... | head -2`): stop quietly, as
        # Unix tools do, with stdout on /dev/null so that the final flush is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"{PROG}: {before_error_line()}interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TrainingDiverged as error:
        print(f"{PROG}: error: {before_error_line()}{error_text(error)}", file=sys.stderr)
        return EXIT_DIVERGED
    except (UsageError, WorkerError, *BAD_INPUT_ERRORS) as error:
        print(f"{PROG}: error: {before_error_line()}{error_text(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
