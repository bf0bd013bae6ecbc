"""``tinyconv export``: a saved model as an ONNX file, for onnxruntime, Netron and the rest."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..interop.onnx_export import export_onnx
from ..interop.onnx_format import (CLASSES_KEY, INPUT_KEY, INPUT_NAME, IR_VERSION, OPSET,
                                   OUTPUT_NAME)
from .common import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL|RUN_DIR",
                        help="a model.npz file, or a training run directory (which holds "
                             "model.npz)")
    parser.add_argument("out", type=Path, metavar="OUT.onnx", help="the ONNX file to write")


def run(args: argparse.Namespace) -> None:
    proto = export_onnx(args.model, args.out)
    properties = {prop.key: prop.value for prop in proto.metadata_props}
    image = json.loads(properties[INPUT_KEY])
    classes = json.loads(properties[CLASSES_KEY])
    print(f"wrote {args.out} (ONNX opset {OPSET}, IR version {IR_VERSION})")
    numbers = lambda values: ", ".join(f"{value:.4f}" for value in values)  # noqa: E731
    print(f"input '{INPUT_NAME}': float32 (N, {image['channels']}, {image['height']}, "
          f"{image['width']}), {image['preparation']}, mean [{numbers(image['mean'])}], "
          f"std [{numbers(image['std'])}]")
    print(f"output '{OUTPUT_NAME}': (N, {len(classes)}), the scores before softmax of "
          f"{', '.join(classes)}")


COMMAND = Command("export", "write a saved model as an ONNX file",
                  "Write a saved model as an ONNX file (opset 17, batch size free) that "
                  "onnxruntime and other runtimes run and Netron shows; its metadata holds "
                  "the class names and how to prepare an image.",
                  add_arguments, run)
