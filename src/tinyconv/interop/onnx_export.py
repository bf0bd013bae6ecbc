"""A tinyconv model written as an ONNX file, to run in onnxruntime or view in Netron.

Each layer of the model's :class:`~tinyconv.nn.layers.Sequential` becomes one
ONNX node, in the same order, named as ``tinyconv summary`` numbers the
layers (``0: Conv2d``); each parameter and buffer becomes an initializer
named by its state_dict name (``0.weight``, ``2.running_mean``):

===================  ===================================================
tinyconv layer       ONNX node
===================  ===================================================
Conv2d               Conv: weight (F, C, KH, KW), bias (F,); strides
                     [SH, SW]; pads [PH, PW, PH, PW] (ONNX lists the
                     starts, top and left, then the ends, bottom and
                     right: tinyconv pads both sides of an axis alike)
MaxPool2d            MaxPool: kernel, strides and pads as Conv; ONNX's
                     padded positions never win, as tinyconv's -inf
AvgPool2d            AveragePool with ``count_include_pad=1``: tinyconv
                     divides every window by KH·KW, padded zeros
                     included (PyTorch's default; ONNX's default is 0)
Linear               Gemm with ``transB=1``: net = a·Wᵀ + b, W stored
                     (out_features, in_features) as in tinyconv
ReLU, Sigmoid, Tanh  Relu, Sigmoid, Tanh
Flatten              Flatten with ``axis=1``: (N, C, H, W) -> (N, C·H·W)
BatchNorm2d/1d       BatchNormalization in inference form: the running
                     mean and variance, ``epsilon`` the layer's eps
Dropout              Dropout with its ``ratio``: the identity at inference
Identity             Identity
===================  ===================================================

The numbers are float32, as tinyconv's models are; a model with float64
parameters is written rounded to float32. The pinned versions and the
metadata are described in :mod:`tinyconv.interop.onnx_format`.
"""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np

from ..data.loader import Normalization
from ..fileio import atomic_write_bytes
from ..models.serialize import LoadedModel, load_model, model_path
from ..nn.layers import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Identity, Linear,
                         MaxPool2d, ReLU, Sequential, Sigmoid, Tanh)
from .onnx_format import (BATCH, CLASSES_KEY, INPUT_KEY, INPUT_NAME, IR_VERSION, OPSET,
                          OUTPUT_NAME, PREPARATION, SPEC_KEY, TINYCONV_KEY, require_onnx)

__all__ = ["export_onnx", "to_onnx"]

_ACTIVATIONS = {ReLU: "Relu", Sigmoid: "Sigmoid", Tanh: "Tanh", Identity: "Identity"}
_KNOWN = (Conv2d, Linear, MaxPool2d, AvgPool2d, BatchNorm2d, Dropout, Flatten, *_ACTIVATIONS)


def export_onnx(model, path, *, input_shape=None, classes=None, normalization=None,
                metadata=None):
    """Write ``model`` to ``path`` as an ONNX file (atomically); return the ONNX model.

    Args:
        model: a :class:`~tinyconv.models.serialize.LoadedModel` (what
            :func:`~tinyconv.models.serialize.load_model` returns), the path
            of a model file, or of a training run directory that holds
            ``model.npz``; or a :class:`~tinyconv.nn.layers.Sequential` of
            tinyconv layers, which then needs ``input_shape``.
        path: the ``.onnx`` file to write.
        input_shape: (C, H, W) that a Sequential takes.
        classes: a Sequential's class names (default ``"0"``, ``"1"``, ...).
        normalization: a Sequential's
            :class:`~tinyconv.data.loader.Normalization` (default: mean 0 and
            std 1, so that pixels are only scaled to [0, 1]).
        metadata: a Sequential's metadata, a JSON-serialisable dict.

    Returns the ``onnx.ModelProto`` written, which ``onnx.checker`` passes.
    Raises ImportError when the onnx package is missing, ValueError or
    TypeError for a model that cannot be written (a layer ONNX export does
    not know, classes that do not fit), OSError when ``path`` cannot be
    written; ``path`` is then left as it was.
    """
    onnx = require_onnx()
    if isinstance(model, Sequential):
        if input_shape is None:
            raise TypeError("exporting a Sequential needs its input_shape (C, H, W)")
        spec = None
    else:
        if input_shape is not None or classes is not None or normalization is not None \
                or metadata is not None:
            raise TypeError("input_shape, classes, normalization and metadata are for a "
                            "Sequential; a model file brings its own")
        loaded = model if isinstance(model, LoadedModel) else _load(model)
        model, spec = loaded.model, loaded.spec
        input_shape, classes = loaded.input_shape, loaded.classes
        normalization, metadata = loaded.normalization, loaded.metadata
    proto = to_onnx(model, input_shape, classes=classes, normalization=normalization,
                    spec=spec, metadata=metadata)
    data = proto.SerializeToString()
    onnx.checker.check_model(data, full_check=True)
    atomic_write_bytes(path, data)
    return proto


def _load(path) -> LoadedModel:
    """The model in a model file, or in a training run directory's model.npz."""
    return load_model(model_path(path))


