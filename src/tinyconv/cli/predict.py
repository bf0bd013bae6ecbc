"""``tinyconv predict``: classify picture files with a saved model."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..data.images import prepare_image
from ..models.serialize import load_model
from ..training.evaluation import predict_proba
from .common import Command, add_flip_average_argument, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL", help="a model.npz file")
    parser.add_argument("images", type=Path, nargs="+", metavar="IMAGE",
                        help="PNG or JPEG files")
    parser.add_argument("--top", type=positive_int, default=3, metavar="K",
                        help="how many of the likeliest classes to show (default: 3)")
    add_flip_average_argument(parser)


def run(args: argparse.Namespace) -> None:
    loaded = load_model(args.model)
    channels, height, width = loaded.input_shape
    # Prepare every picture first, so that a bad file stops the command
    # before it prints anything.
    prepared = [prepare_image(path, (height, width), channels) for path in args.images]
    images = np.stack([image for image, _ in prepared])
    probabilities = predict_proba(loaded.model, loaded.normalization(images),
                                  flip_average=args.flip_average)
    top = min(args.top, len(loaded.classes))
    for path, (_, inverted), row in zip(args.images, prepared, probabilities):
        note = " (light background: inverted)" if inverted else ""
        print(f"{path}{note}")
        for k in np.argsort(-row, kind="stable")[:top]:
            print(f"  {row[k]:7.2%}  {loaded.classes[k]}")


COMMAND = Command("predict", "classify image files with a saved model",
            "Classify pictures. Each is prepared the way the training images were: "
            "made grayscale, fitted into 28x28 with its aspect ratio kept, and "
            "inverted (light on dark) when its background is light.",
            add_arguments, run)
