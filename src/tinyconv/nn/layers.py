"""Layers: thin objects that hold parameters and call :mod:`tinyconv.nn.functional`.

A layer's ``forward(x)`` (also ``layer(x)``) keeps what its backward needs;
``backward(grad_output)`` returns the gradient with respect to the layer's
input (the tutorial's sensitivity map passed back, eq. 5.1-5.3) and *adds*
each parameter's gradient into that parameter's ``.grad``, so gradients
accumulate until :meth:`Module.zero_grad`. Backward never writes into its
argument.

Shapes follow PyTorch: images are NCHW (batch, channels, height, width);
conv weights are (out_channels, in_channels, KH, KW); linear weights are
(out_features, in_features).

Inside, the arithmetic runs batch last, (C, H, W, N) and (features, N), the
layout of :mod:`tinyconv.nn.functional` (its docstring says why).
``forward`` and ``backward`` convert on the way in and out, and each layer
does its work in ``forward_batch_last`` and ``backward_batch_last``. A
:class:`Sequential` model converts once at its edges and passes batch-last
arrays from layer to layer.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..checks import (as_float_array, as_generator, check_grad, check_int, check_ndim,
                      check_pool_padding, pair)
from . import functional as F
from .init import init_weight

__all__ = [
    "Parameter", "Module", "Conv2d", "MaxPool2d", "AvgPool2d", "Linear", "Flatten",
    "ReLU", "Sigmoid", "Tanh", "Identity", "Sequential", "BatchNorm2d", "BatchNorm1d",
    "Dropout",
]


class Parameter:
    """A trainable array ``data`` and the gradient ``grad`` accumulated into it.

    ``grad`` always has ``data``'s shape and dtype: assigning ``data`` an
    array of another dtype (float64 for exact checks, say) gives a fresh zero
    gradient of that dtype. The shape is fixed at creation, so a model cannot
    silently change its architecture.
    """

    def __init__(self, data):
        self._data = None
        self.grad = None
        self.data = data

    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value) -> None:
        value = np.asarray(value)
        if value.dtype.kind != "f":
            raise TypeError(f"parameter data must be a floating array, got dtype {value.dtype}")
        if self._data is not None and value.shape != self._data.shape:
            raise ValueError(f"parameter data must keep its shape {self._data.shape}, "
                             f"got {value.shape}")
        self._data = value
        if self.grad is None or self.grad.dtype != value.dtype:
            self.grad = np.zeros_like(value)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def size(self) -> int:
        return self._data.size

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of every layer and of :class:`Sequential`.

    A module finds its own parameters by walking its attributes (Parameters,
    sub-Modules and lists of them), in the order they were assigned.
    """

    training = True
    #: Names of array attributes that are state but not trained (batch
    #: normalisation's running statistics, say); saved with the parameters.
    buffers: tuple[str, ...] = ()
    #: The batch-first input the layer takes, such as "(N, C, H, W)"; None
    #: for any shape. :meth:`check_input` holds inputs to it.
    input_layout: str | None = None
    #: The shape and dtype of the last output of :meth:`forward`, which
    #: :meth:`backward` checks δ against.
    _output = None

    def forward(self, x):
        """The output for a batch-first input (N, C, H, W) or (N, features).

        Checks ``x``, moves the batch last, runs :meth:`forward_batch_last`
        and moves the batch of the output first again.
        """
        if type(self).forward_batch_last is Module.forward_batch_last:
            raise NotImplementedError(f"{type(self).__name__} implements neither forward "
                                      f"nor forward_batch_last")
        x = as_float_array(x, f"{type(self).__name__} input")
        self.check_input(x.shape)
        out = F.batch_first(self.forward_batch_last(F.batch_last(x)))
        self._output = (out.shape, out.dtype)
        return out

    def backward(self, grad_output, input_grad=True):
        """Take δ of the output; add parameter gradients; return δ of the input.

        δ is batch first, shaped as the output of the last :meth:`forward`.
        With ``input_grad=False`` the layer still adds its parameters'
        gradients but skips computing the input's, and returns None: the
        first layer of a network needs no δ for the images themselves, and
        for a conv layer that skip is a third of its backward.
        """
        if type(self).backward_batch_last is Module.backward_batch_last:
            raise NotImplementedError(f"{type(self).__name__} implements neither backward "
                                      f"nor backward_batch_last")
        shape, dtype = self._saved(self._output)
        grad_output = check_grad(grad_output, shape, dtype, type(self).__name__)
        grad_input = self.backward_batch_last(F.batch_last(grad_output), input_grad)
        return None if grad_input is None else F.batch_first(grad_input)

    def forward_batch_last(self, x):
        """:meth:`forward` on a batch-last input (C, H, W, N) or (features, N).

        A layer implements this or :meth:`forward`. One of your own that
        implements only ``forward``, batch first as in PyTorch, gets it
        wrapped here in conversions, and so works inside a Sequential too.
        """
        return F.batch_last(self.forward(F.batch_first(x)))

    def backward_batch_last(self, grad_output, input_grad=True):
        """:meth:`backward` with δ batch last; returns δ of the input batch last.

        Implemented, or else :meth:`backward` wrapped, as :meth:`forward_batch_last`.
        """
        grad_input = self.backward(F.batch_first(grad_output), input_grad)
        return None if grad_input is None else F.batch_last(grad_input)

    def check_input(self, shape: tuple[int, ...]) -> None:
        """Refuse an input of batch-first ``shape`` that the layer cannot take.

        The message names the shape as the user gave it, batch first. The
        check is on ``input_layout``'s number of dimensions and, when
        :meth:`input_width` names one, the size of axis 1.
        """
        if self.input_layout is None:
            return
        name = type(self).__name__
        ndim = self.input_layout.count(",") + 1
        if len(shape) != ndim:
            raise ValueError(f"{name} input must have {ndim} dimensions {self.input_layout}, "
                             f"got {len(shape)} dimensions with shape {shape}")
        width = self.input_width()
        if width is not None and shape[1] != width[0]:
            raise ValueError(f"{name} expected {width[0]} {width[1]} on axis 1, got input "
                             f"shape {shape}; it takes {self.input_layout}")

    def input_width(self) -> tuple[int, str] | None:
        """The size the input needs on axis 1 and what it counts, or None for any."""
        return None

    def __call__(self, x):
        return self.forward(x)

    def _attributes(self):
        """Yield ``(key, value)`` for every attribute, list items keyed by index."""
        for attribute, value in vars(self).items():
            if isinstance(value, list):
                yield from ((str(index), item) for index, item in enumerate(value))
            else:
                yield attribute, value

    def named_parameters(self, prefix: str = ""):
        """Yield ``(name, Parameter)`` pairs such as ``("0.weight", p)``."""
        for key, value in self._attributes():
            if isinstance(value, Parameter):
                yield prefix + key, value
            elif isinstance(value, Module):
                yield from value.named_parameters(prefix + key + ".")

    def parameters(self) -> list[Parameter]:
        """The module's Parameters, each once."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = ""):
        """Yield ``(name, array)`` for every buffer, named like parameters."""
        for name in self.buffers:
            yield prefix + name, getattr(self, name)
        for key, value in self._attributes():
            if isinstance(value, Module):
                yield from value.named_buffers(prefix + key + ".")

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter's and buffer's array by name (``"0.weight"``).

        The arrays are the module's own, not copies: copy them to keep a
        snapshot that later training must not change.
        """
        state = {name: p.data for name, p in self.named_parameters()}
        state.update(self.named_buffers())
        return state

    def load_state_dict(self, state) -> None:
        """Copy arrays from ``state`` (a mapping name -> array) into the module.

        Names and shapes must match :meth:`state_dict` exactly; otherwise a
        ValueError lists what is missing, unexpected or mis-shaped (a
        TypeError names an array that is not numeric), and the module is left
        unchanged.
        """
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"state does not fit the model: missing {missing}, "
                             f"unexpected {unexpected}")
        # Every array is read and checked before the first is copied, so that
        # a bad entry cannot leave the model half loaded.
        arrays = {name: as_float_array(state[name], f"state {name!r}") for name in own}
        for name, array in own.items():
            if arrays[name].shape != array.shape:
                raise ValueError(f"state {name!r} has shape {arrays[name].shape}, "
                                 f"the model needs {array.shape}")
        for name, array in own.items():
            array[...] = arrays[name]

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero."""
        for p in self.parameters():
            p.grad[...] = 0

    def modules(self):
        """Yield this module and every module inside it."""
        yield self
        for _, value in self._attributes():
            if isinstance(value, Module):
                yield from value.modules()

    def train(self, mode: bool = True) -> "Module":
        """Switch training behaviour (dropout, batch statistics) on or off."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> "Module":
        """Same as ``train(False)``: the mode for evaluation and prediction."""
        return self.train(False)

    @contextmanager
    def evaluating(self):
        """Eval mode inside a ``with`` block; afterwards every module's own mode
        comes back, even where they differed (a frozen batch norm, say)."""
        modes = [(module, module.training) for module in self.modules()]
        self.eval()
        try:
            yield self
        finally:
            for module, mode in modes:
                module.training = mode

    def _accumulate(self, grad_weight, grad_bias) -> None:
        """Add a backward's gradients into ``weight.grad`` and, if any, ``bias.grad``.

        Gradients add up rather than replace, so that a batch may be split
        into several backward passes; :meth:`zero_grad` starts afresh.
        """
        self.weight.grad += grad_weight
        if self.bias is not None:
            self.bias.grad += grad_bias

    def _saved(self, cache):
        """Return what forward saved, or say that forward must come first."""
        if cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return cache

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class Conv2d(Module):
    """A convolutional layer: F filters of size C x KH x KW (eq. 4.4).

    Args:
        in_channels: C, the input's depth.
        out_channels: F, the number of filters, which is the output's depth.
        kernel_size: int or (KH, KW); non-square kernels work.
        stride: int or (SH, SW). padding: int or (PH, PW), rings of zeros.
        bias: whether each filter has a bias w_b.
        init: ``"he"`` (for ReLU, the default) or ``"xavier"`` (for sigmoid
            and tanh), see :mod:`tinyconv.nn.init`.
        rng: a seed or ``numpy.random.Generator`` for the initial weights;
            None draws fresh entropy (there is no global random state).
        dtype: the parameters' dtype, float32 by default.

    Shape:
        input (N, C, H, W) -> output (N, F, OH, OW) with
        OH = (H - KH + 2·PH) // SH + 1 (eq. 4.3), OW likewise (eq. 4.2).

    Parameters: ``weight`` (F, C, KH, KW) and ``bias`` (F,): (C·KH·KW + 1)·F
    numbers, whatever the input's width and height.
    """

    input_layout = "(N, C, H, W)"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 bias=True, *, init="he", rng=None, dtype=np.float32):
        self.in_channels = check_int(in_channels, "in_channels")
        self.out_channels = check_int(out_channels, "out_channels")
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride, "stride", 1)
        self.padding = pair(padding, "padding", 0)
        shape = (self.out_channels, self.in_channels) + self.kernel_size
        self.weight = Parameter(init_weight(shape, init, rng, dtype))
        self.bias = Parameter(np.zeros(self.out_channels, dtype)) if bias else None
        self._cache = None

    def input_width(self):
        return self.in_channels, "channels"

    def forward_batch_last(self, x):
        bias = None if self.bias is None else self.bias.data
        out, self._cache = F.conv2d_forward(x, self.weight.data, bias, self.stride, self.padding)
        return out

    def backward_batch_last(self, grad_output, input_grad=True):
        grad_x, grad_weight, grad_bias = F.conv2d_backward(grad_output, self._saved(self._cache),
                                                           input_grad)
        self._accumulate(grad_weight, grad_bias)
        return grad_x

    def extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if self.stride != (1, 1):
            text += f", stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.bias is None:
            text += ", bias=False"
        return text


