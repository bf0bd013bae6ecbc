"""``tinyconv explain``: the tutorial's computations written out, on any numbers.

The tutorial teaches with worked numbers: ``a_{0,0} = relu(1+0+1+0+1+0+0+0+1+0)
= 4``, the expanded sensitivity map, the pooled windows. The functions here do
the same for any input a learner gives:

- :func:`explain_conv`: a conv layer's forward pass, eq. 4.1-4.4: the output
  size with eq. 4.2 filled in, every output value as its products, sum, bias
  and activation, and the feature maps;
- :func:`explain_conv_backward`: δ passed back through a conv layer (eq.
  5.1-5.3) step by step, then the weight and bias gradients;
- :func:`explain_pool`: max and mean pooling, forward and backward;
and :mod:`tinyconv.tutorial.conv_gif` draws the forward pass as an animated
GIF, like the tutorial's Figure 2.

Every number printed is computed by :mod:`tinyconv.tutorial.reference`, the tutorial's
loops that the library is tested against; this module only lays the numbers
out. Each function returns text and takes NumPy
arrays or nested lists, without a batch axis:

====  ==========================================================
D     depth of the input: its channels
H, W  input height and width
N     number of filters: the depth of a conv layer's output
KH    kernel (filter or pooling window) height, KW its width
H2    output height, W2 output width (eq. 4.2 and 4.3)
====  ==========================================================
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import reference as R
from ..checks import as_float_array, pair

__all__ = ["explain_conv", "explain_conv_backward", "explain_pool", "conv_example", "ConvExample",
           "fmt", "index_text", "ACTIVATIONS"]

# The tutorial's forward example (eq. 4.1): a 5x5 image and a 3x3 filter.
TUTORIAL_IMAGE = np.array([[1, 1, 1, 0, 0],
                           [0, 1, 1, 1, 0],
                           [0, 0, 1, 1, 1],
                           [0, 0, 1, 1, 0],
                           [0, 1, 1, 0, 0]], dtype=np.float64)
TUTORIAL_FILTER = np.array([[1, 0, 1],
                            [0, 1, 0],
                            [1, 0, 1]], dtype=np.float64)

# The tutorial's backward example is a 3x3 input, a 2x2 filter and a 2x2
# sensitivity map drawn with symbols only; these numbers stand in for them.
# Powers of ten in δ keep each δ's share of a sum readable in the digits.
BACKWARD_INPUT = np.arange(1.0, 10.0).reshape(3, 3)
BACKWARD_FILTER = np.array([[1.0, 2.0],
                            [3.0, 4.0]])
BACKWARD_DELTA = np.array([[10.0, 100.0],
                           [1000.0, 10000.0]])

# The tutorial draws its 4x4 pooling example as a picture; this is the 4x4
# input of the common 2x2 max pooling figure, and a δ that mean pooling
# shares out in whole numbers.
POOL_INPUT = np.array([[1, 1, 2, 4],
                       [5, 6, 7, 8],
                       [3, 2, 1, 0],
                       [1, 2, 3, 4]], dtype=np.float64)
POOL_DELTA = np.array([[4.0, 8.0],
                       [12.0, 16.0]])

# name -> (f, f'), from the reference module; "none" is the identity.
ACTIVATIONS = {
    "relu": (R.relu, R.relu_derivative),
    "sigmoid": (R.sigmoid, R.sigmoid_derivative),
    "tanh": (R.tanh, R.tanh_derivative),
    "none": (None, None),
}


# ----------------------------------------------------------------------------
# Shaping the arrays given
# ----------------------------------------------------------------------------

def _as_volume(array, name: str) -> np.ndarray:
    """(H, W) or (D, H, W) as a float64 (D, H, W) array."""
    array = as_float_array(array, name).astype(np.float64)
    if array.ndim == 2:
        return array[None]
    if array.ndim != 3:
        raise ValueError(f"{name} must have 2 dimensions (H, W) or 3 (D, H, W), "
                         f"got {array.ndim} with shape {array.shape}")
    return array


def _as_filters(array, name: str) -> np.ndarray:
    """One filter (KH, KW) or (D, KH, KW), or N filters (N, D, KH, KW), as 4-D."""
    array = as_float_array(array, name).astype(np.float64)
    if array.ndim in (2, 3):
        return array.reshape((1,) * (4 - array.ndim) + array.shape)
    if array.ndim != 4:
        raise ValueError(f"{name} must be one filter (KH, KW) or (D, KH, KW), or several "
                         f"(N, D, KH, KW), got {array.ndim} dimensions with shape "
                         f"{array.shape}")
    return array


def _as_biases(array, n_filters: int, name: str) -> np.ndarray:
    """A number (the same bias for every filter) or one bias per filter, as (N,)."""
    array = as_float_array(array, name).astype(np.float64)
    if array.ndim == 0:
        return np.full(n_filters, float(array))
    if array.shape != (n_filters,):
        raise ValueError(f"{name} must be a number or one per filter ({n_filters},), "
                         f"got shape {array.shape}")
    return array


def _activation_functions(name: str):
    """(f, f') for an activation name, or a ValueError naming the choices."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


# ----------------------------------------------------------------------------
# Writing numbers
# ----------------------------------------------------------------------------

def fmt(value) -> str:
    """A number as a learner writes it: ``4`` rather than ``4.0``, at most 4 decimals."""
    value = round(float(value), 4)
    if value == 0:
        return "0"   # also -0.0
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4f}".rstrip("0")


