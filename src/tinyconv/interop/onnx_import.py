"""An ONNX graph read as a tinyconv model, so that a network trained elsewhere
can be summarised, evaluated, explained and explored with the tutorial's formulas.

The graph must be what tinyconv's pattern notation can say: one input
(N, C, H, W) of fixed C, H and W, one output (N, classes), and between them
one chain of nodes, each taking the output of the one before. It becomes a
spec (:mod:`tinyconv.models.spec`) and the weights of its layers:

========================================  ========================================
ONNX nodes (as PyTorch's exporter writes)  tinyconv
========================================  ========================================
Conv (square kernel, one stride, one pad)  CONV(filters, kernel, stride, pad)
MaxPool, AveragePool (padded zeros count,  MAXPOOL, AVGPOOL(kernel, stride, pad)
``count_include_pad=1``, where padded)
GlobalMaxPool, GlobalAveragePool (square)  MAXPOOL, AVGPOOL over the whole map
Relu, Sigmoid, Tanh                        ``act=`` of the CONV or FC before them
Flatten; Reshape to (N, C·H·W), its shape  FLATTEN (implied before an FC)
given or computed from Shape, Gather,
Unsqueeze, Squeeze, Slice, Concat, Cast
Gemm; MatMul, then Add of a constant       FC(units)
BatchNormalization (inference form)        BN
Dropout                                    DROPOUT(ratio)
Identity, Constant                         nothing: they pass values on
========================================  ========================================

Three rewrites keep the outputs and make a graph fit the notation, in which
an activation follows its CONV or FC directly:

- an activation after a MaxPool or a Flatten moves in front of it: max
  pooling and the three activations are all non-decreasing, so
  f(max(x)) = max(f(x)) exactly, and Flatten only reorders;
- a BatchNormalization right after a Conv or Gemm and followed by an
  activation is folded into the weights before that activation:
  W' = W·γ/√(σ² + ε) and b' = (b − μ)·γ/√(σ² + ε) + β (the layers then
  show these folded weights);
- an ε other than tinyconv's 1e-5 moves into the running variance, and
  Gemm's ``alpha`` and ``beta`` into the weights and the bias.

Anything else is refused before a file is written, with a
:class:`OnnxImportError` that names the node, its operator and what tinyconv
cannot represent: a branch or a merge (a residual Add), a dilation, groups,
a non-square kernel, uneven padding, an unknown operator.

Weights come from the graph's initializers and Constant nodes, with
``onnx.numpy_helper`` (external data files included); nothing is unpickled.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checks import conv_output_size
from ..data.loader import Normalization
from ..models.serialize import LoadedModel, save_model
from ..models.spec import build, format_spec, parse
from ..nn.layers import BatchNorm2d, Conv2d, Linear
from .onnx_format import CLASSES_KEY, INPUT_KEY, SPEC_KEY, TINYCONV_KEY, require_onnx

__all__ = ["OnnxImportError", "import_onnx", "SUPPORTED_OPS"]

#: The operators the importer reads (in the default ONNX domain).
SUPPORTED_OPS = ("Conv", "MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool",
                 "Relu", "Sigmoid", "Tanh", "Flatten", "Reshape", "Gemm", "MatMul", "Add",
                 "BatchNormalization", "Dropout", "Identity", "Constant")
#: Operators that compute a Reshape's target shape from the data's shape.
_SHAPE_OPS = ("Shape", "Gather", "Unsqueeze", "Squeeze", "Slice", "Concat", "Cast",
              "Identity")
_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}
#: tinyconv's batch normalisation ε (BatchNorm2d's default, the one a spec's BN builds).
_EPS = 1e-5


class OnnxImportError(ValueError):
    """An ONNX file that tinyconv cannot read or represent; the message says why."""


@dataclass
class _Layer:
    """One element of the spec being built, with the weights it came with."""

    kind: str            # "CONV", "MAXPOOL", "AVGPOOL", "FC", "BN", "DROPOUT" or "FLATTEN"
    node: str            # the node it was read from, as messages name it
    args: dict = field(default_factory=dict)    # the spec arguments: filters, kernel...
    params: dict = field(default_factory=dict)  # weight, bias, running_mean, running_var
    act: str | None = None
    open_bias: bool = False  # an FC read from a MatMul, whose bias an Add may bring


def import_onnx(path, out=None, *, classes=None, mean=None, std=None) -> LoadedModel:
    """Read the ONNX model at ``path`` as a tinyconv model; write it to ``out`` if given.

    Args:
        path: an ``.onnx`` file; external data files are read from its folder.
        out: the tinyconv model file (``model.npz``) to write, or None.
        classes: the class names, one per output; by default those in the
            file's metadata (a tinyconv export has them), else ``"0"``, ``"1"``...
        mean, std: the per-channel normalisation of the input, in units of
            pixels scaled to [0, 1]; by default the file's (a tinyconv
            export has them), else mean 0 and std 1.

    Returns the :class:`~tinyconv.models.serialize.LoadedModel`, in
    evaluation mode. Raises :class:`OnnxImportError` (a ValueError) for a
    file that is not ONNX, is damaged, or holds a graph tinyconv cannot
    represent, before anything is written; ImportError when the onnx
    package is missing; OSError when ``out`` cannot be written.
    """
    onnx = require_onnx()
    path = Path(path)
    proto = _read(onnx, path)
    reader = _GraphReader(onnx, proto.graph)
    layers, shape = reader.read()
    spec = _spec_text(reader.input_shape, layers)
    properties = {prop.key: prop.value for prop in proto.metadata_props}
    # A tinyconv export keeps its spec text; it is the better one (it keeps the
    # repetitions the author wrote) when it builds the very same layers.
    stored = properties.get(SPEC_KEY)
    if stored and _same_layers(stored, spec):
        spec = format_spec(stored)
    model = build(spec, rng=0).eval()
    model.load_state_dict(_state(model, layers))
    metadata = _json(properties, TINYCONV_KEY, dict, path) or {}
    metadata["imported_from"] = {"file": path.name, "producer": " ".join(
        filter(None, (proto.producer_name, proto.producer_version))) or "unknown"}
    loaded = LoadedModel(model, spec, _classes(classes, properties, shape[0], path),
                         _normalization(mean, std, properties, reader.input_shape[0], path),
                         metadata)
    if out is not None:
        save_model(out, model, spec, loaded.classes, loaded.normalization, metadata)
    return loaded


# ----------------------------------------------------------------------------
# Reading the file
# ----------------------------------------------------------------------------

def _read(onnx, path: Path):
    """The checked ``ModelProto`` in ``path``, its external data loaded."""
    from google.protobuf.message import DecodeError
    from onnx.external_data_helper import load_external_data_for_model

    if not path.is_file():
        raise OnnxImportError(f"{path} {'is not a file' if path.exists() else 'does not exist'}"
                              f": expected an ONNX model file (.onnx)")
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise OnnxImportError(f"{path} is not a readable ONNX model: it is truncated or not "
                              f"ONNX at all ({error})") from None
    if not proto.HasField("graph") or not proto.opset_import:
        raise OnnxImportError(f"{path} is not an ONNX model: it holds no graph")
    try:  # the tensors kept in separate files beside the model, if any
        load_external_data_for_model(proto, str(path.parent))
    except (OSError, ValueError, RuntimeError, onnx.checker.ValidationError) as error:
        raise OnnxImportError(f"{path}: cannot read its external data ({error})") from None
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as error:
        raise OnnxImportError(f"{path} is not a valid ONNX model: "
                              f"{str(error).strip().splitlines()[0]}") from None
    return proto


def _json(properties: dict, key: str, kind: type, path: Path):
    """The JSON value of metadata ``key`` (None when absent), which must be a ``kind``."""
    if key not in properties:
        return None
    try:
        value = json.loads(properties[key])
    except json.JSONDecodeError as error:
        raise OnnxImportError(f"{path}: the metadata {key!r} is not JSON ({error})") from None
    if not isinstance(value, kind):
        raise OnnxImportError(f"{path}: the metadata {key!r} should be a JSON "
                              f"{'list' if kind is list else 'object'}, got {value!r}")
    return value


def _classes(given, properties: dict, outputs: int, path: Path) -> list[str]:
    """The class names: given, else the metadata's, else numbers."""
    if given is not None:
        classes, origin = [str(name) for name in given], "class names given"
    else:
        stored = _json(properties, CLASSES_KEY, list, path)
        if stored is None:
            return [str(k) for k in range(outputs)]
        classes, origin = [str(name) for name in stored], f"class names in {path}'s metadata"
    if len(classes) != outputs:
        raise OnnxImportError(f"the model outputs {outputs} scores, but there are "
                              f"{len(classes)} {origin}")
    return classes


