"""``tinyconv explore``: one interactive page of a network thinking, forward and backward."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..app.explore import DEFAULT_IMAGES, explore_html, image_files, pick_test_images
from ..data.datasets import DataNotFound
from ..data.splits import test_set
from ..fileio import atomic_write_text
from ..models.serialize import load_model
from .common import Command, model_or_run, say

#: The page written next to the model unless --out says otherwise.
EXPLORE_FILE = "explore.html"
#: How many test images are classified to find right and wrong ones to show.
SCAN_TEST_IMAGES = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", type=Path, metavar="MODEL|RUN_DIR",
                        help="a model.npz file, or a training run directory that holds one")
    parser.add_argument("images", type=Path, nargs="*", metavar="IMAGE",
                        help="PNG or JPEG files, prepared as 'predict' prepares them "
                             f"(default: {DEFAULT_IMAGES} test images of the data the model "
                             "was trained on, some classified right and some wrong)")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help=f"the HTML file to write (default: {EXPLORE_FILE} next to the "
                             "model)")
    parser.add_argument("--data", metavar="NAME|DIR",
                        help="where the test images come from when no IMAGE is given "
                             "(default: the data the model was trained on); never "
                             "downloaded")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="look for the dataset files here first, then in "
                             "$TINYCONV_DATA, ~/.cache/tinyconv and /usr/share/datasets")


def run(args: argparse.Namespace) -> None:
    model_file = model_or_run(args.target)
    out = args.out or model_file.parent / EXPLORE_FILE
    # Checked first, so that a bad path stops the command before any work.
    if out.is_dir():
        raise OSError(f"cannot write the page to {out}: it is a directory")
    if not out.parent.is_dir():
        raise OSError(f"cannot write the page to {out}: the directory {out.parent} does "
                      f"not exist")
    loaded = load_model(model_file)
    if args.images:
        images = image_files(args.images, loaded)
    else:
        try:
            test = test_set(loaded, args.data, limit=SCAN_TEST_IMAGES, log=say,
                            data_dir=args.data_dir, download=False, mirror=None)
        except DataNotFound as error:
            raise DataNotFound(f"no IMAGE was given, so explore shows test images, but they "
                               f"were not found: {error} Give IMAGE files, or --data-dir."
                               ) from None
        images = pick_test_images(loaded, test)
    atomic_write_text(out, explore_html(loaded, images, title=str(model_file)))
    print(out)


COMMAND = Command("explore", "one interactive HTML page of the network thinking",
            "Write one self-contained HTML page (no network, no server) that shows a "
            "model's every feature map and sensitivity map for a few images, and, for "
            "any value clicked, the tutorial's formula with the real numbers: forward "
            "(eq. 4.1-4.4, pooling, batch norm, fully connected, softmax), backward "
            "(eq. 5.1-5.3, pooling, activations) and every weight gradient.",
            add_arguments, run)
