"""``tinyconv summary``: the layer-by-layer table of a preset, a spec or a model file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..models.presets import PRESETS, resolve
from ..models.serialize import load_model
from ..models.spec import build, input_shape
from ..nn.summary import summary
from .common import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("arch", metavar="PRESET|SPEC|MODEL",
                        help=f"a preset ({', '.join(PRESETS)}), a spec, or a model.npz file")


def run(args: argparse.Namespace) -> None:
    path = Path(args.arch)
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except OSError:  # spec text longer than a file name may be
        is_file = is_dir = False
    if is_dir:
        raise ValueError(f"{path} is a directory, not a model file (.npz), a preset or a spec")
    if path.suffix == ".npz" or is_file:
        loaded = load_model(path)
        spec, model = loaded.spec, loaded.model
    else:
        spec = resolve(args.arch)
        model = build(spec, rng=0)
    print(spec)
    print(summary(model, input_shape(spec)))


COMMAND = Command("summary", "layer-by-layer table of a model",
            "Print one row per layer (output shape, parameters, multiply-adds) and "
            "the totals.",
            add_arguments, run)
