"""Interoperability: a tinyconv model in other tools' formats, and theirs in tinyconv.

ONNX (Open Neural Network Exchange) is the format that runtimes (onnxruntime,
phones, browsers), viewers (Netron) and other frameworks (PyTorch, Keras)
share. Its graph of operators maps one to one onto a tinyconv model's chain
of layers:

- :mod:`tinyconv.interop.onnx_format`: the versions tinyconv writes, the
  metadata it stores, and the one place that imports the ``onnx`` package;
- :mod:`tinyconv.interop.onnx_export`: a tinyconv model written as ONNX
  (:func:`export_onnx`);
- :mod:`tinyconv.interop.onnx_import`: an ONNX graph read back as a tinyconv
  model file (:func:`import_onnx`), or refused with the node that cannot be.

The ``onnx`` package is an optional dependency (``pip install
"tinyconv[onnx]"``): it is imported inside the functions, so that the rest
of tinyconv needs NumPy alone.
"""

from .onnx_export import export_onnx
from .onnx_import import OnnxImportError, import_onnx

__all__ = ["export_onnx", "import_onnx", "OnnxImportError"]
