"""tinyconv: the convolutional neural network of the tutorial, from scratch in NumPy.

The package, from the arithmetic up (ARCHITECTURE.md draws it):

- :mod:`tinyconv.checks`: input checks and the shape rules (eq. 4.2/4.3);
- :mod:`tinyconv.nn`: the fast functions (:mod:`tinyconv.functional`), the
  layers over them, losses, initialisation, gradient checking;
- :mod:`tinyconv.tutorial`: the tutorial's formulas written out literally
  (:mod:`tinyconv.reference`) and the explanations built on them;
- :mod:`tinyconv.data`: datasets, image files, batches;
- :mod:`tinyconv.models`: the spec language, the presets, model files;
- :mod:`tinyconv.training`: optimizers, the training loop, checkpoints;
- :mod:`tinyconv.interop`: ONNX files written and read (:func:`export_onnx`,
  :func:`import_onnx`; they need the optional ``onnx`` package);
- :mod:`tinyconv.app`: the command line and what it draws.
"""

import sys

from .interop import export_onnx, import_onnx
from .nn import functional
from .nn.gradcheck import gradcheck
from .nn.layers import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, Identity,
                        Linear, MaxPool2d, Module, Parameter, ReLU, Sequential, Sigmoid, Tanh)
from .nn.losses import CrossEntropyLoss, MSELoss
from .tutorial import reference

# ``import tinyconv.functional`` and ``from tinyconv.reference import ...`` keep
# working: README.md documents both names, and outside code imports them.
sys.modules[__name__ + ".functional"] = functional
sys.modules[__name__ + ".reference"] = reference

__version__ = "0.1.0"

__all__ = [
    "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "CrossEntropyLoss", "Dropout",
    "Flatten", "Identity", "Linear", "MSELoss", "MaxPool2d", "Module", "Parameter", "ReLU",
    "Sequential", "Sigmoid", "Tanh", "export_onnx", "functional", "gradcheck", "import_onnx",
    "reference",
]