def _factor(value) -> str:
    """A factor of a product: negative numbers in parentheses, ``2·(-1)``."""
    text = fmt(value)
    return f"({text})" if text.startswith("-") else text


def _sum(values) -> str:
    """``1 + 0 + (-2)``: the terms of a sum as the tutorial writes them."""
    return " + ".join(_factor(v) for v in values)


def _grid(array, indent: str = "    ") -> list[str]:
    """A 2-D array as right-aligned rows of numbers."""
    cells = [[fmt(v) for v in row] for row in np.asarray(array)]
    width = max(len(cell) for row in cells for cell in row)
    return [indent + "  ".join(cell.rjust(width) for cell in row) for row in cells]


def _labelled(title: str, array) -> list[str]:
    """A title line and a 2-D array under it."""
    return [title] + _grid(array)


def _volume(title: str, volume) -> list[str]:
    """A (D, H, W) array, one channel after the other (no channel label if D == 1)."""
    if len(volume) == 1:
        return _labelled(f"{title}:", volume[0])
    lines = []
    for d, channel in enumerate(volume):
        lines += _labelled(f"{title}, channel {d}:", channel)
    return lines


def index_text(*indices) -> str:
    """Indices as subscripts are written: ``index_text(0, 1, 2) == "0,1,2"``."""
    return ",".join(str(i) for i in indices)


def _shape(shape) -> str:
    return "x".join(str(s) for s in shape)


def _size_line(axis: str, size: int, kernel: int, padding: int, stride: int) -> str:
    """Eq. 4.2 (W) or 4.3 (H) with the numbers filled in, and its result."""
    out = R.output_size(size, kernel, padding, stride)
    numerator = size - kernel + 2 * padding
    equation = "4.2" if axis == "W" else "4.3"
    line = (f"  {axis}2 = ({axis}1 - F + 2P)/S + 1 = ({size} - {kernel} + 2·{padding})/{stride}"
            f" + 1")
    if numerator % stride:
        line += (f" = ⌊{numerator}/{stride}⌋ + 1 = {out}   (eq. {equation}; the division "
                 f"floors: the last {'columns' if axis == 'W' else 'rows'} that no window "
                 f"reaches are dropped)")
    else:
        line += f" = {out}   (eq. {equation})"
    return line


# ----------------------------------------------------------------------------
# Convolution, forward
# ----------------------------------------------------------------------------