def to_onnx(model: Sequential, input_shape, *, classes=None, normalization=None, spec=None,
            metadata=None):
    """The ONNX model (an ``onnx.ModelProto``) of a Sequential taking (C, H, W) images.

    Arguments as :func:`export_onnx`; ``spec`` is the model's spec text, kept
    in the metadata when given. Nothing is written.
    """
    onnx = require_onnx()
    from onnx import TensorProto, helper

    if not isinstance(model, Sequential):
        raise TypeError(f"expected a Sequential model, got {type(model).__name__}")
    channels, height, width = (int(size) for size in input_shape)
    n_outputs = _output_size(model, (channels, height, width))
    classes = [str(k) for k in range(n_outputs)] if classes is None else [str(c) for c in classes]
    if len(classes) != n_outputs:
        raise ValueError(f"the model outputs {n_outputs} scores but there are {len(classes)} "
                         f"class names")
    normalization = normalization or Normalization((0.0,) * channels, (1.0,) * channels)
    if len(normalization.mean) != channels:
        raise ValueError(f"the normalization has {len(normalization.mean)} channels, the "
                         f"model's input {channels}")

    nodes, initializers = [], []
    value = INPUT_NAME
    for index, layer in enumerate(model.layers):
        output = OUTPUT_NAME if index == len(model.layers) - 1 else f"{index}.output"
        node, arrays = _layer_node(helper, layer, index, value, output)
        nodes.append(node)
        initializers += [onnx.numpy_helper.from_array(np.asarray(array, np.float32), name)
                         for name, array in arrays.items()]
        value = output
    if not nodes:  # an empty model outputs its input; ONNX wants a node for that
        nodes.append(helper.make_node("Identity", [INPUT_NAME], [OUTPUT_NAME], name="identity"))

    graph = helper.make_graph(
        nodes, "tinyconv",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                       [BATCH, channels, height, width])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH, n_outputs])],
        initializers)
    described = f" {spec}" if spec else ""
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name="tinyconv", producer_version=_version(),
        doc_string=f"A tinyconv CNN{described}. Input '{INPUT_NAME}': float32 (N, {channels}, "
                   f"{height}, {width}), {PREPARATION} (mean and std in the metadata "
                   f"'{INPUT_KEY}'). Output '{OUTPUT_NAME}': (N, {n_outputs}), one score per "
                   f"class before softmax, named in the metadata '{CLASSES_KEY}'.")
    properties = {
        CLASSES_KEY: json.dumps(classes),
        INPUT_KEY: json.dumps({"layout": "NCHW", "channels": channels, "height": height,
                               "width": width, "mean": list(normalization.mean),
                               "std": list(normalization.std), "preparation": PREPARATION}),
        TINYCONV_KEY: json.dumps(metadata or {}, sort_keys=True, allow_nan=False),
    }
    if spec:
        properties[SPEC_KEY] = spec
    helper.set_model_props(proto, properties)
    # The shapes of the values between the nodes, which Netron shows on the edges.
    return onnx.shape_inference.infer_shapes(proto, strict_mode=True)


def _version() -> str:
    """tinyconv's version as installed, for the file's producer field."""
    try:
        return importlib.metadata.version("tinyconv")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


def _output_size(model: Sequential, shape: tuple[int, int, int]) -> int:
    """How many scores the model gives an image of ``shape`` (one tiny forward pass)."""
    with model.evaluating():
        out = model.forward(np.zeros((1,) + shape, np.float32))
    if out.ndim != 2:
        raise ValueError(f"the model outputs maps of shape {out.shape[1:]} per image; an "
                         f"exported model must output one score per class (end it with a "
                         f"Flatten or a Linear layer)")
    return out.shape[1]


def _layer_node(helper, layer, index: int, x: str, y: str):
    """The ONNX node computing ``layer`` from value ``x`` into value ``y``, and its
    initializers as {name: array}."""
    name = f"{index}: {type(layer).__name__}"
    kind = type(layer)
    if kind is Conv2d or kind is Linear:
        arrays = {f"{index}.weight": layer.weight.data}
        if layer.bias is not None:
            arrays[f"{index}.bias"] = layer.bias.data
        if kind is Linear:
            node = helper.make_node("Gemm", [x, *arrays], [y], name=name, transB=1)
        else:
            node = helper.make_node("Conv", [x, *arrays], [y], name=name, group=1,
                                    kernel_shape=list(layer.kernel_size),
                                    strides=list(layer.stride), dilations=[1, 1],
                                    pads=list(layer.padding) * 2)
        return node, arrays
    if kind is MaxPool2d or kind is AvgPool2d:
        attributes = dict(kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                          pads=list(layer.padding) * 2, ceil_mode=0)
        if kind is AvgPool2d:
            return helper.make_node("AveragePool", [x], [y], name=name, count_include_pad=1,
                                    **attributes), {}
        return helper.make_node("MaxPool", [x], [y], name=name, **attributes), {}
    if isinstance(layer, BatchNorm2d):  # BatchNorm1d too: ONNX takes (N, C) as (N, C, ...)
        arrays = {f"{index}.{key}": array for key, array in layer.state_dict().items()}
        inputs = [x] + [f"{index}.{key}" for key in ("weight", "bias", "running_mean",
                                                     "running_var")]
        # ONNX's momentum weighs the old running value, tinyconv's the new batch.
        return helper.make_node("BatchNormalization", inputs, [y], name=name,
                                epsilon=layer.eps, momentum=1 - layer.momentum), arrays
    if kind is Dropout:
        ratio = {f"{index}.ratio": np.array(layer.p)}
        return helper.make_node("Dropout", [x, *ratio], [y], name=name), ratio
    if kind is Flatten:
        return helper.make_node("Flatten", [x], [y], name=name, axis=1), {}
    if kind in _ACTIVATIONS:
        return helper.make_node(_ACTIVATIONS[kind], [x], [y], name=name), {}
    raise TypeError(f"layer {index} is a {type(layer).__name__}, which ONNX export does not "
                    f"know; it writes {', '.join(sorted(c.__name__ for c in _KNOWN))}")

