"""The run report: one self-contained HTML page about a training run.

``tinyconv report RUN_DIR`` writes ``RUN_DIR/report.html`` with the final
figures (test accuracy and loss, epochs, training time), the layer table of
:func:`tinyconv.nn.summary.summary_rows`, the learning curves, the confusion
matrix, the filters, the feature maps of one test image and a few mistakes,
all drawn by :mod:`tinyconv.app.visualize`.

Everything the page needs is inside it: the pictures are PNGs embedded as
base64 ``data:`` URIs and the style sheet is inline; it has no script and
loads nothing from the network, so it opens from disk in any browser and
can be mailed as one file.

A run directory is what ``tinyconv train --out DIR`` writes: ``model.npz``
(:mod:`tinyconv.models.serialize`) and ``history.json`` (:class:`tinyconv.training.train.History`).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from ..models.serialize import MODEL_FILE, LoadedModel, load_model
from ..models.spec import input_shape
from ..nn.summary import summary_rows, summary_totals
from ..training.evaluation import Evaluation, evaluate
from ..training.history import History
from .visualize import (Picture, confusion_picture, curves_picture, feature_pictures,
                        filter_pictures, model_mistakes)

__all__ = ["Run", "load_run", "report_html", "MODEL_FILE", "HISTORY_FILE", "REPORT_FILE"]

HISTORY_FILE, REPORT_FILE = "history.json", "report.html"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 980px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
code { background: #f3f3f3; padding: 0 0.25em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #e3e3e3; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.figures { display: flex; flex-wrap: wrap; gap: 0.8em; }
.figure { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 1em; min-width: 8em; }
.figure .value { font-size: 1.5em; font-weight: bold; }
.figure .label { color: #555; font-size: 0.9em; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
"""


@dataclass
class Run:
    """A training run directory's model and history."""

    path: Path
    loaded: LoadedModel
    history: History


