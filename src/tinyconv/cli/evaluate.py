"""``tinyconv evaluate``: a saved model's accuracy, loss and confusion matrix."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..data.splits import test_set
from ..models.serialize import load_model
from ..training.evaluation import confusion_table, evaluate
from .common import (Command, add_data_arguments, add_flip_average_argument, data_location,
                     say)
from .workers import add_workers_argument, workers_world


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL", help="a model.npz file")
    add_data_arguments(parser, default=None)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (accuracy, loss, n, confusion, classes, "
                             "flip_average)")
    add_flip_average_argument(parser)
    add_workers_argument(parser, "evaluation: each takes its share of the test images")


def run(args: argparse.Namespace) -> int | None:
    world = workers_world(args)
    if isinstance(world, int):
        return world  # the exit status of the workers started under mpiexec
    loaded = load_model(args.model)
    test = test_set(loaded, args.data, limit=args.limit_test,
                    log=say if world.rank == 0 else (lambda *_: None), **data_location(args))
    result = evaluate(loaded.model, test, loaded.normalization, flip_average=args.flip_average,
                      world=world)
    if world.rank != 0:
        return None
    if args.json:
        print(json.dumps({"model": str(args.model), "data": test.name,
                          "accuracy": result.accuracy, "loss": result.loss, "n": result.n,
                          "flip_average": args.flip_average, "classes": loaded.classes,
                          "confusion": np.asarray(result.confusion).tolist()}))
        return
    averaged = ", each averaged with its left-right flip" if args.flip_average else ""
    print(f"{args.model} on {result.n} test images of {test.name}{averaged}: "
          f"accuracy {result.accuracy:.2%}, loss {result.loss:.4f}")
    print()
    print(confusion_table(result.confusion, loaded.classes))


COMMAND = Command("evaluate", "accuracy, loss and confusion matrix of a saved model",
            "Evaluate a saved model on a test set.",
            add_arguments, run)
