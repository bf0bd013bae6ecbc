"""A table of a model's layers: output shapes, parameters and multiply-adds.

Like the summaries Keras and torchinfo print, one row per layer and then the
totals. Shapes are per image, without the batch axis.

Multiply-adds (MACs) count the products of weights and inputs, per image:

- convolution: F·OH·OW·C·KH·KW (each of the F·OH·OW outputs sums C·KH·KW
  products, eq. 4.4);
- fully connected: in_features·out_features;
- everything else (pooling, activations, batch normalisation, dropout,
  flatten) counts 0: their cost grows with the activations, not with
  weights, and is small beside the two above. Bias additions are not counted.

The activation memory is what one image's forward pass keeps: the input and
every layer's output, at the model's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layers import Conv2d, Linear, Module, Sequential

__all__ = ["LayerRow", "Totals", "summary_rows", "summary_totals", "summary"]


@dataclass(frozen=True)
class LayerRow:
    """One layer: its position, class name, output shape (no batch axis),
    parameter count and multiply-adds per image."""

    index: int
    layer: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class Totals:
    """The model's totals. ``params`` counts every Parameter (all are trained,
    so ``trainable`` equals it); ``buffers`` counts the numbers that are
    saved but not trained (batch normalisation's running statistics)."""

    params: int
    trainable: int
    buffers: int
    macs: int
    activation_bytes: int
    param_bytes: int


def _layers(model: Module) -> list[Module]:
    return list(model) if isinstance(model, Sequential) else [model]


def _check_shape(input_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(size) for size in input_shape)
    except (TypeError, ValueError):
        raise TypeError(f"input_shape must be a tuple of sizes such as (1, 28, 28), "
                        f"got {input_shape!r}") from None
    if not shape or min(shape) < 1:
        raise ValueError(f"input_shape must be positive sizes such as (1, 28, 28), "
                         f"got {input_shape!r}")
    return shape


def _dtype(model: Module):
    params = model.parameters()
    return params[0].data.dtype if params else np.dtype(np.float32)


def _macs(layer: Module, out_shape: tuple[int, ...]) -> int:
    if isinstance(layer, Conv2d):
        # F·OH·OW outputs, each a sum over the weight's C·KH·KW entries.
        return int(np.prod(out_shape)) * int(np.prod(layer.weight.shape[1:]))
    if isinstance(layer, Linear):
        return layer.weight.size
    return 0


def summary_rows(model: Module, input_shape) -> list[LayerRow]:
    """One :class:`LayerRow` per layer of ``model`` for images of ``input_shape``.

    ``input_shape`` is (C, H, W) (or (features,) for a model of vectors). The
    shapes come from a forward pass of one zero image in evaluation mode, so
    running statistics and dropout generators are left untouched; each
    module's training mode is restored afterwards.
    """
    shape = _check_shape(input_shape)
    with model.evaluating():
        x = np.zeros((1,) + shape, dtype=_dtype(model))
        rows = []
        for index, layer in enumerate(_layers(model)):
            try:
                x = layer.forward(x)
            except ValueError as error:
                raise ValueError(f"layer {index} ({type(layer).__name__}) does not fit "
                                 f"input shape {shape}: {error}") from None
            params = sum(p.size for p in layer.parameters())
            rows.append(LayerRow(index, type(layer).__name__, x.shape[1:], params,
                                 _macs(layer, x.shape[1:])))
        return rows


def summary_totals(model: Module, input_shape) -> Totals:
    """The totals row of :func:`summary` as numbers."""
    return _totals(model, _check_shape(input_shape), summary_rows(model, input_shape))


def _totals(model: Module, shape: tuple[int, ...], rows: list[LayerRow]) -> Totals:
    itemsize = _dtype(model).itemsize
    params = sum(p.size for p in model.parameters())
    elements = int(np.prod(shape)) + sum(int(np.prod(row.output_shape)) for row in rows)
    return Totals(params=params, trainable=params,
                  buffers=sum(np.size(array) for _, array in model.named_buffers()),
                  macs=sum(row.macs for row in rows),
                  activation_bytes=elements * itemsize, param_bytes=params * itemsize)


def _size(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if nbytes < 1024 or unit == "MiB":
            return f"{nbytes:,} B" if unit == "B" else f"{nbytes:,.1f} {unit}"
        nbytes /= 1024


def summary(model: Module, input_shape) -> str:
    """The model as a table: layer, output shape, parameters, MACs; then totals.

    Example (the ``lenet5`` preset, first rows)::

        Layer          Output shape   Params      MACs
        ==============================================
        input          (1, 28, 28)         0         0
        0: Conv2d      (6, 28, 28)       156   117,600
    """
    shape = _check_shape(input_shape)
    rows = summary_rows(model, shape)
    totals = _totals(model, shape, rows)
    table = [("Layer", "Output shape", "Params", "MACs"), ("input", str(shape), "0", "0")]
    table += [(f"{row.index}: {row.layer}", str(row.output_shape), f"{row.params:,}",
               f"{row.macs:,}") for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(4)]

    def line(cells) -> str:
        return (f"{cells[0]:<{widths[0]}}   {cells[1]:<{widths[1]}}   "
                f"{cells[2]:>{widths[2]}}   {cells[3]:>{widths[3]}}")

    rule = "=" * len(line(table[0]))
    dtype = _dtype(model).name
    text = [line(table[0]), rule] + [line(cells) for cells in table[1:]] + [rule]
    text += [f"Total params: {totals.params:,}",
             f"Trainable params: {totals.trainable:,}",
             f"Non-trainable buffers: {totals.buffers:,}",
             f"Multiply-adds per image: {totals.macs:,}",
             f"Activation memory per image: {_size(totals.activation_bytes)} ({dtype})",
             f"Parameter memory: {_size(totals.param_bytes)} ({dtype})"]
    return "\n".join(text)