class ConvExample(NamedTuple):
    """A conv layer's arrays as an explanation reads them, and its feature maps."""

    x: np.ndarray               # (D, H, W)
    filters: np.ndarray         # (N, D, KH, KW)
    biases: np.ndarray          # (N,)
    f: object                   # the activation function, or None
    feature_maps: np.ndarray    # (N, H2, W2), computed by the reference
    stride: tuple               # (SH, SW)
    padding: tuple              # (PH, PW)
    x_padded: np.ndarray        # (D, H + 2·PH, W + 2·PW)


def conv_example(x, filters, biases, stride, padding, activation: str) -> ConvExample:
    """Read and check a conv layer's arguments (as :func:`explain_conv` takes
    them) and compute its feature maps with the reference; the reference
    checks every shape and that the filter fits, before anything is written."""
    x = _as_volume(x, "input")
    filters = _as_filters(filters, "filter")
    biases = _as_biases(biases, filters.shape[0], "bias")
    f, _ = _activation_functions(activation)
    feature_maps = R.conv_forward(x, filters, biases, stride, padding, activation=f)
    stride, padding = pair(stride, "stride", 1), pair(padding, "padding", 0)
    return ConvExample(x, filters, biases, f, feature_maps, stride, padding,
                       R.zero_pad(x, padding))


def explain_conv(x=TUTORIAL_IMAGE, filters=TUTORIAL_FILTER, biases=0.0, stride=1, padding=0,
                 activation: str = "relu") -> str:
    """A conv layer's forward pass written out, as the tutorial does for eq. 4.1/4.4.

    Args:
        x: the input, (H, W) or (D, H, W). Default: the tutorial's 5x5 image.
        filters: one filter (KH, KW) or (D, KH, KW), or (N, D, KH, KW).
            Default: the tutorial's 3x3 filter.
        biases: a number for every filter, or (N,).
        stride: int S or (SH, SW). padding: int P or (PH, PW).
        activation: "relu", "sigmoid", "tanh" or "none".

    Returns:
        The explanation: the output size (eq. 4.2, 4.3), every output value
        ``a_{i,j}`` (``a_{k,i,j}`` for N > 1 filters) with its products, sum,
        bias and activation, and the N feature maps of H2 x W2.
    """
    x, filters, biases, f, feature_maps, (sh, sw), (ph, pw), x_padded = conv_example(
        x, filters, biases, stride, padding, activation)
    n_filters, depth, kh, kw = filters.shape

    lines = [f"Convolution (eq. 4.1, 4.4): input {_shape(x.shape)} (D x H x W), "
             f"{n_filters} filter{'s' if n_filters > 1 else ''} {_shape(filters.shape[1:])}, "
             f"stride {_pair_text(sh, sw)}, zero padding {_pair_text(ph, pw)}, "
             f"activation f = {activation}", ""]
    lines += _volume("Input x", x)
    if ph or pw:
        lines += _volume(f"Input with zero padding P = {_pair_text(ph, pw)}", x_padded)
    for k in range(n_filters):
        name = f"Filter {k} w" if n_filters > 1 else "Filter w"
        lines += _volume(name, filters[k])
        lines.append(f"{name.replace(' w', '')} bias w_b = {fmt(biases[k])}")
    lines += ["", "Output size:",
              _size_line("W", x.shape[2], kw, pw, sw),
              _size_line("H", x.shape[1], kh, ph, sh),
              f"  depth = the number of filters = {n_filters}", ""]

    sum_text = "Σ_d Σ_m Σ_n w_{d,m,n}·x_{d,i·S+m,j·S+n}" if depth > 1 else \
        "Σ_m Σ_n w_{m,n}·x_{i·S+m,j·S+n}"
    call = f"{activation}(" if f is not None else "("
    lines.append(f"a_{{i,j}} = {call}{sum_text} + w_b)   (eq. {'4.4' if depth > 1 else '4.1'}"
                 f"{', x zero-padded' if ph or pw else ''})")
    for k in range(n_filters):
        h2, w2 = feature_maps.shape[1:]
        for i in range(h2):
            for j in range(w2):
                label = index_text(k, i, j) if n_filters > 1 else index_text(i, j)
                lines += _conv_value_lines(label, x_padded, filters[k], biases[k], i, j,
                                           (sh, sw), activation, feature_maps[k, i, j])
    lines.append("")
    for k in range(n_filters):
        title = f"Feature map {k}" if n_filters > 1 else "Feature map"
        lines += _labelled(f"{title} ({_shape(feature_maps.shape[1:])}):", feature_maps[k])
    return "\n".join(lines) + "\n"


