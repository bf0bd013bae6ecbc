"""What tinyconv's ONNX files hold, and the one place that imports ``onnx``.

A file :func:`~tinyconv.interop.onnx_export.export_onnx` writes is pinned to
ONNX opset :data:`OPSET` and IR version :data:`IR_VERSION` rather than to the
newest ones the installed ``onnx`` package knows: runtimes refuse versions
newer than their own, and every operator a tinyconv model needs (Conv,
MaxPool, AveragePool with ``count_include_pad``, Gemm, BatchNormalization,
Dropout with its ``ratio`` input, Flatten, Relu, Sigmoid, Tanh) already has
its present form in opset 17, which onnxruntime loads from version 1.13 on.

The graph has one input, :data:`INPUT_NAME`, float32 (N, C, H, W), and one
output, :data:`OUTPUT_NAME`, float32 (N, classes): the scores before
softmax. N is the symbolic :data:`BATCH`, so any batch size runs.

The file alone is enough to use the model: its ``metadata_props`` (text
keys and values; Netron shows them as the model's properties) hold

==============  ============================================================
``classes``     JSON list of the class names; output k scores ``classes[k]``
``input``       JSON object: ``layout`` ("NCHW"), ``channels``, ``height``,
                ``width``, ``mean`` and ``std`` (one per channel) and
                ``preparation``, the rule :data:`PREPARATION` in words
``spec``        the architecture in tinyconv's pattern notation
``tinyconv``    JSON object: the model file's metadata (dataset, accuracy...)
==============  ============================================================
"""

from __future__ import annotations

__all__ = ["OPSET", "IR_VERSION", "INPUT_NAME", "OUTPUT_NAME", "BATCH", "PREPARATION",
           "CLASSES_KEY", "INPUT_KEY", "SPEC_KEY", "TINYCONV_KEY", "require_onnx"]

#: The opset of the default ("ai.onnx") domain that exported files import.
OPSET = 17
#: The IR (file format) version that exported files declare; IR 8 is opset 17's.
IR_VERSION = 8

INPUT_NAME, OUTPUT_NAME = "input", "logits"
#: The name of the batch dimension, left free in the input's and output's shapes.
BATCH = "N"
#: How a uint8 image becomes the input, as tinyconv's Normalization does it.
PREPARATION = "x = (pixel / 255 - mean[c]) / std[c] for each pixel (0-255) of channel c"

CLASSES_KEY, INPUT_KEY, SPEC_KEY, TINYCONV_KEY = "classes", "input", "spec", "tinyconv"


def require_onnx():
    """The ``onnx`` module, or an ImportError that says how to install it."""
    try:
        import onnx
    except ImportError:
        raise ImportError('reading and writing ONNX files needs the onnx package, which is '
                          'not installed: pip install "tinyconv[onnx]"') from None
    return onnx