def _normalization(mean, std, properties: dict, channels: int, path: Path) -> Normalization:
    """The input's normalisation: given, else the metadata's, else mean 0 and std 1."""
    stored = _json(properties, INPUT_KEY, dict, path) or {}
    mean = stored.get("mean", [0.0] * channels) if mean is None else mean
    std = stored.get("std", [1.0] * channels) if std is None else std
    normalization = Normalization(mean, std)
    if len(normalization.mean) != channels:
        raise OnnxImportError(f"the model takes {channels} channels, but the normalisation "
                              f"has {len(normalization.mean)} (mean {normalization.mean})")
    return normalization


# ----------------------------------------------------------------------------
# Reading the graph
# ----------------------------------------------------------------------------

def _describe(node) -> str:
    """How messages name a node: its name (or its output) and its operator."""
    name = node.name or (node.output[0] if node.output else "?")
    op = f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
    return f"node {name!r} ({op})"


class _GraphReader:
    """Walks the graph from its input to its output and collects the layers."""

    def __init__(self, onnx, graph):
        self.onnx = onnx
        self.graph = graph
        self.constants = {tensor.name: onnx.numpy_helper.to_array(tensor)
                          for tensor in graph.initializer}
        self.producer = {name: node for node in graph.node for name in node.output if name}
        self.consumers = defaultdict(list)
        for node in graph.node:
            for name in dict.fromkeys(node.input):
                if name:
                    self.consumers[name].append(node)
        self.shapes = {}         # data value -> its shape per image: (C, H, W) or (features,)
        self._shape_values = {}  # shape-computation value -> object array, None for the batch
        self.layers: list[_Layer] = []
        self._fold_constants()
        self.input_name, self.input_shape, self.batch = self._input()

    def _fold_constants(self) -> None:
        """Give Constant nodes' outputs, and Identity copies of constants, their values.

        PyTorch's exporter writes a weight used twice as an initializer and an
        Identity of it.
        """
        for node in self.graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                self.constants[node.output[0]] = self._constant_attribute(node)
            elif node.op_type == "Identity" and node.input[0] in self.constants:
                self.constants[node.output[0]] = self.constants[node.input[0]]

    def _constant_attribute(self, node) -> np.ndarray:
        (attribute,) = node.attribute
        value = self.onnx.helper.get_attribute_value(attribute)
        if attribute.name == "value":
            return self.onnx.numpy_helper.to_array(value)
        if attribute.name in ("value_float", "value_floats"):
            return np.array(value, np.float32)
        if attribute.name in ("value_int", "value_ints"):
            return np.array(value, np.int64)
        raise OnnxImportError(f"{_describe(node)}: a constant given as {attribute.name!r} is "
                              f"not a number tinyconv can use")

    def _input(self):
        """The graph's one real input: its name, (C, H, W) and its batch size (None if free)."""
        inputs = [value for value in self.graph.input if value.name not in self.constants]
        if len(inputs) != 1:
            raise OnnxImportError(f"the graph has {len(inputs)} inputs "
                                  f"{[value.name for value in inputs]}; a tinyconv model takes "
                                  f"one, the images (N, C, H, W)")
        (value,) = inputs
        tensor = value.type.tensor_type
        TensorProto = self.onnx.TensorProto
        if not value.type.HasField("tensor_type") or tensor.elem_type not in (
                TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
            raise OnnxImportError(f"the graph's input {value.name!r} is not a tensor of floats; "
                                  f"a tinyconv model takes float images (N, C, H, W)")
        dims = tensor.shape.dim
        if len(dims) != 4:
            raise OnnxImportError(f"the graph's input {value.name!r} has {len(dims)} "
                                  f"dimensions; a tinyconv model takes images (N, C, H, W)")
        sizes = []
        for axis, dim in zip("CHW", dims[1:]):
            if not dim.HasField("dim_value") or dim.dim_value < 1:
                raise OnnxImportError(f"the graph's input {value.name!r} leaves its {axis} free "
                                      f"({dim.dim_param or '?'}); a tinyconv model takes images "
                                      f"of one fixed size (C, H, W)")
            sizes.append(dim.dim_value)
        batch = dims[0].dim_value if dims[0].HasField("dim_value") else None
        self.shapes[value.name] = tuple(sizes)
        return value.name, tuple(sizes), batch

    # ---------------------------------------------------------------- the walk

    def read(self) -> tuple[list[_Layer], tuple[int, ...]]:
        """Follow the chain from the input to the output; return the layers and the
        output's shape per image."""
        outputs = [value.name for value in self.graph.output]
        if len(outputs) != 1:
            raise OnnxImportError(f"the graph has {len(outputs)} outputs {outputs}; a tinyconv "
                                  f"model has one, the class scores (N, classes)")
        value = self.input_name
        while True:
            users = [node for node in self.consumers[value] if node.op_type != "Shape"]
            if value == outputs[0] and not users:
                break
            if len(users) != 1 or value == outputs[0]:
                self._refuse_branch(value, users)
            node = users[0]
            self._check_unused_outputs(node)
            value = self._read_node(node, value)
        shape = self.shapes[value]
        if not self.layers:
            raise OnnxImportError("the graph has no layer between its input and its output")
        if len(shape) != 1:
            raise OnnxImportError(f"the graph outputs maps {shape} per image; a tinyconv model "
                                  f"outputs one score per class (N, classes)")
        return self.layers, shape

    def _refuse_branch(self, value: str, users: list) -> None:
        """Refuse a value that feeds no node or several: name the node where
        branches merge, if the graph has one, else the one that forks."""
        for node in self.graph.node:
            computed = [name for name in dict.fromkeys(node.input)
                        if name and name not in self.constants]
            if len(computed) > 1 and node.op_type not in ("Reshape", *_SHAPE_OPS):
                raise OnnxImportError(
                    f"{_describe(node)} combines two computed tensors, {computed[0]!r} and "
                    f"{computed[1]!r} (a residual or skip connection, or a merge of "
                    f"branches); a tinyconv model is one chain of layers, each taking only "
                    f"the output of the one before")
        where = (_describe(self.producer[value]) if value in self.producer
                 else f"the graph's input {value!r}")
        if not users:
            raise OnnxImportError(f"the output of {where} goes nowhere: the graph does not "
                                  f"lead from its input to its output")
        readers = ", ".join(_describe(node) for node in users)
        also = " and the graph's output" if value in [v.name for v in self.graph.output] else ""
        raise OnnxImportError(f"the output of {where} feeds {readers}{also}: the graph "
                              f"branches; a tinyconv model is one chain of layers")

    def _check_unused_outputs(self, node) -> None:
        """Optional outputs (Dropout's mask, MaxPool's indices) must go nowhere."""
        graph_outputs = {value.name for value in self.graph.output}
        for name in node.output[1:]:
            if name and (self.consumers[name] or name in graph_outputs):
                raise OnnxImportError(f"{_describe(node)}: its extra output {name!r} is used; "
                                      f"tinyconv computes the first output only")

    def _read_node(self, node, value: str) -> str:
        """Add what ``node`` computes from ``value`` to the layers; return its output."""
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
            hint = (": tinyconv models output the scores before softmax; export the model "
                    "without its final softmax" if node.op_type in ("Softmax", "LogSoftmax")
                    else f"; it reads {', '.join(SUPPORTED_OPS)}")
            raise OnnxImportError(f"{_describe(node)}: tinyconv has no layer for this "
                                  f"operator{hint}")
        if node.input[0] != value and node.op_type not in ("Add", "MatMul"):
            raise OnnxImportError(f"{_describe(node)} takes {value!r} as input "
                                  f"{list(node.input).index(value)}, not as its data input 0")
        shape = self.shapes[value]
        reader = getattr(self, "_read_" + node.op_type)
        self.shapes[node.output[0]] = reader(node, value, shape)
        return node.output[0]

    # ------------------------------------------------------------ node helpers

    def _attributes(self, node) -> dict:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def _constant(self, node, index: int, what: str, optional: bool = False):
        """Input ``index`` of ``node``, which must be a constant (an initializer)."""
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            if optional:
                return None
            raise OnnxImportError(f"{_describe(node)} has no {what} (input {index})")
        if name not in self.constants:
            raise OnnxImportError(f"{_describe(node)}: its {what} {name!r} is computed in the "
                                  f"graph; tinyconv needs it stored, as an initializer")
        return self.constants[name]

    def _maps(self, node, shape) -> tuple[int, int, int]:
        if len(shape) != 3:
            raise OnnxImportError(f"{_describe(node)} needs maps (N, C, H, W), but vectors of "
                                  f"{shape[0]} features reach it")
        return shape

    def _vectors(self, node, shape) -> int:
        if len(shape) != 1:
            raise OnnxImportError(f"{_describe(node)} needs vectors (N, features), but maps "
                                  f"{shape} reach it; flatten them first")
        return shape[0]

    def _window(self, node, attributes: dict, kernel, hw) -> tuple[int, int, int]:
        """Kernel, stride and padding of a Conv or pool node as one number each.

        tinyconv's notation has square kernels, one stride for both axes and
        one padding for all four sides; anything else is refused.
        """
        kernel = tuple(int(k) for k in attributes.get("kernel_shape", kernel))
        strides = tuple(int(s) for s in attributes.get("strides", (1, 1)))
        if any(d != 1 for d in attributes.get("dilations", (1, 1))):
            raise OnnxImportError(f"{_describe(node)} has dilations "
                                  f"{list(attributes['dilations'])} (a dilated window); "
                                  f"tinyconv's windows are dense (dilation 1)")
        if len(kernel) != 2:
            raise OnnxImportError(f"{_describe(node)} has a {len(kernel)}-D window; tinyconv's "
                                  f"windows are 2-D")
        if kernel[0] != kernel[1]:
            raise OnnxImportError(f"{_describe(node)} has a {kernel[0]}x{kernel[1]} kernel; "
                                  f"tinyconv's model files hold square kernels only")
        if strides[0] != strides[1]:
            raise OnnxImportError(f"{_describe(node)} has strides {list(strides)}; tinyconv's "
                                  f"model files hold one stride for both axes")
        pads = self._pads(node, attributes, kernel[0], strides[0], hw)
        if len(set(pads)) != 1:
            raise OnnxImportError(f"{_describe(node)} has pads {pads} [top, left, bottom, "
                                  f"right]; tinyconv pads all four sides alike")
        return kernel[0], strides[0], pads[0]

    def _pads(self, node, attributes: dict, kernel: int, stride: int, hw) -> list[int]:
        """The pads [top, left, bottom, right], worked out when ``auto_pad`` asks for SAME."""
        auto_pad = attributes.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad in ("NOTSET", ""):
            return [int(p) for p in attributes.get("pads", (0, 0, 0, 0))]
        if auto_pad == "VALID":
            return [0, 0, 0, 0]
        begins, ends = [], []
        for size in hw:  # SAME: output size ceil(size / stride)
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            small, large = total // 2, total - total // 2
            begins.append(small if auto_pad == "SAME_UPPER" else large)
            ends.append(large if auto_pad == "SAME_UPPER" else small)
        return begins + ends

    # ------------------------------------------------------------- the layers

    def _read_Conv(self, node, value, shape):
        channels, height, width = self._maps(node, shape)
        attributes = self._attributes(node)
        weight = self._constant(node, 1, "weight")
        if attributes.get("group", 1) != 1:
            raise OnnxImportError(f"{_describe(node)} has group={attributes['group']} (a "
                                  f"grouped or depthwise convolution); tinyconv's filters "
                                  f"each see every input channel (group 1)")
        if weight.ndim != 4 or weight.shape[1] != channels:
            raise OnnxImportError(f"{_describe(node)} has weights {weight.shape}; for "
                                  f"{channels} input channels they must be "
                                  f"(F, {channels}, KH, KW)")
        kernel, stride, pad = self._window(node, attributes, weight.shape[2:], (height, width))
        if tuple(weight.shape[2:]) != (kernel, kernel):
            raise OnnxImportError(f"{_describe(node)}: kernel_shape {[kernel, kernel]} does "
                                  f"not match the weights {weight.shape}")
        filters = weight.shape[0]
        bias = self._constant(node, 2, "bias", optional=True)
        bias = np.zeros(filters) if bias is None else bias
        self._check_fits(node, kernel, pad, height, width)
        self.layers.append(_Layer("CONV", _describe(node),
                                  dict(filters=filters, kernel=kernel, stride=stride, pad=pad),
                                  dict(weight=weight, bias=bias.reshape(filters))))
        return (filters, conv_output_size(height, kernel, stride, pad),
                conv_output_size(width, kernel, stride, pad))

    def _check_fits(self, node, kernel: int, pad: int, height: int, width: int) -> None:
        if kernel > height + 2 * pad or kernel > width + 2 * pad:
            raise OnnxImportError(f"{_describe(node)}: its {kernel}x{kernel} window does not "
                                  f"fit the {height}x{width} map (padding {pad}) that reaches it")

    def _pool(self, node, shape, kind: str):
        channels, height, width = self._maps(node, shape)
        attributes = self._attributes(node)
        if "kernel_shape" not in attributes:
            raise OnnxImportError(f"{_describe(node)} has no kernel_shape")
        kernel, stride, pad = self._window(node, attributes, None, (height, width))
        self._check_fits(node, kernel, pad, height, width)
        if pad > kernel // 2:
            raise OnnxImportError(f"{_describe(node)} pads {pad} around a {kernel}x{kernel} "
                                  f"window; tinyconv pools with padding at most half the "
                                  f"window, so that no window is padding alone")
        if kind == "AVGPOOL" and pad and not attributes.get("count_include_pad", 0):
            raise OnnxImportError(f"{_describe(node)} has count_include_pad=0 (padded zeros "
                                  f"left out of the average); tinyconv's mean pooling divides "
                                  f"every window by its full size (count_include_pad=1)")
        size = [conv_output_size(n, kernel, stride, pad) for n in (height, width)]
        if attributes.get("ceil_mode", 0):
            # Rounding up adds a last, partial window wherever it changes the size.
            if size != [-(-(n - kernel + 2 * pad) // stride) + 1 for n in (height, width)]:
                raise OnnxImportError(f"{_describe(node)} has ceil_mode=1, which adds a "
                                      f"partial window on the {height}x{width} map; tinyconv "
                                      f"rounds the output size down (eq. 4.2)")
        self.layers.append(_Layer(kind, _describe(node),
                                  dict(kernel=kernel, stride=stride, pad=pad)))
        return (channels, *size)

    def _read_MaxPool(self, node, value, shape):
        return self._pool(node, shape, "MAXPOOL")

    def _read_AveragePool(self, node, value, shape):
        return self._pool(node, shape, "AVGPOOL")

    def _global_pool(self, node, shape, kind: str):
        channels, height, width = self._maps(node, shape)
        if height != width:
            raise OnnxImportError(f"{_describe(node)} pools the whole {height}x{width} map; "
                                  f"tinyconv's model files hold square windows only")
        self.layers.append(_Layer(kind, _describe(node), dict(kernel=height, stride=height,
                                                              pad=0)))
        return (channels, 1, 1)

    def _read_GlobalMaxPool(self, node, value, shape):
        return self._global_pool(node, shape, "MAXPOOL")

    def _read_GlobalAveragePool(self, node, value, shape):
        return self._global_pool(node, shape, "AVGPOOL")

    def _activate(self, node, act: str) -> None:
        """Give the activation to the CONV or FC it follows (see the module's docstring)."""
        layers = self.layers
        at = len(layers) - 1
        while at >= 0 and layers[at].kind in ("MAXPOOL", "FLATTEN"):
            at -= 1  # f(max(x)) = max(f(x)) for a non-decreasing f; flatten only reorders
        if (at >= 1 and layers[at].kind == "BN" and layers[at - 1].kind in ("CONV", "FC")
                and layers[at - 1].act is None):
            _fold_batch_norm(layers[at - 1], layers.pop(at))
            at -= 1
        if at < 0 or layers[at].kind not in ("CONV", "FC") or layers[at].act is not None:
            before = "the input" if at < 0 else layers[at].node
            already = (f", which already has {layers[at].act}" if at >= 0
                       and layers[at].act else "")
            raise OnnxImportError(f"{_describe(node)} follows {before}{already}; tinyconv "
                                  f"applies one activation right after a Conv or a fully "
                                  f"connected layer (CONV(..., act={act}))")
        layers[at].act = act
        layers[at].open_bias = False

    def _read_Relu(self, node, value, shape):
        self._activate(node, "relu")
        return shape

    def _read_Sigmoid(self, node, value, shape):
        self._activate(node, "sigmoid")
        return shape

    def _read_Tanh(self, node, value, shape):
        self._activate(node, "tanh")
        return shape

    def _flatten(self, node, shape):
        if len(shape) == 3:
            self.layers.append(_Layer("FLATTEN", _describe(node)))
        return (int(np.prod(shape)),)

    def _read_Flatten(self, node, value, shape):
        axis = self._attributes(node).get("axis", 1)
        if axis not in (1, -len(shape)):
            raise OnnxImportError(f"{_describe(node)} flattens from axis {axis}; tinyconv "
                                  f"flattens each image into a vector (axis 1)")
        return self._flatten(node, shape)

    def _read_Reshape(self, node, value, shape):
        if len(node.input) < 2:
            raise OnnxImportError(f"{_describe(node)} gives its shape as an attribute (opset "
                                  f"below 5); tinyconv reads it as input 1")
        target = self._shape_value(node.input[1]).reshape(-1).tolist()
        allow_zero = self._attributes(node).get("allowzero", 0)
        features = int(np.prod(shape))
        batch_ok = (target[:1] in ([None], [-1], [self.batch])
                    or (target[:1] == [0] and not allow_zero))
        if len(target) != 2 or not batch_ok or target[1] not in (features, -1) \
                or target == [-1, -1]:
            raise OnnxImportError(f"{_describe(node)} reshapes (N, "
                                  f"{', '.join(map(str, shape))}) to {_shape_text(target)}; "
                                  f"tinyconv reshapes only to flatten each image into a "
                                  f"vector (N, {features})")
        return self._flatten(node, shape)

    def _shape_value(self, name: str) -> np.ndarray:
        """The value of a tensor that a Reshape's shape is computed from.

        An object array of ints, with None for the batch size where it is
        read from the data's shape and not fixed.
        """
        if name in self.constants:
            return np.asarray(self.constants[name]).astype(object)
        if name in self._shape_values:
            return self._shape_values[name]
        node = self.producer.get(name)
        if node is None or node.op_type not in _SHAPE_OPS or node.domain not in ("", "ai.onnx"):
            where = _describe(node) if node is not None else f"the graph's input {name!r}"
            raise OnnxImportError(f"a Reshape's target shape comes from {where}, which "
                                  f"tinyconv cannot follow (it follows {', '.join(_SHAPE_OPS)})")
        attributes = self._attributes(node)
        if node.op_type == "Shape":
            if node.input[0] not in self.shapes:
                raise OnnxImportError(f"{_describe(node)} reads the shape of {node.input[0]!r}, "
                                      f"which is not a layer's output")
            full = [self.batch, *self.shapes[node.input[0]]]
            result = np.array(full[attributes.get("start", 0):attributes.get("end", None)],
                              dtype=object)
        elif node.op_type in ("Identity", "Cast"):
            result = self._shape_value(node.input[0])
        elif node.op_type == "Gather":
            indices = np.asarray(self._shape_value(node.input[1]), dtype=np.int64)
            result = np.take(self._shape_value(node.input[0]), indices,
                             axis=attributes.get("axis", 0))
        elif node.op_type == "Unsqueeze":
            data = self._shape_value(node.input[0])
            result = data.reshape(-1) if data.ndim == 0 else data.reshape(1, *data.shape)
        elif node.op_type == "Squeeze":
            result = self._shape_value(node.input[0]).reshape(-1)
            result = result[0] if result.size == 1 else result
        elif node.op_type == "Slice" and len(node.input) < 3:
            raise OnnxImportError(f"{_describe(node)} gives starts and ends as attributes "
                                  f"(opset below 10); tinyconv reads them as inputs")
        elif node.op_type == "Slice":
            data = self._shape_value(node.input[0])
            starts, ends = (np.asarray(self._shape_value(node.input[i]), np.int64)
                            for i in (1, 2))
            steps = (np.asarray(self._shape_value(node.input[4]), np.int64)
                     if len(node.input) > 4 and node.input[4] else [1])
            result = data[int(starts[0]):int(min(ends[0], len(data))):int(steps[0])]
        else:  # Concat
            result = np.concatenate([self._shape_value(part).reshape(-1)
                                     for part in node.input])
        self._shape_values[name] = np.asarray(result, dtype=object)
        return self._shape_values[name]

    def _read_Gemm(self, node, value, shape):
        features = self._vectors(node, shape)
        attributes = self._attributes(node)
        if attributes.get("transA", 0):
            raise OnnxImportError(f"{_describe(node)} has transA=1; a fully connected layer "
                                  f"multiplies the batch (N, features) as it is")
        weight = self._constant(node, 1, "weight B")
        if weight.ndim != 2:
            raise OnnxImportError(f"{_describe(node)} has weights of shape {weight.shape}; "
                                  f"expected a matrix")
        # tinyconv's weight is (out_features, in_features): net = a·Wᵀ + b.
        weight = weight if attributes.get("transB", 0) else weight.T
        bias = self._constant(node, 2, "bias C", optional=True)
        return self._fully_connected(node, features, weight * attributes.get("alpha", 1.0),
                                     None if bias is None else bias * attributes.get("beta", 1.0))

    def _read_MatMul(self, node, value, shape):
        features = self._vectors(node, shape)
        if node.input[0] != value:
            raise OnnxImportError(f"{_describe(node)} multiplies a constant by the data from "
                                  f"the left; a fully connected layer computes a·W")
        weight = self._constant(node, 1, "weight")
        if weight.ndim != 2:
            raise OnnxImportError(f"{_describe(node)} has weights of shape {weight.shape}; "
                                  f"expected a matrix (in_features, out_features)")
        out = self._fully_connected(node, features, weight.T, None)
        self.layers[-1].open_bias = True
        return out

    def _fully_connected(self, node, features: int, weight, bias):
        units = weight.shape[0]
        if weight.shape[1] != features:
            raise OnnxImportError(f"{_describe(node)} takes {weight.shape[1]} features, but "
                                  f"{features} reach it")
        bias = np.zeros(units) if bias is None else self._broadcast(node, bias, units)
        self.layers.append(_Layer("FC", _describe(node), dict(units=units),
                                  dict(weight=weight, bias=bias)))
        return (units,)

    def _broadcast(self, node, array, units: int) -> np.ndarray:
        try:
            return np.broadcast_to(array, (1, units)).reshape(units)
        except ValueError:
            raise OnnxImportError(f"{_describe(node)} adds a bias of shape {array.shape} to "
                                  f"{units} features") from None

    def _read_Add(self, node, value, shape):
        other = [name for name in node.input if name != value]
        last = self.layers[-1] if self.layers else None
        if len(other) != 1 or other[0] not in self.constants:
            self._refuse_branch(value, [node])
        if last is None or not last.open_bias:
            raise OnnxImportError(f"{_describe(node)} adds a constant after "
                                  f"{last.node if last else 'the input'}; tinyconv reads Add "
                                  f"only as the bias of a MatMul right before it")
        last.params["bias"] = self._broadcast(node, self.constants[other[0]], shape[0])
        last.open_bias = False
        return shape

    def _read_BatchNormalization(self, node, value, shape):
        attributes = self._attributes(node)
        if attributes.get("training_mode", 0) or not attributes.get("spatial", 1):
            raise OnnxImportError(f"{_describe(node)} is in training form (training_mode or "
                                  f"spatial=0); tinyconv reads the inference form, with the "
                                  f"running statistics")
        channels = shape[0]
        params = {}
        for index, key in enumerate(("weight", "bias", "running_mean", "running_var"), 1):
            array = self._constant(node, index, key.replace("_", " "))
            if array.size != channels:
                raise OnnxImportError(f"{_describe(node)} has {array.size} values in its "
                                      f"{key.replace('_', ' ')} for {channels} channels")
            params[key] = array.reshape(channels).astype(np.float64)
        eps = float(attributes.get("epsilon", 1e-5))
        if np.float32(eps) != np.float32(_EPS):
            # √(σ² + ε) = √((σ² + ε − 1e-5) + 1e-5): tinyconv's BN has ε = 1e-5.
            params["running_var"] = params["running_var"] + (eps - _EPS)
            if params["running_var"].min() < 0:
                raise OnnxImportError(f"{_describe(node)} has epsilon {eps:g} and a running "
                                      f"variance too small to carry tinyconv's 1e-5")
        self.layers.append(_Layer("BN", _describe(node), params=params))
        return shape

    def _read_Dropout(self, node, value, shape):
        attributes = self._attributes(node)
        ratio = self._constant(node, 1, "ratio", optional=True)
        ratio = float(attributes.get("ratio", 0.5) if ratio is None else ratio)
        training = self._constant(node, 2, "training_mode", optional=True)
        if training is not None and bool(training):
            raise OnnxImportError(f"{_describe(node)} has training_mode true; tinyconv reads "
                                  f"models for inference")
        if not 0 <= ratio < 1:
            raise OnnxImportError(f"{_describe(node)} has ratio {ratio}; tinyconv's dropout "
                                  f"drops with probability in [0, 1)")
        # The shortest decimal that is this float32: 0.3, not 0.30000001192092896.
        p = float(np.format_float_positional(np.float32(ratio), trim="-"))
        self.layers.append(_Layer("DROPOUT", _describe(node), dict(p=p)))
        return shape

    def _read_Identity(self, node, value, shape):
        return shape


def _shape_text(target: list) -> str:
    return "(" + ", ".join("N" if size is None else str(size) for size in target) + ")"


def _fold_batch_norm(layer: _Layer, norm: _Layer) -> None:
    """Fold batch normalisation into the CONV or FC before it (float64, then float32).

    BN(net) = γ·(net − μ)/√(σ² + ε) + β = s·net + (β − s·μ), s = γ/√(σ² + ε),
    and net = W·a + b, so W' = s·W (each output's row) and b' = s·(b − μ) + β.
    """
    p = norm.params
    scale = p["weight"] / np.sqrt(p["running_var"] + _EPS)
    weight = np.asarray(layer.params["weight"], np.float64)
    layer.params["weight"] = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    layer.params["bias"] = (scale * (np.asarray(layer.params["bias"], np.float64)
                                     - p["running_mean"]) + p["bias"])


# ----------------------------------------------------------------------------
# The spec and the weights
# ----------------------------------------------------------------------------

def _spec_text(input_shape, layers: list[_Layer]) -> str:
    """The spec for the layers, in canonical form; ``act=`` only where it is not
    the default (ReLU, and none for the last FC)."""
    items = [f"INPUT({','.join(map(str, input_shape))})"]
    last_fc = max((i for i, layer in enumerate(layers) if layer.kind == "FC"), default=None)
    for i, layer in enumerate(layers):
        args = [f"{name}={value}" if name in ("stride", "pad") else str(value)
                for name, value in layer.args.items()]
        if layer.kind in ("CONV", "FC"):
            default = "none" if i == last_fc else "relu"
            if (layer.act or "none") != default:
                args.append(f"act={layer.act or 'none'}")
        if layer.kind == "FLATTEN" and i + 1 < len(layers) and layers[i + 1].kind == "FC":
            continue  # implied before the first FC that meets maps
        items.append(layer.kind + (f"({','.join(args)})" if args else ""))
    return format_spec(" -> ".join(items))


def _same_layers(stored: str, spec: str) -> bool:
    """Whether spec text ``stored`` builds the same layers as ``spec``.

    The parsed elements are compared first, activations aside (their
    defaults depend on the position), so that a text unlike ``spec`` is
    never built: it could describe a model of any size.
    """
    def shape(text: str):
        parsed = parse(text)
        return ([parsed.input[name] for name in ("channels", "height", "width")],
                [(e.kind, [arg for arg in e.args if arg[0] != "act"])
                 for e in parsed.elements()])
    try:
        return shape(stored) == shape(spec) and \
            repr(build(stored, rng=0)) == repr(build(spec, rng=0))
    except ValueError:
        return False


def _state(model, layers: list[_Layer]) -> dict[str, np.ndarray]:
    """The state_dict for ``model`` (built from the layers' spec), as float32."""
    weighted = iter([layer for layer in layers if layer.params])
    state = {}
    for index, module in enumerate(model.layers):
        if isinstance(module, (Conv2d, Linear, BatchNorm2d)):
            layer = next(weighted)
            for key, array in layer.params.items():
                state[f"{index}.{key}"] = np.asarray(array, np.float32)
    return state
