"""``tinyconv train``: train a model, report its test accuracy, save it.

The work is :func:`tinyconv.training.run.train`; this module turns the
options into its arguments and prints what it reports.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from ..models.presets import PRESETS, preset_name
from ..training.checkpoint import CHECKPOINT
from ..training.distributed import SHOW_PROGRESS
from ..training.run import train
from .common import (EXIT_INTERRUPTED, PROG, Command, add_data_arguments, float_in, natural,
                     positive_int, say)
from .workers import add_workers_argument, workers_world


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser, default="fashion-mnist")
    parser.add_argument("--limit-train", type=positive_int, metavar="N",
                        help="use only the first N training images (for quick trials)")
    parser.add_argument("--arch", default="default", metavar="PRESET|SPEC",
                        help=f"a preset ({', '.join(PRESETS)}) or a spec such as "
                             "'INPUT(1,28,28) -> [CONV(8,3,pad=1) -> MAXPOOL(2)]*2 -> "
                             "FC(10)' (default: default)")
    parser.add_argument("--epochs", type=positive_int, metavar="N",
                        help="passes over the training set (default: the preset's)")
    parser.add_argument("--batch-size", type=positive_int, default=64, metavar="N",
                        help="images per gradient step (default: 64)")
    parser.add_argument("--optimizer", choices=("sgd", "adam"),
                        help="(default: the preset's)")
    parser.add_argument("--lr", type=float_in(0, math.inf, low_open=True), metavar="X",
                        help="learning rate (default: the preset's)")
    parser.add_argument("--momentum", type=float_in(0, 1, high_open=True), default=0.9,
                        metavar="X", help="SGD momentum (default: 0.9)")
    parser.add_argument("--weight-decay", type=float_in(0, math.inf), metavar="X",
                        help="L2 weight decay (default: the preset's)")
    parser.add_argument("--schedule", choices=("none", "step", "cosine"),
                        help="learning-rate schedule: step divides it by 10 after each "
                             "third of the epochs, cosine anneals it to 0 "
                             "(default: the preset's)")
    parser.add_argument("--val-fraction", type=float_in(0, 1, high_open=True),
                        metavar="X",
                        help="share of the training images held out for validation; 0 "
                             "holds none out (no validation, no early stopping) "
                             "(default: the preset's: 0.1, or 0 for strong)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction,
                        help="random horizontal flips and shifts of up to --max-shift "
                             "pixels (default: the preset's)")
    parser.add_argument("--max-shift", type=natural, metavar="N",
                        help="with --augment, the largest random shift in pixels; 0 flips "
                             "only (default: the preset's, 2 for most)")
    parser.add_argument("--patience", type=positive_int, metavar="N",
                        help="stop early after N epochs without a better validation "
                             "loss (default: never)")
    parser.add_argument("--image-size", type=positive_int, metavar="N",
                        help="with a preset and a folder of your own pictures: the side of "
                             "the square the pictures are fitted into (default: 28)")
    parser.add_argument("--seed", type=natural, default=0,
                        help="seed of every random choice: the same seed gives the same "
                             "model, bit for bit (default: 0)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where model.npz, the checkpoint and the history go "
                             "(default: runs/<preset>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out (with any number of "
                             "workers)")
    add_workers_argument(parser, "training: each takes its share of every batch, and "
                                 "together they train the same model as one process")


def run(args: argparse.Namespace) -> int | None:
    out = args.out or Path("runs") / (preset_name(args.arch) or "custom")
    try:
        world = workers_world(args, batch_size=args.batch_size)
        if isinstance(world, int):
            return world  # the exit status of the workers started under mpiexec
        result = train(
            args.arch, args.data, out=out, epochs=args.epochs, batch_size=args.batch_size,
            optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
            weight_decay=args.weight_decay, schedule=args.schedule,
            val_fraction=args.val_fraction, augment=args.augment, max_shift=args.max_shift,
            patience=args.patience, seed=args.seed, resume=args.resume,
            image_size=args.image_size,
            limit_train=args.limit_train, limit_test=args.limit_test, data_dir=args.data_dir,
            download=args.download, mirror=args.mirror, log=say,
            # The bar is for someone watching; a log gets each epoch's line on
            # stdout, and its stderr holds only errors.
            progress=sys.stderr.isatty() or os.environ.get(SHOW_PROGRESS) == "1",
            world=world)
    except KeyboardInterrupt:
        checkpoint = out / CHECKPOINT
        kept = (f"the last checkpoint is kept in {checkpoint} (continue with --resume)"
                if checkpoint.exists() else "no epoch had finished, so there is no checkpoint")
        print(f"{PROG}: interrupted; {kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if world.rank != 0:
        return None
    test, flip = result.test, result.test_flip_average
    print(f"test accuracy {test.accuracy:.2%} (loss {test.loss:.4f}) on {test.n} "
          f"test images, after {len(result.history)} epochs in "
          f"{result.metadata['train_seconds']:.0f} s")
    if flip:
        print(f"test accuracy {flip.accuracy:.2%} (loss {flip.loss:.4f}) "
              f"averaging each test image with its left-right flip (evaluate --flip-average)")
    print(f"model saved to {out / 'model.npz'}; history in {out / 'history.csv'} and "
          f"{out / 'history.json'}")


COMMAND = Command("train", "train a model and save it",
                  "Train a CNN on a dataset, report its test accuracy and save it.",
                  add_arguments, run)