class _Pool2d(Module):
    """Shared arguments of the pooling layers; they have no parameters."""

    _forward = _backward = None
    input_layout = "(N, C, H, W)"

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", 1)
        self.padding = pair(padding, "padding", 0)
        check_pool_padding(self.kernel_size, self.padding, type(self).__name__)
        self._cache = None

    def forward_batch_last(self, x):
        out, self._cache = type(self)._forward(x, self.kernel_size, self.stride, self.padding)
        return out

    def backward_batch_last(self, grad_output, input_grad=True):
        cache = self._saved(self._cache)
        return type(self)._backward(grad_output, cache) if input_grad else None

    def extra_repr(self):
        text = f"kernel_size={self.kernel_size}"
        if self.stride != self.kernel_size:
            text += f", stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        return text


class MaxPool2d(_Pool2d):
    """Max pooling over KH x KW windows, each channel on its own.

    Args:
        kernel_size: int or (KH, KW). stride: defaults to kernel_size; smaller
            strides make overlapping windows. padding: rings of -inf, at most
            half the kernel (PyTorch's meaning).

    Shape: (N, C, H, W) -> (N, C, OH, OW), OH and OW by eq. 4.2/4.3.
    """

    _forward = staticmethod(F.max_pool2d_forward)
    _backward = staticmethod(F.max_pool2d_backward)


