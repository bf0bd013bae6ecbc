"""``tinyconv explore``: one page that shows a network thinking, forward and backward.

:func:`explore_html` runs a trained model on a few images and writes every
number a learner may ask about into one self-contained HTML page:

- forward: the input, every layer's output (each feature map, or each
  vector), the logits and the class probabilities (softmax);
- backward, for each target class: the loss E = -log p_target, every
  layer's sensitivity map δ = ∂E/∂(the layer's output), δ of the input, and
  every weight and bias gradient;
- the model's weights, biases and batch-normalisation statistics.

Every value is computed here, in Python, by the model's own layers (the
fast path of :mod:`tinyconv.nn.functional`), one image at a time. The page's
script (``explore_page/page.js``, hand-written, inlined with its style sheet
``page.css`` into ``page.html``) only draws the numbers and, when a value is
clicked, writes out its formula with the tutorial's equation number: it
multiplies and adds embedded numbers to show a formula's terms, but the
result it reports is always the embedded value.

The numbers travel as float32, little-endian, base64 text (``_Numbers``):
an array that repeats (a Flatten's output is its input) is stored once; a
sensitivity map with structural zeros (max pooling passes δ to one input per
window, ReLU stops it where the net input was negative) is stored as a bit
mask, shared by all target classes, and its non-zero values; and a fully
connected layer's weight gradient for one image, ∂E/∂W = δ aᵀ (one product
per weight), is stored as its two factors when their float32 products equal
the gradient the layer computed, bit for bit (checked here, for each
gradient), else in full.

Caps keep the page small and quick, and the page states them
(:data:`CAPS`): a layer shows at most ``channels`` feature maps and at most
``map_values`` values; a vector shows at most ``units`` entries; a layer
with more than ``weight_cells`` weights shows one output unit's weights at a
time; and the backward pass is stored for as many target classes per image
as ``data_bytes`` allows (all of them for the ``default`` preset with 5
images), the true class and the predicted one first.

Shapes are per image, without the batch axis: maps (C, H, W), vectors
(features,).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..data.images import prepare_image
from ..data.splits import check_classes
from ..models.serialize import LoadedModel
from ..nn import functional as F
from ..nn.layers import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Identity, Linear,
                         MaxPool2d, Module, ReLU, Sequential, Sigmoid, Tanh)
from ..nn.summary import summary_rows
from ..training.evaluation import predict_proba

__all__ = ["CAPS", "DEFAULT_IMAGES", "MAX_IMAGES", "ExploreImage", "image_files",
           "pick_test_images", "explore_data", "explore_html"]

#: How many test images the page shows when the user gives none.
DEFAULT_IMAGES = 5
#: The most images one page may hold.
MAX_IMAGES = 16
#: How many test images are classified at a time to find right and wrong ones.
SCAN_BATCH = 64

#: What the page shows at most (see the module docstring); the page states them.
CAPS = {
    "channels": 64,          # feature maps of one layer
    "map_values": 16384,     # values of one layer's feature maps, all channels together
    "units": 4096,           # entries of one vector
    "weight_cells": 20000,   # weights of one layer drawn at once
    "data_bytes": 13_000_000,  # base64 text of all the numbers
}

#: The layer classes the page can explain.
KNOWN_LAYERS = (Conv2d, MaxPool2d, AvgPool2d, Linear, Flatten, ReLU, Sigmoid, Tanh,
                BatchNorm2d, Dropout, Identity)


@dataclass(frozen=True)
class ExploreImage:
    """One image of the page: ``pixels`` uint8 (C, H, W) as the model takes
    them before normalisation, a ``name`` to show, and its true ``label``
    (a class index) when known."""

    name: str
    pixels: np.ndarray
    label: int | None = None


def image_files(paths, loaded: LoadedModel) -> list[ExploreImage]:
    """The user's picture files, each prepared exactly as ``tinyconv predict``
    prepares it (:func:`tinyconv.data.images.prepare_image`).

    Raises ValueError for a model whose input channels no picture can give
    (pictures become 1 grayscale or 3 RGB channels), a file that is not an
    image, or more than :data:`MAX_IMAGES` files; FileNotFoundError for a
    missing file. Every file is read before anything is computed.
    """
    channels, height, width = loaded.input_shape
    if channels not in (1, 3):
        raise ValueError(f"the model takes images of {channels} channels; a picture file "
                         f"becomes 1 (grayscale) or 3 (RGB) channels, so it cannot be "
                         f"shown to this model")
    paths = [Path(path) for path in paths]
    _check_count(len(paths))
    images = []
    for path in paths:
        pixels, inverted = prepare_image(path, (height, width), channels)
        images.append(ExploreImage(path.name + (" (inverted)" if inverted else ""), pixels))
    return images


def _check_count(count: int) -> None:
    if count > MAX_IMAGES:
        raise ValueError(f"explore shows at most {MAX_IMAGES} images on one page, got {count}")


def pick_test_images(loaded: LoadedModel, test, count: int = DEFAULT_IMAGES) -> list[ExploreImage]:
    """``count`` images of the Dataset ``test``: some classified right, some wrong.

    The page gets ``count - count // 2`` right ones, of distinct true classes
    as far as there are, and ``count // 2`` wrong ones, each the first in the
    test set's order, filled up with the next images of either kind if there
    are too few of one. Each keeps its true label. The model classifies
    :data:`SCAN_BATCH` images at a time and stops as soon as it has found
    them (a few batches for a trained model), not the whole test set.
    """
    _check_count(count)
    check_classes(loaded.classes, test)
    if len(test) == 0:
        raise ValueError(f"{test.name} has no test images to show")
    wanted_right, wanted_wrong = count - count // 2, count // 2
    right, wrong, distinct = [], [], {}
    for start in range(0, len(test), SCAN_BATCH):
        batch = slice(start, start + SCAN_BATCH)
        predicted = predict_proba(loaded.model, loaded.normalization(test.images[batch]))
        for index, guess in enumerate(predicted.argmax(axis=1), start):
            label = int(test.labels[index])
            (right if guess == label else wrong).append(index)
            if guess == label:
                distinct.setdefault(label, index)
        if len(distinct) >= wanted_right and len(wrong) >= wanted_wrong:
            break
    chosen = sorted(distinct.values())[:wanted_right]
    chosen += [index for index in right if index not in chosen][:wanted_right - len(chosen)]
    chosen += wrong[:wanted_wrong]
    scanned = sorted(right + wrong)
    chosen += [index for index in scanned if index not in chosen][:count - len(chosen)]
    return [ExploreImage(f"test image {index}", test.images[index], int(test.labels[index]))
            for index in sorted(chosen)]


# ----------------------------------------------------------------------------
# The numbers: one float32 array, and a bit array of masks
# ----------------------------------------------------------------------------

class _Numbers:
    """Every number of the page in one float32 array, and every mask in one bit array.

    :meth:`dense`, :meth:`masked` and :meth:`outer` return a *reference*, a
    small dict the page reads the array back with: ``{"s": shape, "d":
    offset}`` for an array stored whole from float ``offset`` on, plus
    ``"m": bit offset`` for one stored as the values where a mask is set,
    or ``{"s": shape, "outer": [a, b]}`` for the outer product of two
    stored vectors, each product rounded to float32.
    """

    def __init__(self):
        self.chunks, self.size, self.seen = [], 0, {}
        self.mask_chunks, self.mask_bits, self.masks_seen = [], 0, {}

    def _values(self, values: np.ndarray) -> int:
        """Store float32 ``values`` (once), return their offset."""
        values = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
        key = hashlib.sha1(values.tobytes()).hexdigest()
        if key not in self.seen:
            self.seen[key] = self.size
            self.chunks.append(values)
            self.size += values.size
        return self.seen[key]

    def dense(self, array) -> dict:
        array = np.asarray(array, dtype=np.float32)
        return {"s": list(array.shape), "d": self._values(array)}

    def masked(self, array, mask: np.ndarray) -> dict:
        """``array`` as its values where ``mask`` (bool, ``array``'s shape) is set;
        ``array`` must be zero elsewhere."""
        array = np.asarray(array, dtype=np.float32)
        if np.any(array[~mask]):
            raise ValueError("a masked array has values outside its mask")
        bits = np.packbits(mask.reshape(-1), bitorder="little")
        key = hashlib.sha1(bits.tobytes() + str(mask.size).encode()).hexdigest()
        if key not in self.masks_seen:
            self.masks_seen[key] = self.mask_bits
            self.mask_chunks.append(bits)
            self.mask_bits += 8 * bits.size
        return {"s": list(array.shape), "d": self._values(array[mask]), "m": self.masks_seen[key]}

    def outer(self, a: dict, b: dict, shape) -> dict:
        return {"s": list(shape), "outer": [a, b]}

    def floats(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, "<f4")

    def mask_bytes(self) -> bytes:
        return b"".join(chunk.tobytes() for chunk in self.mask_chunks)


# ----------------------------------------------------------------------------
# The layers as the page sees them
# ----------------------------------------------------------------------------

def _shown(shape: tuple[int, ...]) -> int:
    """How many channels of maps (C, H, W), or entries of a vector (n,), the page shows."""
    if len(shape) == 3:
        c, h, w = shape
        return min(c, CAPS["channels"], max(1, CAPS["map_values"] // (h * w)))
    return min(shape[0], CAPS["units"])


def _cut(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The part of a per-image ``array`` of ``shape`` that the page shows."""
    return array[:_shown(shape)]


def _layers(model: Module) -> list[Module]:
    layers = list(model) if isinstance(model, Sequential) else [model]
    for index, layer in enumerate(layers):
        if not isinstance(layer, KNOWN_LAYERS) or isinstance(layer, Sequential):
            raise ValueError(f"explore cannot show layer {index}, a {type(layer).__name__}: "
                             f"it knows {', '.join(kind.__name__ for kind in KNOWN_LAYERS)}")
    return layers


def _layer_info(layer: Module, row, in_shape, numbers: _Numbers) -> dict:
    """What the page needs to draw and explain one layer: kind, shapes, caps,
    hyper-parameters and parameters (cut to what is shown)."""
    out_shape = tuple(row.output_shape)
    info = {"index": row.index, "kind": type(layer).__name__,
            "in_shape": list(in_shape), "out_shape": list(out_shape),
            "shown": _shown(out_shape), "params": row.params}
    in_shown = _shown(in_shape)
    if isinstance(layer, (Conv2d, MaxPool2d, AvgPool2d)):
        info.update(kernel=list(layer.kernel_size), stride=list(layer.stride),
                    padding=list(layer.padding))
    if isinstance(layer, Conv2d):
        weight = layer.weight.data[:info["shown"], :in_shown]
        info["weight"] = numbers.dense(weight)
    elif isinstance(layer, Linear):
        info["weight"] = numbers.dense(layer.weight.data[:info["shown"], :in_shown])
    elif isinstance(layer, BatchNorm2d):
        info.update(eps=layer.eps, weight=numbers.dense(layer.weight.data[:info["shown"]]),
                    running_mean=numbers.dense(layer.running_mean[:info["shown"]]),
                    running_var=numbers.dense(layer.running_var[:info["shown"]]))
        info["bias"] = numbers.dense(layer.bias.data[:info["shown"]])
    elif isinstance(layer, Dropout):
        info["p"] = layer.p
    if isinstance(layer, (Conv2d, Linear)):
        info["weight_shape"] = list(layer.weight.shape)
        info["bias"] = None if layer.bias is None else numbers.dense(
            layer.bias.data[:info["shown"]])
    if getattr(layer, "weight", None) is not None:
        info["unit_view"] = layer.weight.size > CAPS["weight_cells"]
    return info


# ----------------------------------------------------------------------------
# Forward and backward, one image at a time
# ----------------------------------------------------------------------------

@dataclass
class _Pass:
    """One image run through the model: every layer's output and the
    probabilities, per image (no batch axis)."""

    outputs: list[np.ndarray]
    probabilities: np.ndarray


def _forward(layers: list[Module], x: np.ndarray) -> _Pass:
    """Run ``x`` (1, C, H, W), float32, through ``layers`` in the model's own
    order, keeping every output; the layers keep this image's caches for
    :func:`_backward`. (A Sequential may run a ReLU after the max pooling
    that follows it; the two commute, so the values are the same.)"""
    outputs = []
    for layer in layers:
        x = layer.forward(x)
        outputs.append(x[0])
    return _Pass(outputs, F.softmax(x)[0])


def _backward(layers: list[Module], logits: np.ndarray, target: int):
    """The backward pass from the cross-entropy loss of class ``target``.

    Must follow :func:`_forward` of the same image (the layers hold its
    caches). Returns ``(loss, deltas, input_delta, grads)``: E = -log
    p_target; ``deltas[l]`` = ∂E/∂(output of layer l) per image, the last
    being p - onehot(target); ∂E/∂(input image); and for each layer with
    parameters its (weight, bias) gradients (bias None when it has none).
    """
    loss, cache = F.cross_entropy_forward(logits[None], np.array([target]))
    delta = F.cross_entropy_backward(cache)
    deltas = [None] * len(layers)
    for layer in layers:
        layer.zero_grad()
    for index in reversed(range(len(layers))):
        deltas[index] = delta[0]
        delta = layers[index].backward(delta)
    grads = {}
    for index, layer in enumerate(layers):
        weight = getattr(layer, "weight", None)
        if weight is not None:
            bias = getattr(layer, "bias", None)
            grads[index] = (weight.grad.copy(), None if bias is None else bias.grad.copy())
    return loss, deltas, delta[0], grads


def _targets(probabilities: np.ndarray, label: int | None, count: int) -> list[int]:
    """The first ``count`` target classes of an image: its true label, the
    predicted class, then the others from the likeliest down."""
    order = [label] if label is not None else []
    order += [int(k) for k in np.argsort(-probabilities, kind="stable") if k not in order]
    return order[:count]


def _grad_ref(numbers: _Numbers, layer: Module, grad: np.ndarray, shapes, delta=None,
              inputs=None) -> dict:
    """The reference of a layer's weight gradient for one image, cut to what is shown.

    ``shapes`` is (input shape, output shape). For a fully connected layer,
    ``delta`` and ``inputs`` hold its δ and its input a as ``{"array": ...,
    "ref": ...}`` (a vector and its stored reference, :func:`_vector`), and
    ∂E/∂W = δ aᵀ is stored as those two references when their float32
    products equal the layer's own gradient bit for bit.
    """
    in_shape, out_shape = shapes
    if isinstance(layer, Linear):
        product = np.multiply.outer(delta["array"], inputs["array"])
        if np.array_equal(product, grad):
            return numbers.outer(delta["ref"], inputs["ref"], (_shown(out_shape),
                                                               _shown(in_shape)))
        return numbers.dense(grad[:_shown(out_shape), :_shown(in_shape)])
    if isinstance(layer, Conv2d):
        return numbers.dense(grad[:_shown(out_shape), :_shown(in_shape)])
    return numbers.dense(grad[:_shown(out_shape)])     # batch norm's γ


def _masks(deltas_by_target: list[list[np.ndarray]]) -> list[np.ndarray | None]:
    """For each layer, where any target's δ is non-zero, or None where a mask
    would save little (over 3/4 of the values set)."""
    masks = []
    for per_target in zip(*deltas_by_target):
        mask = np.any(np.stack(per_target) != 0, axis=0)
        masks.append(mask if mask.mean() <= 0.75 else None)
    return masks


def explore_data(loaded: LoadedModel, images: list[ExploreImage]) -> tuple[dict, _Numbers]:
    """Compute everything the page shows; return its description and its numbers.

    The description is JSON-able: the model (spec, classes, normalisation,
    metadata), the caps, one entry per layer (:func:`_layer_info`) and per
    image its pixels, every layer's output, probabilities and, for each
    stored target class, the loss, every δ and every parameter gradient, as
    references into the :class:`_Numbers`.
    """
    if not images:
        raise ValueError("explore needs at least one image")
    _check_count(len(images))
    model = loaded.model.eval()
    layers = _layers(model)
    shape = tuple(loaded.input_shape)
    rows = summary_rows(model, shape)
    shapes = [shape] + [tuple(row.output_shape) for row in rows]
    numbers = _Numbers()
    description = {
        "spec": loaded.spec, "classes": list(loaded.classes),
        "normalization": {"mean": list(loaded.normalization.mean),
                          "std": list(loaded.normalization.std)},
        "metadata": loaded.metadata, "caps": dict(CAPS),
        "input": {"shape": list(shape), "shown": _shown(shape)},
        "layers": [_layer_info(layer, row, shapes[index], numbers)
                   for index, (layer, row) in enumerate(zip(layers, rows))],
        "images": [],
    }

    # Each image: its forward pass, and the backward pass of its first target
    # class, which tells how many numbers one target class takes.
    passes = []
    for image in images:
        pixels = np.asarray(image.pixels, dtype=np.uint8)
        if pixels.shape != shape:
            raise ValueError(f"the model takes images of shape {shape} (C, H, W), "
                             f"{image.name} has {pixels.shape}")
        x = loaded.normalization(pixels[None])
        run = _forward(layers, x)
        first = _targets(run.probabilities, image.label, 1)[0]
        passes.append((image, x, run, _backward(layers, run.outputs[-1], first)))
        description["images"].append({
            "name": image.name, "label": image.label,
            "predicted": int(np.argmax(run.probabilities)),
            "pixels": numbers.dense(_cut(pixels.astype(np.float32), shape)),
            "input": numbers.dense(_cut(x[0], shape)),
            "outputs": [numbers.dense(_cut(out, shapes[index + 1]))
                        for index, out in enumerate(run.outputs)],
            "probabilities": numbers.dense(run.probabilities)})
    per_target = sum(_target_floats(layers, result) for *_, result in passes)
    left = CAPS["data_bytes"] * 3 // 16 - numbers.size     # base64: 4 characters per 3 bytes
    count = int(min(len(loaded.classes), max(1, left // max(1, per_target))))

    for (image, x, run, first), entry in zip(passes, description["images"]):
        targets = _targets(run.probabilities, image.label, count)
        _forward(layers, x)
        results = [first] + [_backward(layers, run.outputs[-1], t) for t in targets[1:]]
        masks = _masks([deltas for _, deltas, _, _ in results])
        inputs = [x[0]] + run.outputs[:-1]
        entry["targets"] = targets
        entry["backward"] = {str(target): _backward_refs(numbers, layers, shapes, result,
                                                         masks, inputs)
                             for target, result in zip(targets, results)}
    description["stored_targets"] = count
    return description, numbers


def _backward_refs(numbers: _Numbers, layers, shapes, result, masks, inputs) -> dict:
    """The references of one image's backward pass for one target class:
    the loss, δ of the input, every layer's δ and every parameter gradient."""
    loss, deltas, input_delta, grads = result
    refs = []
    for index, (delta, mask) in enumerate(zip(deltas, masks)):
        out_shape = shapes[index + 1]
        refs.append(numbers.dense(_cut(delta, out_shape)) if mask is None
                    else numbers.masked(_cut(delta, out_shape), _cut(mask, out_shape)))
    grad_refs = {}
    for index, (weight_grad, bias_grad) in grads.items():
        in_shape, out_shape = shapes[index], shapes[index + 1]
        factors = {}
        if isinstance(layers[index], Linear):
            factors = dict(delta=_vector(numbers, deltas[index], out_shape),
                           inputs=_vector(numbers, inputs[index], in_shape))
        grad_refs[str(index)] = {
            "weight": _grad_ref(numbers, layers[index], weight_grad, (in_shape, out_shape),
                                **factors),
            "bias": None if bias_grad is None
            else numbers.dense(bias_grad[:_shown(out_shape)])}
    return {"loss": loss, "input": numbers.dense(_cut(input_delta, shapes[0])),
            "deltas": refs, "grads": grad_refs}


def _vector(numbers: _Numbers, array: np.ndarray, shape) -> dict:
    """A per-image vector, float32, with the reference of its shown part
    (stored once: the same bytes as the forward output or δ already stored)."""
    array = np.asarray(array, dtype=np.float32)
    return {"array": array, "ref": numbers.dense(_cut(array, shape))}


def _target_floats(layers: list[Module], result) -> int:
    """About how many floats one target class of one image takes: its non-zero
    δ, the input's δ, and the gradients (a Linear's weight gradient is stored
    as δ and its input, already counted)."""
    _, deltas, input_delta, grads = result
    total = input_delta.size + sum(int(np.count_nonzero(delta)) for delta in deltas)
    for index, (weight_grad, bias_grad) in grads.items():
        if not isinstance(layers[index], Linear):
            total += weight_grad.size
        total += 0 if bias_grad is None else bias_grad.size
    return total


# ----------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------

def _page_file(name: str) -> str:
    return (resources.files(__package__) / "explore_page" / name).read_text(encoding="utf-8")


def _script_text(text: str) -> str:
    """``text`` made safe inside a <script> element: no "</script" can close it."""
    return text.replace("</", "<\\/")


def explore_html(loaded: LoadedModel, images: list[ExploreImage], title: str = "") -> str:
    """The whole page for ``images``: HTML with its style, script and numbers inline.

    ``title`` names the model on the page (its file, say). Opens from disk in
    any current browser; loads nothing (its Content-Security-Policy forbids
    it).
    """
    description, numbers = explore_data(loaded, images)
    description["title"] = title
    # JSON has no "<" outside strings, and "\u003c" reads back as "<".
    data = json.dumps(description, ensure_ascii=True, allow_nan=False).replace("<", "\\u003c")
    floats = base64.b64encode(numbers.floats().tobytes()).decode("ascii")
    masks = base64.b64encode(numbers.mask_bytes()).decode("ascii")
    page = _page_file("page.html")
    parts = {"/*@STYLE@*/": _page_file("page.css"), "/*@SCRIPT@*/": _script_text(
        _page_file("page.js")), "@TITLE@": html.escape(f"tinyconv explore: {title}".rstrip(": ")),
             "@DATA@": data, "@FLOATS@": floats, "@MASKS@": masks}
    for marker in parts:
        if page.count(marker) != 1:
            raise RuntimeError(f"explore_page/page.html must hold {marker} once")
    # One pass over the template, so that no marker inside the inserted text is replaced.
    return re.sub("|".join(re.escape(marker) for marker in parts),
                  lambda match: parts[match.group(0)], page)
