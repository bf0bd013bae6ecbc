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
- :mod:`tinyconv.app`: what the tool makes: pictures, the HTML report, the benchmark;
- :mod:`tinyconv.cli`: the command line, one module per command.
"""

import sys

from .interop import export_onnx, import_onnx
from .nn import functional
from .nn.gradcheck import gradcheck
from .nn.layers import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, Identity,
                        Linear, MaxPool2d, Module, Parameter, ReLU, Sequential, Sigmoid, Tanh)
from .nn.losses import CrossEntropyLoss, MSELoss
from .tutorial import reference
# The training API: what the command line does, from Python.
from .data.datasets import Dataset, load_dataset
from .data.loader import Augment, Normalization
from .models.presets import PRESETS, resolve
from .models.serialize import load_model, save_model
from .models.spec import build
from .training.evaluation import evaluate, predict_proba
from .training.loop import fit
from .training.optim import SGD, Adam, CosineLR, StepLR
from .training.run import train

# ``import tinyconv.functional`` and ``from tinyconv.reference import ...`` keep
# working: README.md documents both names, and outside code imports them.
sys.modules[__name__ + ".functional"] = functional
sys.modules[__name__ + ".reference"] = reference

__version__ = "0.1.0"

__all__ = [
    "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "CrossEntropyLoss", "Dropout",
    "Flatten", "Identity", "Linear", "MSELoss", "MaxPool2d", "Module", "Parameter", "ReLU",
    "Sequential", "Sigmoid", "Tanh", "functional", "gradcheck", "reference",
    "Adam", "Augment", "CosineLR", "Dataset", "Normalization", "PRESETS", "SGD", "StepLR",
    "build", "evaluate", "export_onnx", "fit", "import_onnx", "load_dataset", "load_model",
    "predict_proba", "resolve", "save_model", "train",
]
