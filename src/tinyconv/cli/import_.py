"""``tinyconv import``: an ONNX model (from PyTorch, say) as a tinyconv model file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..interop.onnx_import import import_onnx
from .common import Command


def _names(text: str) -> list[str]:
    """An argparse type: comma-separated class names, none of them empty."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected names separated by commas, such as "
                                         f"'cat,dog', got {text!r}")
    return names


def _numbers(text: str) -> list[float]:
    """An argparse type: comma-separated numbers, one per channel."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, one per "
                                         f"channel, such as '0.5' or '0.485,0.456,0.406', "
                                         f"got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL.onnx",
                        help="the ONNX file (its external data files beside it)")
    parser.add_argument("out", type=Path, metavar="OUT.npz",
                        help="the tinyconv model file to write")
    parser.add_argument("--classes", type=_names, metavar="A,B,...",
                        help="the class names, one per output, in order (default: those in "
                             "the file's metadata, which a tinyconv export holds; else "
                             "0, 1, 2...)")
    parser.add_argument("--mean", type=_numbers, metavar="M[,M...]",
                        help="the mean the images were normalised with, per channel, in "
                             "pixels scaled to [0, 1] (default: the file's, else 0)")
    parser.add_argument("--std", type=_numbers, metavar="S[,S...]",
                        help="the standard deviation likewise (default: the file's, else 1)")


def run(args: argparse.Namespace) -> None:
    loaded = import_onnx(args.model, args.out, classes=args.classes, mean=args.mean,
                         std=args.std)
    n_params = sum(p.size for p in loaded.model.parameters())
    print(loaded.spec)
    print(f"wrote {args.out} ({n_params:,} parameters); classes: {', '.join(loaded.classes)}")
    if args.classes is None and loaded.classes == [str(k) for k in range(len(loaded.classes))]:
        print("the file names no classes: they are numbered; give their names with --classes")


COMMAND = Command("import", "read an ONNX model (from PyTorch, say) as a tinyconv model",
                  "Read an ONNX model made of the layers tinyconv has (Conv, MaxPool, "
                  "AveragePool, Gemm or MatMul+Add, Relu, Sigmoid, Tanh, Flatten or "
                  "Reshape, BatchNormalization, Dropout), as PyTorch's exporter writes "
                  "them, and save it as a tinyconv model file that every command takes. A "
                  "graph tinyconv cannot represent is refused, naming the node, before "
                  "anything is written.",
                  add_arguments, run)