def load_run(run_dir) -> Run:
    """Read ``model.npz`` and ``history.json`` from the run directory ``run_dir``.

    Raises ValueError saying what is missing when ``run_dir`` is not a run
    directory, and :class:`~tinyconv.models.serialize.ModelFileError` when its
    model file is not a usable model.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory: expected a training run directory "
                         f"(what 'tinyconv train --out DIR' writes)")
    missing = [name for name in (MODEL_FILE, HISTORY_FILE) if not (path / name).is_file()]
    if missing:
        raise ValueError(f"{path} is not a finished training run: it has no "
                         f"{' and no '.join(missing)} (train one with: tinyconv train "
                         f"--out {path})")
    return Run(path, load_model(path / MODEL_FILE), History.load(path / HISTORY_FILE))


def _image(picture: Picture) -> str:
    """``picture`` as an <img> whose source is the PNG itself, base64-encoded."""
    data = base64.b64encode(picture.png).decode("ascii")
    width, height = picture.size
    return (f'<img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
            f'alt="{html.escape(picture.title)}">')


def _figures(run: Run, result: Evaluation, test_name: str) -> str:
    """The headline numbers as boxes: accuracy, loss, images, epochs, time."""
    metadata = run.loaded.metadata
    seconds = metadata.get("train_seconds", sum(row["seconds"] for row in run.history))
    boxes = [(f"{result.accuracy:.2%}", f"test accuracy on {result.n:,} images"),
             (f"{result.loss:.4f}", "test loss (cross-entropy)"),
             (f"{len(run.history)}", "epochs trained"),
             (f"{seconds:,.1f} s", "training time")]
    if "test_accuracy" in metadata and "test_images" in metadata:
        boxes.append((f"{metadata['test_accuracy']:.2%}",
                      f"test accuracy measured after training, on "
                      f"{metadata['test_images']:,} images"))
    cells = "".join(f'<div class="figure"><div class="value">{html.escape(value)}</div>'
                    f'<div class="label">{html.escape(label)}</div></div>'
                    for value, label in boxes)
    return (f'<div class="figures">{cells}</div>\n<p>Test images: '
            f'<code>{html.escape(test_name)}</code>.</p>')


def _settings(run: Run) -> str:
    """The run's settings from the model's metadata, as a two-column table."""
    rows = [("spec", run.loaded.spec)]
    rows += [(key, metadata_value) for key, metadata_value in sorted(run.loaded.metadata.items())
             if not key.startswith("test_")]
    cells = "".join(f"<tr><th>{html.escape(str(key))}</th>"
                    f"<td><code>{html.escape(str(value))}</code></td></tr>"
                    for key, value in rows)
    return f"<table>{cells}</table>"


def _summary_table(run: Run) -> str:
    """The layer table of :func:`tinyconv.nn.summary.summary_rows` in HTML."""
    shape = input_shape(run.loaded.spec)
    rows = summary_rows(run.loaded.model, shape)
    totals = summary_totals(run.loaded.model, shape)
    body = [("input", str(shape), 0, 0)]
    body += [(f"{row.index}: {row.layer}", str(row.output_shape), row.params, row.macs)
             for row in rows]
    body.append(("total", "", totals.params, totals.macs))
    cells = "".join(f"<tr><td>{html.escape(name)}</td><td>{html.escape(out)}</td>"
                    f'<td class="number">{params:,}</td><td class="number">{macs:,}</td></tr>'
                    for name, out, params, macs in body)
    return ("<table><tr><th>Layer</th><th>Output shape (C, H, W)</th><th>Parameters</th>"
            f"<th>Multiply-adds per image</th></tr>{cells}</table>")


def report_html(run: Run, test, *, index: int = 0, mistakes: int = 12) -> str:
    """The report page for ``run``, evaluated on the Dataset ``test``.

    ``index`` picks the test image whose feature maps are shown; ``mistakes``
    caps the misclassified images shown. Raises ValueError when ``test``'s
    classes are not the model's or ``index`` is out of range.
    """
    loaded = run.loaded
    if list(test.classes) != list(loaded.classes):
        raise ValueError(f"the model knows the classes {loaded.classes}, but {test.name} has "
                         f"{test.classes}")
    if not 0 <= index < len(test):
        raise ValueError(f"image index {index} is out of range: the test set has "
                         f"{len(test)} images (0..{len(test) - 1})")
    result = evaluate(loaded.model, test, loaded.normalization)
    label = f"test image {index} ({loaded.classes[test.labels[index]]})"
    missed = model_mistakes(loaded.model, loaded.normalization, test, result.predictions,
                            loaded.classes, limit=mistakes)
    sections = [
        ("Final figures", _figures(run, result, test.name)),
        ("Settings", _settings(run)),
        ("Layers", _summary_table(run)),
        ("Learning curves", _image(curves_picture(run.history))),
        ("Confusion matrix", _image(confusion_picture(result.confusion, loaded.classes))),
        ("Filters", "<p>Each conv layer's weights; a filter responds most where the "
                    "image looks like its light parts and unlike its dark ones.</p>"
         + "".join(_image(picture) for picture in filter_pictures(loaded.model))),
        ("Feature maps", f"<p>What each conv and pooling layer makes of {html.escape(label)}."
                         "</p>" + "".join(_image(picture) for picture in feature_pictures(
                             loaded.model, test.images[index], loaded.normalization, label))),
        ("Mistakes", _image(missed) if missed else
         "<p>The model classified every test image correctly.</p>"),
    ]
    title = f"tinyconv run {run.path.resolve().name}"
    body = "\n".join(f"<h2>{html.escape(name)}</h2>\n{content}" for name, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n<p>Run directory <code>"
            f"{html.escape(str(run.path))}</code>, model <code>{html.escape(loaded.spec)}"
            f"</code>.</p>\n{body}\n</body>\n</html>\n")
