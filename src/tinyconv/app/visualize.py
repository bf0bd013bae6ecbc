"""Pictures of a network: its filters, its feature maps, its mistakes, its learning curves.

Each function draws one PNG and returns it as a :class:`Picture`: the PNG's
bytes, its size, and the pixel box of every panel in it, so a caller (and a
test) knows exactly what was drawn where. ``picture.save(directory)`` writes
it atomically.

- :func:`filter_pictures`: the weights of every conv layer (F, C, KH, KW),
  one panel per filter, or per filter and input channel when C > 1;
- :func:`feature_pictures`: what every conv layer (after its activation, the
  tutorial's a = f(net)) and every pooling layer makes of one image;
- :func:`confusion_picture`: the confusion matrix with its counts;
- :func:`mistakes_picture`: misclassified images with true and predicted class;
- :func:`curves_picture`: loss and accuracy per epoch, training and validation.

Grids of small images are laid out in pixels and placed with
``Figure.figimage``, which copies pixels without resampling: each weight or
activation becomes a ``zoom`` x ``zoom`` block of one gray level, black for
the layer's lowest value and white for its highest (one scale per picture,
so strong and weak filters can be compared). Matplotlib writes the text and
draws the plots; it runs on its Agg backend through ``Figure`` objects
only, never pyplot, so no state is shared between calls.

Matplotlib is an optional dependency (``pip install "tinyconv[images]"``),
imported only when a picture is drawn.
"""

from __future__ import annotations

import io
import math
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_bytes
from ..data.images import prepare_image
from ..nn.layers import AvgPool2d, Conv2d, MaxPool2d, Module, ReLU, Sigmoid, Tanh
from ..models.spec import input_shape
from ..training.evaluation import evaluate, predict_proba

__all__ = ["PICTURES", "MODEL_PICTURES", "Picture", "model_pictures", "filter_pictures",
           "feature_maps", "feature_pictures", "confusion_picture", "mistakes_picture",
           "model_mistakes", "curves_picture", "gray_levels", "require_matplotlib",
           "writable_directory"]

DPI = 100
MARGIN = 12  # px around the whole picture
GAP = 6  # px between panels
TITLE_H = 30  # px for the title line; the legend's lines follow it
LINE_H = 13  # px per line of 8-point text at 100 dpi
LEGEND_CHAR_W = 6.2  # px per character of 8.5-point text, a generous average
MIN_WIDTH = 480  # px, so that the title fits above a narrow grid
BACKGROUND = "white"

#: The pictures of a model (:func:`model_pictures`), then those of a run's history.
MODEL_PICTURES = ("filters", "features", "confusion", "mistakes")
PICTURES = MODEL_PICTURES + ("curves",)

_ACTIVATIONS = (ReLU, Sigmoid, Tanh)
_POOLS = (MaxPool2d, AvgPool2d)


@dataclass(frozen=True)
class Picture:
    """A drawn PNG and where its panels are.

    ``size`` is (width, height) in pixels; ``grid`` is (rows, columns) of
    panels; ``boxes[k]`` is panel k's (left, top, right, bottom) in pixels,
    right and bottom exclusive, in reading order.
    """

    name: str
    title: str
    png: bytes
    size: tuple[int, int]
    grid: tuple[int, int]
    boxes: tuple[tuple[int, int, int, int], ...]

    def save(self, directory) -> Path:
        """Write ``<directory>/<name>.png`` atomically and return its path."""
        path = Path(directory) / f"{self.name}.png"
        atomic_write_bytes(path, self.png)
        return path


def require_matplotlib():
    """Import matplotlib's ``Figure`` and Agg canvas, or say how to install matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError('drawing pictures needs matplotlib, which is not installed; '
                          'install it with: pip install "tinyconv[images]"') from None
    return Figure, FigureCanvasAgg


def writable_directory(path) -> Path:
    """Make sure ``path`` is a directory pictures can be written to; return it.

    Creates it if needed, then creates and removes a temporary file in it:
    permission bits do not tell, since root may write anywhere except where
    the file system itself refuses (/proc, a read-only mount). Raises an
    OSError that names the directory when it cannot be created or written
    to, before anything is drawn.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OSError(f"cannot write to {path}: it is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"cannot write to {path}: {error.strerror or error}") from None
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise OSError(f"cannot write to {path}: a file cannot be created there "
                      f"({error.strerror or error})") from None
    return path


def _new_figure(width: int, height: int):
    Figure, FigureCanvasAgg = require_matplotlib()
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor=BACKGROUND)
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor=BACKGROUND)
    return buffer.getvalue()