class AvgPool2d(_Pool2d):
    """Mean pooling (the tutorial's mean pooling) over KH x KW windows.

    Arguments and shapes as :class:`MaxPool2d`; padded zeros count in the
    average, as in PyTorch.
    """

    _forward = staticmethod(F.avg_pool2d_forward)
    _backward = staticmethod(F.avg_pool2d_backward)


class Linear(Module):
    """A fully connected layer: net = W·a + b.

    Args:
        in_features, out_features: sizes of the input and output vectors.
        bias: whether to add b. init, rng, dtype: as :class:`Conv2d`.

    Shape: (N, in_features) -> (N, out_features). ``weight`` is
    (out_features, in_features), ``bias`` (out_features,).
    """

    input_layout = "(N, in_features)"

    def __init__(self, in_features, out_features, bias=True, *, init="he", rng=None,
                 dtype=np.float32):
        self.in_features = check_int(in_features, "in_features")
        self.out_features = check_int(out_features, "out_features")
        self.weight = Parameter(init_weight((self.out_features, self.in_features),
                                            init, rng, dtype))
        self.bias = Parameter(np.zeros(self.out_features, dtype)) if bias else None
        self._cache = None

    def input_width(self):
        return self.in_features, "features"

    def forward_batch_last(self, x):
        bias = None if self.bias is None else self.bias.data
        out, self._cache = F.linear_forward(x, self.weight.data, bias)
        return out

    def backward_batch_last(self, grad_output, input_grad=True):
        grad_x, grad_weight, grad_bias = F.linear_backward(grad_output, self._saved(self._cache),
                                                           input_grad)
        self._accumulate(grad_weight, grad_bias)
        return grad_x

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}"
                + ("" if self.bias is not None else ", bias=False"))


