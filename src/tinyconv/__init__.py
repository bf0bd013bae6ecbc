"""tinyconv: the convolutional neural network of the tutorial, from scratch in NumPy.

The layers (:mod:`tinyconv.layers`) are thin objects over the fast,
vectorised functions of :mod:`tinyconv.functional`; :mod:`tinyconv.reference`
writes the same mathematics out literally, as the tutorial does.
"""

from . import functional, reference
from .gradcheck import gradcheck
from .layers import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, Identity,
                     Linear, MaxPool2d, Module, Parameter, ReLU, Sequential, Sigmoid, Tanh)
from .losses import CrossEntropyLoss, MSELoss

__version__ = "0.1.0"

__all__ = [
    "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "CrossEntropyLoss", "Dropout",
    "Flatten", "Identity", "Linear", "MSELoss", "MaxPool2d", "Module", "Parameter", "ReLU",
    "Sequential", "Sigmoid", "Tanh", "functional", "gradcheck", "reference",
]