def _pair_text(a: int, b: int) -> str:
    return str(a) if a == b else f"({a}, {b})"


def _conv_value_lines(label, x_padded, weights, bias, i, j, stride, activation, value):
    """``a_{i,j} = f(products + w_b) = f(terms) = f(net) = value``, one step a line."""
    has_f = activation != "none"
    head = f"a_{{{label}}} = "
    more = " " * (len(head) - 2) + "= "
    wrap = (lambda inner: f"{activation}({inner})") if has_f else (lambda inner: inner)
    net = R.conv_at(x_padded, weights, bias, i, j, stride)
    depth = weights.shape[0]
    if depth == 1:
        terms = R.conv_terms(x_padded, weights, i, j, stride)
        products = " + ".join(f"{_factor(w)}·{_factor(v)}" for w, v, _ in terms)
        lines = [head + wrap(f"{products} + {_factor(bias)}"),
                 more + wrap(_sum([p for _, _, p in terms] + [bias]))]
    else:
        # Eq. 4.4: one sum per channel, then the channels and the bias added.
        lines = [f"a_{{{label}}}:"]
        channel_sums = []
        for d in range(depth):
            terms = R.conv_terms(x_padded[d:d + 1], weights[d:d + 1], i, j, stride)
            channel_sums.append(R.conv_at(x_padded[d:d + 1], weights[d:d + 1], 0.0, i, j,
                                          stride))
            products = " + ".join(f"{_factor(w)}·{_factor(v)}" for w, v, _ in terms)
            lines.append(f"    channel {d}: {products} = {fmt(channel_sums[-1])}")
        lines.append(more + wrap(_sum(channel_sums + [bias])))
    if has_f:
        lines.append(more + wrap(fmt(net)))
    lines.append(more + fmt(value))
    return lines


# ----------------------------------------------------------------------------
# Convolution, backward
# ----------------------------------------------------------------------------