class Flatten(Module):
    """Flatten every sample into a vector: (N, C, H, W) -> (N, C·H·W).

    The vector lists channel by channel, row by row, as PyTorch's flatten
    does. Batch last, (C, H, W, N) -> (C·H·W, N) is the same order and
    costs no copy.
    """

    def __init__(self):
        self._cache = None

    def check_input(self, shape):
        if len(shape) < 2:
            raise ValueError(f"flatten input must have a batch axis and at least one more, "
                             f"got shape {shape}")

    def forward_batch_last(self, x):
        x = as_float_array(x, "flatten input")
        self._cache = (x.shape, x.dtype)
        # The features counted, not -1: a worker's share of a batch may be empty.
        return x.reshape(int(np.prod(x.shape[:-1])), x.shape[-1])

    def backward_batch_last(self, grad_output, input_grad=True):
        shape, dtype = self._saved(self._cache)
        if not input_grad:
            return None
        flat = (int(np.prod(shape[:-1])), shape[-1])
        return check_grad(grad_output, flat, dtype, "flatten").reshape(shape)


class _Activation(Module):
    """An element-wise activation a = f(net); any shape."""

    _forward = _backward = None

    def __init__(self):
        self._cache = None

    def forward_batch_last(self, x):
        out, self._cache = type(self)._forward(x)
        return out

    def backward_batch_last(self, grad_output, input_grad=True):
        cache = self._saved(self._cache)
        return type(self)._backward(grad_output, cache) if input_grad else None


class ReLU(_Activation):
    """f(x) = max(0, x), the tutorial's activation of choice."""

    _forward = staticmethod(F.relu_forward)
    _backward = staticmethod(F.relu_backward)


class Sigmoid(_Activation):
    """f(x) = 1 / (1 + e^-x), safe for any input."""

    _forward = staticmethod(F.sigmoid_forward)
    _backward = staticmethod(F.sigmoid_backward)


