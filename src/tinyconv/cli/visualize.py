"""``tinyconv visualize``: PNG pictures of a model or of a training run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..app.report import HISTORY_FILE
from ..app.visualize import PICTURES, curves_picture, model_pictures, writable_directory
from ..data.splits import test_set
from ..models.serialize import load_model
from ..training.history import History
from .common import Command, add_data_arguments, data_location, model_or_run, natural, say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", type=Path, metavar="MODEL|RUN_DIR",
                        help="a model.npz file, or a training run directory (which holds "
                             "model.npz and history.json)")
    parser.add_argument("--what", choices=(*PICTURES, "all"), default="all",
                        help="the conv filters, the feature maps of one image, the "
                             "confusion matrix, misclassified test images, the learning "
                             "curves (from a run's history), or all of them (default: all)")
    image = parser.add_mutually_exclusive_group()
    image.add_argument("--image", type=Path, metavar="FILE",
                       help="show the feature maps of this picture (PNG or JPEG), "
                            "prepared as 'predict' prepares it")
    image.add_argument("--index", type=natural, default=0, metavar="N",
                       help="show the feature maps of test image N (default: 0)")
    add_data_arguments(parser, default=None)
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where the PNG files go (default: the model's directory)")


def run(args: argparse.Namespace) -> None:
    model_file = model_or_run(args.target)
    run_dir = model_file.parent
    wanted = PICTURES if args.what == "all" else (args.what,)
    out = writable_directory(args.out or run_dir)
    pictures = []
    if "curves" in wanted and (args.what == "curves" or (run_dir / HISTORY_FILE).is_file()):
        pictures.append(curves_picture(History.load(run_dir / HISTORY_FILE)))
    if set(wanted) != {"curves"}:
        loaded = load_model(model_file)
        test = None
        if {"confusion", "mistakes"} & set(wanted) or ("features" in wanted
                                                        and args.image is None):
            test = test_set(loaded, args.data, limit=args.limit_test, log=say,
                            **data_location(args))
        pictures += model_pictures(loaded, [name for name in wanted if name != "curves"],
                                   test=test, image_file=args.image, index=args.index)
    for picture in pictures:
        print(picture.save(out))


COMMAND = Command("visualize", "pictures of a model: filters, feature maps, mistakes, curves",
            "Draw PNG pictures of a saved model (its filters, the feature maps of one "
            "image, its confusion matrix and mistakes on the test set) or of a training "
            "run (its learning curves), and print the path of each file written.",
            add_arguments, run)