def explain_conv_backward(x=BACKWARD_INPUT, filters=BACKWARD_FILTER, delta=None, stride=1,
                          padding=0, net_prev=None, activation: str = "none") -> str:
    """δ passed back through a conv layer (eq. 5.1-5.3), and the layer's gradients.

    The steps are the tutorial's: expand δ^l by the stride, pad it with zeros,
    rotate the filter by 180°, cross-correlate (the full convolution δ^l * W^l,
    eq. 5.2), sum over the filters (eq. 5.3), crop the padding, multiply by
    f'(net^{l-1}) (eq. 5.1, 5.2); then ∂E/∂w (the input cross-correlated
    with the stride-1 sensitivity map) and ∂E/∂w_b (the sum of δ^l).

    Args:
        x: the layer's input a^{l-1}, (H, W) or (D, H, W). Default: 1..9 as 3x3.
        filters: (KH, KW), (D, KH, KW) or (N, D, KH, KW). Default: [[1, 2], [3, 4]].
        delta: δ^l, (H2, W2) or (N, H2, W2). Default: [[10, 100], [1000, 10000]]
            for the default input and filter, else 1, 2, 3, ... in the output's shape.
        stride: int S or (SH, SW). padding: int P or (PH, PW).
        net_prev: net^{l-1}, the previous layer's net input, x's shape, or None
            to stop at ∂E/∂a^{l-1}.
        activation: the previous layer's f ("relu", "sigmoid", "tanh"),
            whose f' multiplies the result; used with ``net_prev`` only.

    Returns:
        The explanation, each step an array labelled with its equation.
    """
    x = _as_volume(x, "input")
    filters = _as_filters(filters, "filter")
    n_filters, depth, kh, kw = filters.shape
    (sh, sw), (ph, pw) = pair(stride, "stride", 1), pair(padding, "padding", 0)
    # The forward pass checks the input, filters, stride and padding, and gives δ^l's shape.
    out_shape = R.conv_forward(x, filters, np.zeros(n_filters), (sh, sw), (ph, pw)).shape
    if delta is None:
        delta = _default_delta(x, filters, out_shape)
    delta = _as_volume(delta, "delta")
    _, derivative = _activation_functions(activation)
    if net_prev is not None:
        if derivative is None:
            raise ValueError("net_prev needs the previous layer's activation: relu, "
                             "sigmoid or tanh")
        net_prev = _as_volume(net_prev, "net")
    # The reference checks δ's shape against the layer and gives the final answers.
    grad_input = R.conv_backward_delta(delta, filters, x.shape, (sh, sw), (ph, pw))
    grad_weight = R.conv_weight_gradient(x, delta, (kh, kw), (sh, sw), (ph, pw))
    grad_bias = R.conv_bias_gradient(delta)
    delta_prev = None
    if net_prev is not None:
        delta_prev = R.conv_backward_delta(delta, filters, x.shape, (sh, sw), (ph, pw),
                                           net_prev=net_prev, activation_derivative=derivative)

    x_padded = R.zero_pad(x, (ph, pw))
    stride_one_shape = (x_padded.shape[1] - kh + 1, x_padded.shape[2] - kw + 1)
    lines = [f"A conv layer backward: input a^{{l-1}} {_shape(x.shape)}, {n_filters} "
             f"filter{'s' if n_filters > 1 else ''} {_shape(filters.shape[1:])}, stride "
             f"{_pair_text(sh, sw)}, zero padding {_pair_text(ph, pw)}, sensitivity map "
             f"δ^l {_shape(delta.shape)}", ""]
    lines += _volume("Input a^{l-1}", x)
    for k in range(n_filters):
        lines += _volume(f"Filter W^l_{k}" if n_filters > 1 else "Filter W^l", filters[k])
    lines += _volume("Sensitivity map δ^l (given)", delta)

    lines += ["", "δ passed back (eq. 5.1-5.3)"]
    partial_sums = np.zeros(x_padded.shape)
    for k in range(n_filters):
        of_k = f" of filter {k}" if n_filters > 1 else ""
        expanded = R.stride_one_map(delta[k], (sh, sw), stride_one_shape)
        if (sh, sw) == (1, 1):
            lines.append(f"Step 1. Stride 1: the map{of_k} stays as it is "
                         f"({_shape(stride_one_shape)}, the stride-1 output size):")
        else:
            lines.append(f"Step 1. Stride {_pair_text(sh, sw)}: insert S-1 zeros between the "
                         f"elements of δ^l{of_k}, the outputs the stride skipped, and fill "
                         f"to the stride-1 output size {_shape(stride_one_shape)}:")
        lines += _grid(expanded)
        padded = R.zero_pad(expanded[None], (kh - 1, kw - 1))[0]
        lines.append(f"Step 2. Pad it with {kh - 1} row(s) and {kw - 1} column(s) of zeros "
                     f"on every side (F-1):")
        lines += _grid(padded)
        for d in range(depth):
            lines += _backward_channel_lines(k, d, n_filters, depth, filters[k, d], expanded,
                                             padded)
            partial_sums[d] += R.full_convolution(expanded, filters[k, d])
    if n_filters > 1:
        lines += _volume(f"Step 5. Sum the {n_filters} filters' partial maps element by "
                         f"element (eq. 5.3)", partial_sums)
    if ph or pw:
        lines.append(f"Step 6. Crop the {_pair_text(ph, pw)} ring(s) of padding away (the "
                     f"padded zeros are no neurons); what remains is")
    lines += _volume("∂E/∂a^{l-1}, the gradient of the layer's input", grad_input)
    if delta_prev is None:
        lines.append("δ^{l-1} = ∂E/∂a^{l-1} ∘ f'(net^{l-1}) (eq. 5.2); give the previous "
                     "layer's net input (--net) and activation to apply f'.")
    else:
        lines += _volume(f"f'(net^{{l-1}}), f = {activation}", derivative(net_prev))
        lines += _volume("δ^{l-1} = ∂E/∂a^{l-1} ∘ f'(net^{l-1}) (eq. 5.1, 5.2)", delta_prev)

    lines += ["", "Weight gradient: ∂E/∂w_{m,n} = Σ_i Σ_j δ_{i,j}·a^{l-1}_{i+m,j+n}, the "
                  "(padded) input cross-correlated with the stride-1 sensitivity map of "
                  "step 1 (terms with δ = 0 left out)"]
    for k in range(n_filters):
        expanded = R.stride_one_map(delta[k], (sh, sw), stride_one_shape)
        for d in range(depth):
            for m in range(kh):
                for n in range(kw):
                    terms = R.conv_terms(x_padded[d:d + 1], expanded[None], m, n)
                    label = index_text(*((k,) if n_filters > 1 else ()),
                                   *((d,) if depth > 1 else ()), m, n)
                    lines.append(f"  ∂E/∂w_{{{label}}} = {_products(terms)} = "
                                 f"{fmt(grad_weight[k, d, m, n])}")
        lines += _volume(f"∂E/∂W^l_{k}" if n_filters > 1 else "∂E/∂W^l", grad_weight[k])

    lines += ["", "Bias gradient: ∂E/∂w_b = Σ_i Σ_j δ_{i,j}, the sum of the sensitivity map"]
    for k in range(n_filters):
        label = f"w_b{k}" if n_filters > 1 else "w_b"
        lines.append(f"  ∂E/∂{label} = {_sum(delta[k].ravel())} = {fmt(grad_bias[k])}")
    return "\n".join(lines) + "\n"


