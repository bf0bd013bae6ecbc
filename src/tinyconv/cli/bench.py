"""``tinyconv bench``: time tinyconv against PyTorch on this machine.

The benchmark itself is :mod:`tinyconv.app.bench`; figures and their history
are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json

from ..app import bench
from ..fileio import atomic_write_text
from ..training.distributed import WorkerError, run_under_mpiexec, under_launcher
from .common import Command, UsageError, positive_int
from .workers import workers_world


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256],
                        help="batch sizes to time (default: 64 256)")
    parser.add_argument("--rounds", type=int, default=7,
                        help="interleaved rounds per figure (default: 7)")
    parser.add_argument("--budget", type=float, default=0.15,
                        help="seconds of calls per candidate per round (default: 0.15)")
    parser.add_argument("--epoch", action="store_true",
                        help="also time a whole Fashion-MNIST epoch of lenet5 end to end, "
                             "and epochs of default with one worker and with every core")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak-memory measurements")
    parser.add_argument("--data-dir", help="where Fashion-MNIST is, for --epoch")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--workers", type=positive_int, metavar="K",
                        help="instead, time training steps of lenet5 and default with K "
                             "workers (MPI, one thread each) against PyTorch with K threads, "
                             "at the same global batch")


def run(args: argparse.Namespace) -> int:
    if min(args.batch) < 1 or args.rounds < 1 or args.budget <= 0:
        raise ValueError("--batch and --rounds must be positive and --budget above 0, "
                         f"got {args.batch}, {args.rounds}, {args.budget}")
    if args.workers is not None or under_launcher():
        if args.workers is not None and args.workers > min(args.batch):
            raise ValueError(f"--workers must not exceed the smallest --batch, got "
                             f"{args.workers} and {min(args.batch)}")
        if not under_launcher():
            # Even one worker runs under mpiexec: with one BLAS thread, as each worker has.
            try:
                return run_under_mpiexec(args.argv, args.workers)
            except WorkerError as error:
                raise UsageError(str(error)) from None
        world = workers_world(args)
        results = bench.run_workers(world, batches=tuple(args.batch), rounds=args.rounds,
                                    budget=args.budget)
        if world.rank != 0:
            return 0
    else:
        results = bench.run(batches=tuple(args.batch), rounds=args.rounds, budget=args.budget,
                            epoch=args.epoch, memory=not args.no_memory,
                            data_dir=args.data_dir)
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2))
        print(f"\nfigures written to {args.json}")
    return 0


COMMAND = Command("bench", "time tinyconv against PyTorch on this machine",
                  "Time LeNet-5's layers, whole training steps and inference of lenet5 and "
                  "default, side by side with PyTorch (same threads, interleaved rounds), and "
                  "print the ratios, the machine's BLAS and the peak memory.",
                  add_arguments, run)
