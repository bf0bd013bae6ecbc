"""``tinyconv report``: one self-contained HTML page about a training run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..app.report import REPORT_FILE, load_run, report_html
from ..app.visualize import writable_directory
from ..data.splits import test_set
from ..fileio import atomic_write_text
from .common import Command, add_data_arguments, data_location, natural, say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="a training run directory (which holds model.npz and "
                             "history.json)")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help=f"the HTML file to write (default: RUN_DIR/{REPORT_FILE})")
    parser.add_argument("--index", type=natural, default=0, metavar="N",
                        help="the test image whose feature maps are shown (default: 0)")
    add_data_arguments(parser, default=None)


def run(args: argparse.Namespace) -> None:
    run = load_run(args.run_dir)
    out = args.out or args.run_dir / REPORT_FILE
    if out.is_dir():
        raise OSError(f"cannot write the report to {out}: it is a directory")
    writable_directory(out.parent)
    test = test_set(run.loaded, args.data, limit=args.limit_test, log=say,
                    **data_location(args))
    atomic_write_text(out, report_html(run, test, index=args.index))
    print(out)


COMMAND = Command("report", "one self-contained HTML page about a training run",
            "Write an HTML page (pictures embedded, no script, no network) with a run's "
            "final figures, layer table, curves, confusion matrix, filters, feature maps "
            "and mistakes.",
            add_arguments, run)