class Tanh(_Activation):
    """f(x) = tanh(x)."""

    _forward = staticmethod(F.tanh_forward)
    _backward = staticmethod(F.tanh_backward)


class Identity(Module):
    """f(x) = x: a layer that passes its input and δ through unchanged."""

    def __init__(self):
        self._cache = None

    def forward_batch_last(self, x):
        x = as_float_array(x, "identity input")
        self._cache = (x.shape, x.dtype)
        return x

    def backward_batch_last(self, grad_output, input_grad=True):
        shape, dtype = self._saved(self._cache)
        return check_grad(grad_output, shape, dtype, "identity") if input_grad else None


class Sequential(Module):
    """Layers applied one after another: the tutorial's
    ``INPUT -> [[CONV]*N -> POOL?]*M -> [FC]*K``.

    ``forward`` runs the layers in order; ``backward`` runs them in reverse,
    passing each layer's input gradient to the layer before it (and
    ``input_grad`` to the first layer). Between layers the arrays stay batch
    last; only the model's input, output and their gradients are converted.
    Parameters are named by position: ``0.weight``, ``0.bias``, ``3.weight``...
    """

    def __init__(self, *layers):
        for index, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential takes layers (Modules), got "
                                f"{type(layer).__name__} at position {index}")
        self.layers = list(layers)
        self._order = None  # the order the last forward ran the layers in

    def running_order(self) -> tuple[int, ...]:
        """The positions of the layers in the order forward runs them.

        As listed, except that a ReLU right before a MaxPool2d runs after it.
        The two commute, max(relu(x)) = relu(max(x)), and their gradients are
        the same too (where the maximum is negative both give zero), so the
        outputs and gradients are equal bit for bit; pooling first leaves
        ReLU a quarter of the values under 2x2 windows.
        """
        order = list(range(len(self.layers)))
        for i in range(len(order) - 1):
            if (type(self.layers[order[i]]) is ReLU
                    and type(self.layers[order[i + 1]]) is MaxPool2d):
                order[i], order[i + 1] = order[i + 1], order[i]
        return tuple(order)

    def forward_batch_last(self, x):
        self._order = self.running_order()
        for index in self._order:
            layer = self.layers[index]
            # Each layer checks its input as the user would have written it.
            layer.check_input(x.shape[-1:] + x.shape[:-1])
            x = layer.forward_batch_last(x)
        return x

    def backward_batch_last(self, grad_output, input_grad=True):
        if not self.layers:
            return grad_output if input_grad else None
        order = self._order or self.running_order()
        for index in reversed(order[1:]):
            grad_output = self.layers[index].backward_batch_last(grad_output)
        return self.layers[order[0]].backward_batch_last(grad_output, input_grad)

    def __getitem__(self, index):
        return self.layers[index]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        lines = [f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + "\n)" if lines else "Sequential()"


class BatchNorm2d(Module):
    """Batch normalisation of each channel, with PyTorch's semantics.

    Training: each channel is normalised with its batch mean and biased
    variance over (N, H, W), then scaled by ``weight`` (gamma) and shifted by
    ``bias`` (beta). The running statistics move towards the batch's:
    ``running = (1 - momentum) · running + momentum · batch``, with the
    *unbiased* variance (M / (M - 1) times the biased one, M = N·H·W).
    Evaluation (:meth:`Module.eval`): the running statistics normalise, so a
    prediction does not depend on the rest of the batch.

    Args:
        num_features: C, the number of channels.
        eps: added to the variance before the square root.
        momentum: weight of the newest batch in the running statistics.
        dtype: of the parameters and running statistics, float32 by default.

    Shape: (N, C, H, W) -> (N, C, H, W). Parameters ``weight`` (C,), ones,
    and ``bias`` (C,), zeros; buffers ``running_mean`` (C,), zeros, and
    ``running_var`` (C,), ones, saved in :meth:`Module.state_dict`.
    """

    buffers = ("running_mean", "running_var")
    input_layout = "(N, C, H, W)"
    #: None on one process; while workers share each batch, the function that
    #: gathers their statistics (set by :mod:`tinyconv.training.distributed`).
    gather = None

    def __init__(self, num_features, eps=1e-5, momentum=0.1, *, dtype=np.float32):
        self.num_features = check_int(num_features, "num_features")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.weight = Parameter(np.ones(self.num_features, dtype))
        self.bias = Parameter(np.zeros(self.num_features, dtype))
        self.running_mean = np.zeros(self.num_features, dtype)
        self.running_var = np.ones(self.num_features, dtype)
        self._cache = None

    def input_width(self):
        return self.num_features, "channels"

    def _as_maps(self, x):
        """The batch-last input as (C, H, W, N) maps; BatchNorm1d overrides this."""
        return x

    def forward_batch_last(self, x):
        maps = self._as_maps(as_float_array(x, f"{type(self).__name__} input"))
        if self.training:
            out, cache = F.batch_norm2d_forward(maps, self.weight.data, self.bias.data,
                                                eps=self.eps, gather=self.gather)
            unbiased = cache.var * (cache.count / (cache.count - 1))
            # Written into the arrays in place: state_dict hands out these arrays.
            self.running_mean[...] = ((1 - self.momentum) * self.running_mean
                                      + self.momentum * cache.mean)
            self.running_var[...] = ((1 - self.momentum) * self.running_var
                                     + self.momentum * unbiased)
        else:
            out, cache = F.batch_norm2d_forward(maps, self.weight.data, self.bias.data,
                                                self.running_mean, self.running_var,
                                                eps=self.eps)
        self._cache = (cache, np.shape(x))
        return out.reshape(np.shape(x))

    def backward_batch_last(self, grad_output, input_grad=True):
        cache, shape = self._saved(self._cache)
        grad_output = check_grad(grad_output, shape, cache.centred.dtype, type(self).__name__)
        grad_x, grad_weight, grad_bias = F.batch_norm2d_backward(
            grad_output.reshape(cache.centred.shape), cache, self.gather)
        self._accumulate(grad_weight, grad_bias)
        return grad_x.reshape(shape) if input_grad else None

    def extra_repr(self):
        text = f"{self.num_features}"
        if self.eps != 1e-5:
            text += f", eps={self.eps}"
        if self.momentum != 0.1:
            text += f", momentum={self.momentum}"
        return text


class BatchNorm1d(BatchNorm2d):
    """Batch normalisation of each feature of a (N, C) batch of vectors.

    The same as :class:`BatchNorm2d` on the (N, C, 1, 1) maps the vectors
    equal: statistics over the batch, M = N. Shape: (N, C) -> (N, C).
    """

    input_layout = "(N, C)"

    def _as_maps(self, x):
        check_ndim(x, 2, F.VECTORS, "BatchNorm1d input")
        return x[:, None, None, :]


class Dropout(Module):
    """Inverted dropout: in training, zero each value with probability ``p``
    and scale the rest by 1 / (1 - p); in evaluation, pass the input through.

    Args:
        p: drop probability in [0, 1).
        rng: a seed or ``numpy.random.Generator`` for the masks.

    The masks come from the public attribute ``rng`` (a Generator) and from
    nothing else; assign ``layer.rng = numpy.random.default_rng(seed)`` to
    re-seed it (a trainer does so every epoch so that a resumed run draws the
    same masks as an uninterrupted one). Backward reuses forward's mask.

    Shape: any -> the same shape.
    """

    #: None on one process; while workers share each batch, ``(start, stop,
    #: total)``: this worker's columns of the whole batch, whose mask is drawn
    #: (set by :mod:`tinyconv.training.distributed`).
    columns = None

    def __init__(self, p=0.5, *, rng=None):
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise TypeError(f"p must be a number in [0, 1), got {p!r}")
        if not 0 <= p < 1:
            raise ValueError(f"p must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = as_generator(rng)
        self._cache = None

    def forward_batch_last(self, x):
        x = as_float_array(x, "dropout input")
        if not self.training or self.p == 0:
            self._cache = (x.shape, x.dtype, None)
            return x
        out, mask = F.dropout_forward(x, self.p, self.rng, self.columns)
        self._cache = (x.shape, x.dtype, mask)
        return out

    def backward_batch_last(self, grad_output, input_grad=True):
        shape, dtype, mask = self._saved(self._cache)
        if not input_grad:
            return None
        if mask is None:
            return check_grad(grad_output, shape, dtype, "dropout")
        return F.dropout_backward(grad_output, mask)

    def extra_repr(self):
        return f"p={self.p}"