def _text(figure, x: float, y: float, text: str, **options) -> None:
    """Write ``text`` at pixel (x, y), measured from the top left corner."""
    width, height = figure.canvas.get_width_height()
    figure.text(x / width, 1 - y / height, text, **options)


def _legend_lines(legend: str, width: int) -> list[str]:
    """``legend`` wrapped to lines that fit a picture ``width`` pixels wide."""
    return textwrap.wrap(legend, int((width - 2 * MARGIN) / LEGEND_CHAR_W)) or [""]


def _header_height(lines: list[str]) -> int:
    return TITLE_H + LINE_H * len(lines) + 8


def _draw_header(figure, title: str, lines: list[str]) -> None:
    _text(figure, MARGIN, 8, title, fontsize=11, weight="bold", va="top")
    for k, line in enumerate(lines):
        _text(figure, MARGIN, TITLE_H + k * LINE_H, line, fontsize=8.5, va="top",
              color="#333333")


def gray_levels(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` as uint8 gray: ``low`` -> 0 (black), ``high`` -> 255 (white).

    When ``high == low`` there is nothing to tell apart: everything is mid gray.
    """
    values = np.asarray(values, dtype=np.float64)
    if high <= low:
        return np.full(values.shape, 128, np.uint8)
    return np.round((np.clip(values, low, high) - low) / (high - low) * 255).astype(np.uint8)


def _grid_picture(name: str, title: str, legend: str, tiles: list[np.ndarray], cols: int, *,
                  target: int, captions=None, row_labels=None, col_labels=None,
                  min_cell: int = 0) -> Picture:
    """Lay out equally sized uint8 tiles, (h, w) gray or (h, w, 3) colour, in a grid.

    Each tile is enlarged by a whole factor ``zoom`` so that its longer side
    is about ``target`` pixels; ``captions`` (one string per tile, lines
    split by ``\\n``) go under the tiles, ``row_labels`` left of each row,
    ``col_labels`` above each column. A cell is at least ``min_cell`` wide.
    """
    h, w = tiles[0].shape[:2]
    zoom = max(1, target // max(h, w))
    tile_w, tile_h = w * zoom, h * zoom
    rows = math.ceil(len(tiles) / cols)
    cell_w = max(tile_w, min_cell)
    caption_h = LINE_H * max(c.count("\n") + 1 for c in captions) + 4 if captions else 0
    label_w = 8 + 7 * max(len(label) for label in row_labels) if row_labels else 0
    col_label_h = LINE_H + 4 if col_labels else 0
    grid_left = MARGIN + label_w
    width = max(grid_left + cols * cell_w + (cols - 1) * GAP + MARGIN, MIN_WIDTH)
    lines = _legend_lines(legend, width)
    grid_top = _header_height(lines) + col_label_h
    height = grid_top + rows * (tile_h + caption_h) + (rows - 1) * GAP + MARGIN

    figure = _new_figure(width, height)
    _draw_header(figure, title, lines)
    boxes = []
    for k, tile in enumerate(tiles):
        row, col = divmod(k, cols)
        cell_left = grid_left + col * (cell_w + GAP)
        left = cell_left + (cell_w - tile_w) // 2
        top = grid_top + row * (tile_h + caption_h + GAP)
        pixels = np.repeat(np.repeat(tile, zoom, axis=0), zoom, axis=1)
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        figure.figimage(pixels, xo=left, yo=height - top - tile_h, origin="upper")
        boxes.append((left, top, left + tile_w, top + tile_h))
        if captions:
            _text(figure, cell_left + cell_w / 2, top + tile_h + 2, captions[k], fontsize=8,
                  ha="center", va="top", linespacing=1.2)
        if row_labels and col == 0:
            _text(figure, grid_left - 6, top + tile_h / 2, row_labels[row], fontsize=8,
                  ha="right", va="center")
        if col_labels and row == 0:
            _text(figure, cell_left + cell_w / 2, grid_top - 3, col_labels[col], fontsize=8,
                  ha="center", va="bottom")
    return Picture(name, title, _png(figure), (width, height), (rows, cols), tuple(boxes))


def _conv_layers(model: Module) -> list[tuple[int, Conv2d]]:
    return [(index, layer) for index, layer in enumerate(model) if isinstance(layer, Conv2d)]


def _describe(layer: Module) -> str:
    """``Conv2d(1, 3, 5x5, pad 2)``-style short name of a conv or pooling layer."""
    kh, kw = layer.kernel_size
    text = f"{kh}x{kw}"
    if layer.stride != (1, 1) and layer.stride != layer.kernel_size:
        text += f", stride {layer.stride[0]}"
    if layer.padding != (0, 0):
        text += f", pad {layer.padding[0]}"
    if isinstance(layer, Conv2d):
        return f"Conv2d({layer.in_channels} -> {layer.out_channels}, {text})"
    return f"{type(layer).__name__}({text})"


def filter_pictures(model: Module) -> list[Picture]:
    """One picture per conv layer of ``model`` (a Sequential), of its weights.

    A layer's weight is (F, C, KH, KW). With C == 1 each filter is one
    panel, eight to a row; with C > 1 each filter is a row and each input
    channel a column (F x C panels), because a filter sums one KH x KW
    slice per input channel (eq. 4.4). Gray levels share one scale per
    layer, symmetric about 0: mid gray is 0, white the largest |weight|.
    """
    pictures = []
    for index, layer in _conv_layers(model):
        weight = layer.weight.data
        filters, channels = weight.shape[:2]
        limit = float(np.abs(weight).max())
        levels = gray_levels(weight, -limit, limit)
        title = f"Filters of layer {index}: {_describe(layer)}"
        legend = (f"weights: black = {-limit:.3g}, mid gray = 0, white = {limit:.3g} "
                  f"(one scale for the layer)")
        if channels == 1:
            tiles = [levels[f, 0] for f in range(filters)]
            pictures.append(_grid_picture(
                f"filters-layer{index}", title, legend, tiles, min(filters, 8), target=56,
                captions=[f"filter {f}" for f in range(filters)]))
        else:
            tiles = [levels[f, c] for f in range(filters) for c in range(channels)]
            pictures.append(_grid_picture(
                f"filters-layer{index}", title, legend + "; rows: filters, columns: "
                "input channels", tiles, channels, target=40 if channels > 8 else 56,
                row_labels=[f"filter {f}" for f in range(filters)],
                col_labels=[f"in {c}" for c in range(channels)]))
    return pictures


def feature_maps(model: Module, x) -> list[tuple[int, str, np.ndarray]]:
    """The feature maps of every conv and pooling layer of ``model`` for one image.

    ``x`` is one normalised image (1, C, H, W). A conv layer's maps are taken
    after the activation that follows it, a = f(net), as the tutorial draws
    them. Returns ``(layer index, description, maps (C', H', W'))`` in order.
    The model runs in evaluation mode; each module's mode is restored.
    """
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"feature_maps takes one image of shape (1, C, H, W), got {x.shape}")
    with model.evaluating():
        layers, found = list(model), []
        for index, layer in enumerate(layers):
            x = layer.forward(x)
            after_conv = index > 0 and isinstance(layers[index - 1], Conv2d)
            if isinstance(layer, _ACTIVATIONS) and after_conv:
                found.append((index - 1, f"{_describe(layers[index - 1])} + "
                                         f"{type(layer).__name__}", x[0]))
            elif isinstance(layer, Conv2d):
                followed = index + 1 < len(layers) and isinstance(layers[index + 1], _ACTIVATIONS)
                if not followed:
                    found.append((index, _describe(layer), x[0]))
            elif isinstance(layer, _POOLS):
                found.append((index, _describe(layer), x[0]))
        return found


def _image_tile(image: np.ndarray) -> np.ndarray:
    """A uint8 image (C, H, W), C = 1 or 3, as a tile (H, W) or (H, W, 3)."""
    return image[0] if image.shape[0] == 1 else np.ascontiguousarray(image.transpose(1, 2, 0))


def feature_pictures(model: Module, image, normalization, label: str = "") -> list[Picture]:
    """The input image, then one picture per conv or pooling layer of its feature maps.

    ``image`` is uint8 (C, H, W) as the dataset stores it; ``normalization``
    prepares it as in training. ``label`` says which image it is (it goes in
    the titles). Each layer's maps share one gray scale, black its lowest
    value and white its highest, so a map that stays black is one whose
    filter found nothing in this image.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be uint8 (C, H, W) with 1 or 3 channels, "
                         f"got {image.dtype} of shape {image.shape}")
    about = f" for {label}" if label else ""
    pictures = [_grid_picture("features-input", f"Input image{about}",
                              f"{image.shape[1]}x{image.shape[2]} pixels, as the network "
                              f"sees them before normalisation", [_image_tile(image)], 1,
                              target=112)]
    for index, name, maps in feature_maps(model, normalization(image[None])):
        low, high = float(maps.min()), float(maps.max())
        count, h, w = maps.shape
        tiles = list(gray_levels(maps, low, high))
        pictures.append(_grid_picture(
            f"features-layer{index}", f"Feature maps of layer {index}{about}",
            f"{name}: {count} maps of {h}x{w}; black = {low:.3g}, white = {high:.3g} "
            f"(one scale for the layer)", tiles, min(count, 8), target=84 if h > 10 else 56,
            captions=[f"map {k}" for k in range(count)]))
    return pictures


def confusion_picture(confusion, classes) -> Picture:
    """The confusion matrix: row i true class, column j predicted, each cell's count.

    Cells are shaded by their share of the row (the true class's images),
    so a class with few images shows its errors as clearly as a large one.
    """
    confusion = np.asarray(confusion)
    k = len(classes)
    if confusion.shape != (k, k) or confusion.dtype.kind not in "iu":
        raise ValueError(f"confusion must be integer counts of shape ({k}, {k}) for {k} "
                         f"classes, got {confusion.dtype} of shape {confusion.shape}")
    cell = 44 if k <= 12 else max(16, 528 // k)
    name_w = 8 + 7 * max(len(name) for name in classes)
    left = MARGIN + name_w + LINE_H + 6
    width = max(left + k * cell + MARGIN, MIN_WIDTH)
    totals = confusion.sum(axis=1, keepdims=True)
    shares = confusion / np.maximum(totals, 1)
    n, correct = int(confusion.sum()), int(np.trace(confusion))
    accuracy = f"{correct / n:.2%}" if n else "-"
    lines = _legend_lines(f"rows: true class, columns: predicted class; {correct} of {n} "
                          f"right ({accuracy}); shade: the cell's share of its row", width)
    top = _header_height(lines) + 4
    height = top + k * cell + name_w + LINE_H + 10

    figure = _new_figure(width, height)
    title = "Confusion matrix"
    _draw_header(figure, title, lines)
    axes = figure.add_axes((left / width, 1 - (top + k * cell) / height, k * cell / width,
                            k * cell / height))
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    for i in range(k):
        for j in range(k):
            axes.text(j, i, str(confusion[i, j]), ha="center", va="center",
                      fontsize=8 if cell >= 30 else 6,
                      color="white" if shares[i, j] > 0.5 else "black")
    axes.set_xticks(range(k), classes, rotation=90, fontsize=8)
    axes.set_yticks(range(k), classes, fontsize=8)
    axes.set_xlabel("predicted class", fontsize=9)
    axes.set_ylabel("true class", fontsize=9)
    boxes = tuple((left + j * cell, top + i * cell, left + (j + 1) * cell, top + (i + 1) * cell)
                  for i in range(k) for j in range(k))
    return Picture("confusion", title, _png(figure), (width, height), (k, k), boxes)


def mistakes_picture(images, labels, predicted, probabilities, classes,
                     limit: int = 24) -> Picture:
    """A grid of misclassified images, each captioned with its true and predicted class.

    ``images`` uint8 (N, C, H, W), ``labels`` and ``predicted`` (N,) class
    indices, ``probabilities`` (N,) the model's probability for its
    prediction. The first ``limit`` images whose prediction is wrong are
    shown, in the given order. Raises ValueError when there is none.
    """
    images, labels, predicted = np.asarray(images), np.asarray(labels), np.asarray(predicted)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if images.ndim != 4 or not labels.shape == predicted.shape == probabilities.shape \
            == (len(images),):
        raise ValueError(f"need images (N, C, H, W) and labels, predictions and "
                         f"probabilities of shape (N,); got {images.shape}, {labels.shape}, "
                         f"{predicted.shape} and {probabilities.shape}")
    wrong = np.flatnonzero(labels != predicted)[:limit]
    if len(wrong) == 0:
        raise ValueError(f"no misclassified image among the {len(images)} given: "
                         f"nothing to draw")
    captions = [f"true: {classes[labels[i]]}\npred: {classes[predicted[i]]} "
                f"({probabilities[i]:.0%})" for i in wrong]
    title = "Mistakes"
    legend = (f"{len(wrong)} misclassified images, each with its true class and the "
              f"predicted one, with the model's probability for it")
    return _grid_picture("mistakes", title, legend, [_image_tile(images[i]) for i in wrong],
                         min(len(wrong), 6), target=84, captions=captions, min_cell=140)


def model_mistakes(model: Module, normalization, data, predicted, classes,
                   limit: int = 24) -> Picture | None:
    """:func:`mistakes_picture` for ``data`` that ``model`` predicted ``predicted`` (N,).

    ``data`` is a Dataset or an (images, labels) pair. Only the first
    ``limit`` misclassified images go through the model again, for their
    probabilities. Returns None when the model got every image right.
    """
    images, labels = (data.images, data.labels) if hasattr(data, "images") else data
    predicted = np.asarray(predicted)
    wrong = np.flatnonzero(np.asarray(labels) != predicted)[:limit]
    if len(wrong) == 0:
        return None
    probabilities = predict_proba(model, normalization(images[wrong]))
    chosen = probabilities[np.arange(len(wrong)), predicted[wrong]]
    return mistakes_picture(images[wrong], np.asarray(labels)[wrong], predicted[wrong], chosen,
                            classes, limit)


def curves_picture(history) -> Picture:
    """Loss and accuracy per epoch, training and (when there is one) validation.

    ``history`` is a list of rows as :class:`tinyconv.training.train.History` holds
    them (``epoch``, ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``).
    Two panels: loss on the left, accuracy on the right.
    """
    rows = list(history)
    if not rows:
        raise ValueError("the history has no epochs: nothing to draw")
    epochs = [row["epoch"] for row in rows]
    width, panel_w, panel_h, lefts = 900, 360, 260, (70, 510)
    lines = _legend_lines("training: measured during each epoch; validation: after it, "
                          "on held-out images", width)
    top = _header_height(lines) + 10
    height = top + panel_h + 60
    figure = _new_figure(width, height)
    title = f"Learning curves ({len(rows)} epochs)"
    _draw_header(figure, title, lines)
    boxes = []
    for left, key, label, scale in ((lefts[0], "loss", "cross-entropy loss", 1),
                                    (lefts[1], "acc", "accuracy (%)", 100)):
        axes = figure.add_axes((left / width, 1 - (top + panel_h) / height, panel_w / width,
                                panel_h / height))
        axes.plot(epochs, [row[f"train_{key}"] * scale for row in rows], "o-",
                  color="#1f77b4", label="training")
        validated = [row for row in rows if row[f"val_{key}"] is not None]
        if validated:
            axes.plot([row["epoch"] for row in validated],
                      [row[f"val_{key}"] * scale for row in validated], "s--",
                      color="#d62728", label="validation")
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        boxes.append((left, top, left + panel_w, top + panel_h))
    return Picture("curves", title, _png(figure), (width, height), (1, 2), tuple(boxes))


def model_pictures(loaded, what, *, test=None, image_file=None, index: int = 0,
                   mistakes: int = 24) -> list[Picture]:
    """The pictures named in ``what`` (from :data:`MODEL_PICTURES`) of ``loaded``,
    a :class:`~tinyconv.models.serialize.LoadedModel`.

    "features" shows the picture file ``image_file`` (prepared like
    ``tinyconv predict`` prepares it) or else test image ``index``;
    "confusion" and "mistakes" evaluate the model on the Dataset ``test``,
    which these and a feature map by index need. Raises ValueError for an
    index out of range, before anything is drawn.
    """
    unknown = set(what) - set(MODEL_PICTURES)
    if unknown:
        raise ValueError(f"model pictures are {MODEL_PICTURES}, got {sorted(unknown)}")
    by_index = "features" in what and image_file is None
    if (by_index or {"confusion", "mistakes"} & set(what)) and test is None:
        raise ValueError(f"drawing {sorted(what)} needs the test images, got none")
    if by_index and not 0 <= index < len(test):
        raise ValueError(f"image index {index} is out of range: {test.name} has {len(test)} "
                         f"test images here (0..{len(test) - 1})")
    pictures = filter_pictures(loaded.model) if "filters" in what else []
    if "features" in what:
        if image_file is not None:
            channels, height, width = input_shape(loaded.spec)
            image, inverted = prepare_image(image_file, (height, width), channels)
            label = Path(image_file).name + (" (inverted)" if inverted else "")
        else:
            image = test.images[index]
            label = f"test image {index} ({loaded.classes[test.labels[index]]})"
        pictures += feature_pictures(loaded.model, image, loaded.normalization, label)
    if {"confusion", "mistakes"} & set(what):
        result = evaluate(loaded.model, test, loaded.normalization)
        if "confusion" in what:
            pictures.append(confusion_picture(result.confusion, loaded.classes))
        missed = model_mistakes(loaded.model, loaded.normalization, test, result.predictions,
                                loaded.classes, mistakes) if "mistakes" in what else None
        pictures += [missed] if missed else []
    return pictures
