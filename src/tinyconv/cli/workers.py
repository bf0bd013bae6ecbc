"""``--workers K``: how many processes share the work of ``train`` and ``evaluate``.

K defaults to $TINYCONV_WORKERS, else to the cores this process may use
when MPI (mpi4py) is installed, else to 1 with a line saying how to install
it. Given K > 1, tinyconv starts itself again under ``mpiexec -n K``
(:func:`tinyconv.training.distributed.run_under_mpiexec`) and waits for the
workers; started by a launcher already (``mpiexec -n 8 --hostfile hosts
tinyconv train ...``), it uses that launcher's world as it is.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..training.distributed import (INSTALL_MPI, SingleProcess, WorkerError, available_cores,
                                    mpi_available, mpi_world, note_started,
                                    run_under_mpiexec, under_launcher)
from .common import UsageError, positive_int, say

ENVIRONMENT = "TINYCONV_WORKERS"


def add_workers_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--workers", type=positive_int, metavar="K",
                        help=f"processes that share the {what}, one core each, over MPI "
                             f"(default: ${ENVIRONMENT}, else every core this process may "
                             f"use when MPI is installed: {INSTALL_MPI}, else 1); under "
                             f"mpiexec, the launcher's number of processes")


def default_workers() -> int:
    """$TINYCONV_WORKERS, else the usable cores when MPI loads, else 1 (saying why)."""
    text = os.environ.get(ENVIRONMENT)
    if text:
        try:
            return positive_int(text)
        except argparse.ArgumentTypeError as error:
            raise UsageError(f"${ENVIRONMENT} {error}") from None
    cores = available_cores()
    if cores > 1 and mpi_available() is not None:
        say(f"using 1 worker; to use all {cores} cores install MPI: {INSTALL_MPI}")
        return 1
    return cores


def workers_world(args: argparse.Namespace, batch_size: int | None = None):
    """The world this command runs in, or the exit status of the workers it started.

    ``batch_size``: each worker needs at least one image of every full batch,
    so K may not exceed it (a default K is lowered to it instead). Bad K, or
    MPI missing or broken, raises before any work starts.
    """
    if under_launcher():
        world = mpi_world()
        note_started(world)
        if args.workers is not None and args.workers != world.size:
            raise UsageError(f"--workers {args.workers} does not match the {world.size} "
                             f"processes mpiexec started; leave --workers out under mpiexec")
        if batch_size is not None and world.size > batch_size:
            raise UsageError(f"{world.size} workers need --batch-size of at least "
                             f"{world.size} (one image each), got {batch_size}")
        return world
    workers = args.workers
    if workers is None:
        workers = default_workers()
        if batch_size is not None:
            workers = min(workers, batch_size)
    elif batch_size is not None and workers > batch_size:
        raise UsageError(f"--workers must not exceed --batch-size, since each worker takes a "
                         f"share of every batch: got --workers {workers} and --batch-size "
                         f"{batch_size}")
    if workers == 1:
        return SingleProcess()
    try:
        return run_under_mpiexec(args.argv, workers)
    except WorkerError as error:
        raise UsageError(str(error)) from None


def end_job(status: int) -> None:
    """After a command failed in an MPI job of several workers, end the whole job.

    A worker that merely returned would leave the others waiting for it
    forever. Rank 0 aborts the job at once; another rank waits a second
    first, so that when every worker failed alike, rank 0's line is the one
    the user reads and the others are ended before they repeat it.
    """
    try:
        world = mpi_world()
    except WorkerError:
        return  # MPI never started here: there is no job to end
    if world.size > 1:
        sys.stderr.flush()
        world.abort(status)


def before_error_line() -> str:
    """What goes before an error's text in a worker of an MPI job: ``"worker r of K: "``.

    Rank 0 says nothing more; another rank first waits a second (see
    :func:`end_job`). Outside MPI, nothing.
    """
    if not under_launcher():
        return ""
    from mpi4py import MPI
    if not MPI.Is_initialized() or MPI.COMM_WORLD.Get_rank() == 0:
        return ""
    time.sleep(1.0)
    return f"worker {MPI.COMM_WORLD.Get_rank()} of {MPI.COMM_WORLD.Get_size()}: "