def _default_delta(x, filters, shape) -> np.ndarray:
    """The stand-in for the tutorial's δ, or 1, 2, 3, ... for the user's own layer."""
    if (x.shape == (1,) + BACKWARD_INPUT.shape and filters.shape == (1, 1) + BACKWARD_FILTER.shape
            and shape == (1,) + BACKWARD_DELTA.shape):
        return BACKWARD_DELTA[None]
    return np.arange(1.0, np.prod(shape) + 1).reshape(shape)


def _products(terms) -> str:
    """``10·2 + 100·1``: the products with a non-zero first factor, or ``0``."""
    kept = [f"{_factor(a)}·{_factor(b)}" for a, b, _ in terms if a != 0]
    return " + ".join(kept) if kept else "0"


def _backward_channel_lines(k, d, n_filters, depth, weights, expanded, padded) -> list[str]:
    """Steps 3 and 4 for filter k, channel d: rotate, then cross-correlate."""
    of = "".join([f" of filter {k}" if n_filters > 1 else "",
                  f", channel {d}" if depth > 1 else ""])
    rotated = R.rot180(weights)
    lines = [f"Step 3. Rotate the filter{of} by 180°:"] + _grid(rotated)
    lines.append("Step 4. Cross-correlate the padded map with the rotated filter: the full "
                 "convolution δ^l * W^l (eq. 5.2); δ·w, terms with δ = 0 left out:")
    partial = R.full_convolution(expanded, weights)
    for s in range(partial.shape[0]):
        for t in range(partial.shape[1]):
            terms = R.conv_terms(padded[None], rotated[None], s, t)
            # conv_terms gives (w, δ, w·δ); the tutorial writes δ·w.
            swapped = [(b, a, p) for a, b, p in terms]
            lines.append(f"    ({s},{t}): {_products(swapped)} = {fmt(partial[s, t])}")
    return lines + _grid(partial)


# ----------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------

