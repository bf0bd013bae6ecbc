"""Initial weights, chosen by the activation that follows the layer.

A layer's fan-in is the number of inputs each output neuron sums
(C·KH·KW for a conv filter, in_features for a fully connected neuron); its
fan-out is the number of neurons each input feeds.

- ``"he"`` (He et al., 2015), for ReLU: normal with standard deviation
  sqrt(2 / fan_in). ReLU zeroes half of its inputs, so doubling the variance
  keeps the activations' scale the same from layer to layer.
- ``"xavier"`` (Glorot and Bengio, 2010), for sigmoid and tanh: uniform on
  ±sqrt(6 / (fan_in + fan_out)), which keeps the variance of both the
  activations and the gradients.

Every draw comes from an explicit ``numpy.random.Generator``: tinyconv has
no global random state, so the same seed gives the same weights, bit for bit.
"""

from __future__ import annotations

import numpy as np

from ..checks import as_generator

INITS = ("he", "xavier")


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in) or (out, in, KH, KW)."""
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def init_weight(shape: tuple[int, ...], init: str = "he", rng=None,
                dtype=np.float32) -> np.ndarray:
    """A new weight array of ``shape`` drawn by the rule ``init``."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    generator = as_generator(rng)
    fan_in, fan_out = fans(shape)
    if init == "he":
        weight = generator.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
    else:
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        weight = generator.uniform(-bound, bound, size=shape)
    return weight.astype(dtype)