def explain_pool(x=POOL_INPUT, size=2, stride=None, delta=None) -> str:
    """Max and mean pooling, forward and backward, window by window.

    Args:
        x: the input, (H, W) or (D, H, W). Default: a 4x4 example like the
            tutorial's pictured one.
        size: window size n (int) or (KH, KW). stride: default the window size.
        delta: δ^l of the pooling output, (H2, W2) or (D, H2, W2). Default:
            [[4, 8], [12, 16]] for the default input, else 1, 2, 3, ...

    Returns:
        Every window with its maximum (and where it is) and its mean; the two
        pooled maps; where each δ goes back, for max pooling to the window's
        maximum and for mean pooling shared by the n² inputs (the Kronecker
        product δ ⊗ (1/n²)_{n×n} when the windows tile the input).
    """
    x = _as_volume(x, "input")
    kh, kw = pair(size, "size", 1)
    sh, sw = (kh, kw) if stride is None else pair(stride, "stride", 1)
    max_out = R.max_pool_forward(x, (kh, kw), (sh, sw))
    mean_out = R.mean_pool_forward(x, (kh, kw), (sh, sw))
    depth, h2, w2 = max_out.shape
    if delta is None and x.shape == (1, 4, 4) and np.array_equal(x[0], POOL_INPUT) \
            and max_out.shape == (1, 2, 2):
        delta = POOL_DELTA
    elif delta is None:
        delta = np.arange(1.0, max_out.size + 1).reshape(max_out.shape)
    delta = _as_volume(delta, "delta")
    max_back = R.max_pool_backward(x, delta, (kh, kw), (sh, sw))
    mean_back = R.mean_pool_backward(x, delta, (kh, kw), (sh, sw))

    def at(d, *indices):
        return index_text(*((d,) if depth > 1 else ()), *indices)

    lines = [f"Pooling: input {_shape(x.shape)} (D x H x W), {kh}x{kw} windows, stride "
             f"{_pair_text(sh, sw)}; no parameters, each channel pooled on its own", ""]
    lines += _volume("Input x", x)
    lines += ["", "Output size:", _size_line("W", x.shape[2], kw, 0, sw),
              _size_line("H", x.shape[1], kh, 0, sh), f"  depth = the input's = {depth}", "",
              "Forward: every window gives its maximum (max pooling) and its average "
              "(mean pooling)"]
    for d in range(depth):
        for i in range(h2):
            for j in range(w2):
                window = x[d, i * sh:i * sh + kh, j * sw:j * sw + kw].ravel()
                r, c = R.window_argmax(x[d], i, j, (kh, kw), (sh, sw))
                lines.append(f"  window ({at(d, i, j)}): {', '.join(fmt(v) for v in window)}"
                             f"   max = {fmt(max_out[d, i, j])} at x_{{{at(d, r, c)}}}"
                             f"   mean = ({_sum(window)})/{kh * kw} = {fmt(mean_out[d, i, j])}")
    lines += _volume("Max pooling output", max_out)
    lines += _volume("Mean pooling output", mean_out)

    lines += ["", "Backward: no gradients to compute, δ is only passed back"]
    lines += _volume("δ^l (given)", delta)
    lines.append("Max pooling: each δ goes unchanged to its window's maximum; the other "
                 "inputs of the window get 0 from it")
    for d in range(depth):
        for i in range(h2):
            for j in range(w2):
                r, c = R.window_argmax(x[d], i, j, (kh, kw), (sh, sw))
                lines.append(f"  δ^l_{{{at(d, i, j)}}} = {fmt(delta[d, i, j])} → "
                             f"δ^{{l-1}}_{{{at(d, r, c)}}}")
    lines += _volume("δ^{l-1}, max pooling", max_back)
    n2 = kh * kw
    if (sh, sw) == (kh, kw):
        lines.append(f"Mean pooling: each δ is shared equally by the {n2} inputs of its window: "
                     f"the Kronecker product δ^{{l-1}} = δ^l ⊗ (1/n²)_{{n×n}}, here "
                     f"(1/{n2})_{{{kh}×{kw}}}:")
        lines += _grid(np.full((kh, kw), 1.0 / n2))
    else:
        lines.append(f"Mean pooling: each input gets δ/{n2} from every window it is in; "
                     f"overlapping windows add up")
    lines += _volume("δ^{l-1}, mean pooling", mean_back)
    return "\n".join(lines) + "\n"
