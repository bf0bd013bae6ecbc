"""The tutorial written out literally: one sample, one number at a time.

Every function here is a formula of the tutorial (``cnn-tutorial.zh.md``;
English with equation numbers in ``FORMULAS.md``) turned into plain Python
loops over positions, kernel offsets, channels and filters, so that it reads
line by line next to the text. It is slow on purpose. It has two jobs:

- a learner reads it beside the tutorial, each docstring citing its equation;
- the test suite checks the fast, vectorised :mod:`tinyconv.nn.functional`
  against it, forward and every gradient, on many random configurations.

Unlike :mod:`tinyconv.nn.functional`, these functions take ONE sample, without
the batch axis, and always compute and return float64.

Shape letters used in this module:

====  ==========================================================
D     depth of the input: its channels
H, W  input height and width (H1, W1 in the tutorial)
KH    kernel (filter or pooling window) height, KW its width: the F x F
N     number of filters: the depth of a conv layer's output
H2    output height, W2 output width (eq. 4.2 and 4.3)
S     stride: an int or a (SH, SW) pair
P     zero padding: an int or a (PH, PW) pair, rings around the input
HP    padded height H + 2·PH, WP padded width W + 2·PW
====  ==========================================================

Indices i, j run over output positions, m, n over kernel offsets and d over
input channels, as in eq. 4.4:
``a_{i,j} = f( Σ_d Σ_m Σ_n w_{d,m,n} x_{d, i·S+m, j·S+n} + w_b )``.
"""

from __future__ import annotations

import numpy as np

from ..checks import (as_float_array, check_kernel_fits, check_ndim, check_pool_padding,
                      conv_output_size, pair)

__all__ = [
    "output_size",
    "zero_pad",
    "relu",
    "relu_derivative",
    "sigmoid",
    "sigmoid_derivative",
    "tanh",
    "tanh_derivative",
    "conv_at",
    "conv_terms",
    "conv_forward",
    "cross_correlation",
    "full_convolution",
    "rot180",
    "expand_sensitivity_map",
    "stride_one_map",
    "conv_backward_delta",
    "conv_weight_gradient",
    "conv_bias_gradient",
    "window_argmax",
    "max_pool_forward",
    "max_pool_backward",
    "mean_pool_forward",
    "mean_pool_backward",
    "fc_forward",
    "fc_backward",
]


def _array(value, ndim: int, layout: str, name: str) -> np.ndarray:
    """``value`` as a float64 array of ``ndim`` dimensions, or a clear error."""
    array = as_float_array(value, name)
    check_ndim(array, ndim, layout, name)
    return array.astype(np.float64)


# ----------------------------------------------------------------------------
# Sizes and padding
# ----------------------------------------------------------------------------

def output_size(w1: int, f: int, p: int, s: int) -> int:
    """Width (or height) of a feature map: eq. 4.2 and 4.3.

    ``W2 = (W1 - F + 2P) / S + 1``, for an input of width ``w1``, a filter of
    width ``f``, ``p`` rings of zero padding and stride ``s``. When
    ``W1 - F + 2P`` is not a multiple of S the division floors: the last
    columns that no window reaches are dropped. The tutorial's example:
    ``output_size(5, 3, 0, 2) == 2``.

    tinyconv keeps this formula in one place,
    :func:`tinyconv.nn.functional.conv_output_size`; this is that function with
    the tutorial's argument order (W1, F, P, S).
    """
    return conv_output_size(w1, f, s, p)


def _pad(x: np.ndarray, padding, value: float) -> np.ndarray:
    """Surround each channel of ``x`` (D, H, W) with rings of ``value``."""
    ph, pw = pair(padding, "padding", 0)
    depth, h, w = x.shape
    out = np.full((depth, h + 2 * ph, w + 2 * pw), value, dtype=np.float64)
    for d in range(depth):
        for r in range(h):
            for c in range(w):
                out[d, r + ph, c + pw] = x[d, r, c]
    return out


def zero_pad(x, padding) -> np.ndarray:
    """Zero padding: P rings of zeros around every channel (eq. 4.2's P).

    Args:
        x: (D, H, W).
        padding: int P, or (PH, PW) for PH rows above and below and PW
            columns left and right.

    Returns:
        (D, H + 2·PH, W + 2·PW), with ``x`` in the middle.
    """
    return _pad(_array(x, 3, "(D, H, W)", "zero_pad input"), padding, 0.0)


def _crop(x_padded: np.ndarray, padding, shape) -> np.ndarray:
    """The inverse of padding: the (D, H, W) middle of a padded array."""
    (ph, pw), (depth, h, w) = padding, shape
    out = np.zeros((depth, h, w))
    for d in range(depth):
        for r in range(h):
            for c in range(w):
                out[d, r, c] = x_padded[d, r + ph, c + pw]
    return out


# ----------------------------------------------------------------------------
# Activations f and their derivatives f' (scalars or arrays, element-wise)
# ----------------------------------------------------------------------------

def relu(x):
    """ReLU: f(x) = max(0, x)."""
    return np.maximum(np.asarray(x, dtype=np.float64), 0.0)


def relu_derivative(x):
    """ReLU's derivative at the net input x: 1 where x > 0, else 0 (at 0 too)."""
    return (np.asarray(x, dtype=np.float64) > 0).astype(np.float64)


def sigmoid(x):
    """Sigmoid 1 / (1 + e^-x), written so that no exponential can overflow.

    For x >= 0 it is 1 / (1 + e^-x); for x < 0 the equal e^x / (1 + e^x).
    Either way the exponent is -|x| <= 0.
    """
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_derivative(x):
    """σ'(x) = σ(x)(1 - σ(x)), at the net input x; at most 1/4."""
    s = sigmoid(x)
    return s * (1.0 - s)


def tanh(x):
    """Hyperbolic tangent."""
    return np.tanh(np.asarray(x, dtype=np.float64))


def tanh_derivative(x):
    """tanh'(x) = 1 - tanh(x)², at the net input x."""
    t = tanh(x)
    return 1.0 - t * t


# ----------------------------------------------------------------------------
# Convolution layer, forward (eq. 4.1, 4.4) and the 2-D operations (4.5)
# ----------------------------------------------------------------------------

def conv_at(x_padded, weights, bias, i: int, j: int, stride=1) -> float:
    """One output value of one filter, before the activation: eq. 4.4's sum.

    ``net_{i,j} = Σ_{d=0..D-1} Σ_{m=0..KH-1} Σ_{n=0..KW-1}
    w_{d,m,n} · x_{d, i·S+m, j·S+n} + w_b``

    Args:
        x_padded: the input with its padding already added, (D, HP, WP).
        weights: one filter's weights w, (D, KH, KW).
        bias: the filter's bias w_b, a number.
        i, j: the output position.
        stride: int S or (SH, SW).

    Returns:
        net_{i,j}, a float.
    """
    total = float(bias)
    for _, _, product in conv_terms(x_padded, weights, i, j, stride):
        total += product
    return total


def conv_terms(x_padded, weights, i: int, j: int, stride=1) -> list[tuple[float, float, float]]:
    """The terms of eq. 4.4's sum for output (i, j), as the tutorial writes them out.

    One ``(w_{d,m,n}, x_{d, i·S+m, j·S+n}, w·x)`` triple per weight, in the
    order d, m, n (row by row, channel after channel): the window of the
    input the filter covers, its "receptive field". :func:`conv_at` adds
    these products to the bias.

    Args:
        x_padded: (D, HP, WP). weights: (D, KH, KW). i, j: the output position.
        stride: int S or (SH, SW).

    Returns:
        A list of D·KH·KW ``(weight, input, product)`` float triples.
    """
    sh, sw = pair(stride, "stride", 1)
    depth, kh, kw = weights.shape
    terms = []
    for d in range(depth):
        for m in range(kh):
            for n in range(kw):
                w, x = float(weights[d, m, n]), float(x_padded[d, i * sh + m, j * sw + n])
                terms.append((w, x, w * x))
    return terms


def conv_forward(x, filters, biases, stride=1, padding=0, activation=None) -> np.ndarray:
    """A convolutional layer for one sample: eq. 4.1 and 4.4.

    Every filter k gives one feature map:
    ``a_{k,i,j} = f( Σ_d Σ_m Σ_n w_{k,d,m,n} · x_{d, i·S+m, j·S+n} + w_{b,k} )``
    on the zero-padded input, one :func:`conv_at` per output value. What a CNN
    calls convolution is this cross-correlation: the filter is not rotated.

    Args:
        x: (D, H, W).
        filters: (N, D, KH, KW); non-square kernels work.
        biases: (N,).
        stride: int S or (SH, SW). padding: int P or (PH, PW).
        activation: the activation f, a callable on a number, or None for
            the identity (then the result is the net input).

    Returns:
        (N, H2, W2), H2 and W2 from eq. 4.2/4.3.
    """
    x = _array(x, 3, "(D, H, W)", "conv_forward input")
    filters = _array(filters, 4, "(N, D, KH, KW)", "conv_forward filters")
    biases = _array(biases, 1, "(N,)", "conv_forward biases")
    n_filters, depth, kh, kw = filters.shape
    if x.shape[0] != depth:
        raise ValueError(f"conv_forward: the filters have depth {depth}, so the input must be "
                         f"({depth}, H, W), got shape {x.shape}")
    if biases.shape != (n_filters,):
        raise ValueError(f"conv_forward: biases must have shape ({n_filters},), "
                         f"got {biases.shape}")
    (sh, sw), (ph, pw) = pair(stride, "stride", 1), pair(padding, "padding", 0)
    check_kernel_fits(x.shape[1:], (kh, kw), (ph, pw), "conv_forward")
    h2 = output_size(x.shape[1], kh, ph, sh)
    w2 = output_size(x.shape[2], kw, pw, sw)

    x_padded = zero_pad(x, (ph, pw))
    f = activation if activation is not None else (lambda net: net)
    out = np.zeros((n_filters, h2, w2))
    for k in range(n_filters):
        for i in range(h2):
            for j in range(w2):
                out[k, i, j] = f(conv_at(x_padded, filters[k], biases[k], i, j, (sh, sw)))
    return out


def cross_correlation(a, b) -> np.ndarray:
    """2-D cross-correlation of ``a`` with ``b`` where ``b`` fits ("valid").

    ``C_{i,j} = Σ_m Σ_n a_{i+m, j+n} · b_{m,n}``: eq. 4.1 with stride 1, no
    bias and no activation, i.e. :func:`conv_at` on one channel.

    Args:
        a: (ma, na). b: (mb, nb), no larger than ``a``.

    Returns:
        (ma - mb + 1, na - nb + 1).
    """
    a = _array(a, 2, "(ma, na)", "cross_correlation a")
    b = _array(b, 2, "(mb, nb)", "cross_correlation b")
    check_kernel_fits(a.shape, b.shape, (0, 0), "cross_correlation")
    out = np.zeros((a.shape[0] - b.shape[0] + 1, a.shape[1] - b.shape[1] + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = conv_at(a[None], b[None], 0.0, i, j)
    return out


def full_convolution(a, b) -> np.ndarray:
    """The mathematical 2-D ("full") convolution C = A * B: eq. 4.5 and 4.6.

    ``C_{s,t} = Σ_m Σ_n A_{m,n} · B_{s-m, t-n}`` for ``0 <= s < ma + mb - 1``
    and ``0 <= t < na + nb - 1``, the sum running over the (m, n) for which
    both A's and B's indices lie inside the arrays. It equals the
    cross-correlation of A, padded with mb - 1 rows and nb - 1 columns of
    zeros on each side, with B rotated by 180° (:func:`rot180`).

    Args:
        a: (ma, na). b: (mb, nb).

    Returns:
        (ma + mb - 1, na + nb - 1).
    """
    a = _array(a, 2, "(ma, na)", "full_convolution a")
    b = _array(b, 2, "(mb, nb)", "full_convolution b")
    (ma, na), (mb, nb) = a.shape, b.shape
    out = np.zeros((ma + mb - 1, na + nb - 1))
    for s in range(ma + mb - 1):
        for t in range(na + nb - 1):
            # 0 <= m < ma and 0 <= s - m < mb, likewise for n.
            for m in range(max(0, s - mb + 1), min(ma, s + 1)):
                for n in range(max(0, t - nb + 1), min(na, t + 1)):
                    out[s, t] += a[m, n] * b[s - m, t - n]
    return out


def rot180(w) -> np.ndarray:
    """A 2-D array rotated by 180°: ``out_{m,n} = w_{KH-1-m, KW-1-n}``.

    A convolution is a cross-correlation with the filter rotated by 180°
    (the remark after eq. 4.6). w: (KH, KW). Returns (KH, KW).
    """
    w = _array(w, 2, "(KH, KW)", "rot180 input")
    kh, kw = w.shape
    out = np.zeros((kh, kw))
    for m in range(kh):
        for n in range(kw):
            out[m, n] = w[kh - 1 - m, kw - 1 - n]
    return out


# ----------------------------------------------------------------------------
# Convolution layer, backward (eq. 5.1-5.3; weight and bias gradients)
# ----------------------------------------------------------------------------

def expand_sensitivity_map(delta, stride) -> np.ndarray:
    """Insert S-1 zeros between the elements of a sensitivity map.

    The tutorial's step for stride S: a stride-S layer computes only every
    S-th output of a stride-1 layer; putting zeros where the skipped outputs
    would be "restores" the map of the stride-1 layer (those outputs did not
    reach the loss, so their δ is 0).

    Args:
        delta: (H2, W2). stride: int S or (SH, SW).

    Returns:
        ((H2-1)·SH + 1, (W2-1)·SW + 1), with ``out[i·SH, j·SW] = delta[i, j]``.
    """
    delta = _array(delta, 2, "(H2, W2)", "expand_sensitivity_map delta")
    sh, sw = pair(stride, "stride", 1)
    h2, w2 = delta.shape
    out = np.zeros(((h2 - 1) * sh + 1, (w2 - 1) * sw + 1))
    for i in range(h2):
        for j in range(w2):
            out[i * sh, j * sw] = delta[i, j]
    return out


def stride_one_map(delta: np.ndarray, stride, shape: tuple[int, int]) -> np.ndarray:
    """The sensitivity map a stride-1 layer would have, of size ``shape``.

    The expanded map is short of the stride-1 size when eq. 4.2 floored: the
    last rows and columns that no stride-S window reached. Their outputs were
    never computed, so their δ is 0 too.

    Args:
        delta: (H2, W2). stride: int S or (SH, SW).
        shape: (HP - KH + 1, WP - KW + 1), the stride-1 output size.

    Returns:
        ``shape``, the expanded map (:func:`expand_sensitivity_map`) at its top left.
    """
    expanded = expand_sensitivity_map(delta, stride)
    out = np.zeros(shape)
    out[:expanded.shape[0], :expanded.shape[1]] = expanded
    return out


def _check_delta_shape(delta: np.ndarray, input_shape, kernel, stride, padding,
                       name: str) -> None:
    """Raise ``ValueError`` unless δ (N, H2, W2) has the layer output's shape."""
    _, h, w = input_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    expected = (delta.shape[0], output_size(h, kh, ph, sh), output_size(w, kw, pw, sw))
    if delta.shape != expected:
        raise ValueError(f"{name}: delta must have the layer output's shape {expected}, "
                         f"got {delta.shape}")


def conv_backward_delta(delta, filters, input_shape, stride=1, padding=0,
                        net_prev=None, activation_derivative=None) -> np.ndarray:
    """Pass the sensitivity map back through a conv layer: eq. 5.1-5.3.

    The tutorial's steps, for each filter k:

    1. expand δ_k by the stride (:func:`expand_sensitivity_map`) and fill it
       with zeros to the size a stride-1 output of the padded input would
       have, HP - KH + 1 by WP - KW + 1 (rows and columns that the flooring
       of eq. 4.2 dropped get δ = 0);
    2. full-convolve it with the filter's channel d for every input channel
       d (eq. 5.2; :func:`full_convolution`). A full convolution is the
       cross-correlation of the map, padded with KH-1 and KW-1 rings of
       zeros, with the filter rotated by 180°;
    3. sum the N partial maps of the filters element by element (eq. 5.3),
       since every input feeds all N feature maps.

    Then the P padding rings are cropped away (the padded zeros are no
    neurons), and, when ``net_prev`` is given, the result is multiplied
    element-wise by f'(net^{l-1}) (eq. 5.1, 5.2). Without it the result is
    ∂E/∂a^{l-1}, the gradient with respect to the layer's input.

    Args:
        delta: δ^l, the sensitivity map of the layer's output, (N, H2, W2).
        filters: (N, D, KH, KW).
        input_shape: (D, H, W), the shape of the layer's input.
        stride: int S or (SH, SW). padding: int P or (PH, PW).
        net_prev: net^{l-1}, the previous layer's net input, (D, H, W), or None.
        activation_derivative: f' of the previous layer, a callable on an
            array; required with ``net_prev``.

    Returns:
        δ^{l-1}, (D, H, W).
    """
    filters = _array(filters, 4, "(N, D, KH, KW)", "conv_backward_delta filters")
    n_filters, depth, kh, kw = filters.shape
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[0] != depth:
        raise ValueError(f"conv_backward_delta: the filters have depth {depth}, so the input "
                         f"shape must be ({depth}, H, W), got {input_shape}")
    _, h, w = input_shape
    (sh, sw), (ph, pw) = pair(stride, "stride", 1), pair(padding, "padding", 0)
    check_kernel_fits((h, w), (kh, kw), (ph, pw), "conv_backward_delta")
    delta = _array(delta, 3, "(N, H2, W2)", "conv_backward_delta delta")
    if delta.shape[0] != n_filters:
        raise ValueError(f"conv_backward_delta: delta must have one map per filter, "
                         f"({n_filters}, H2, W2), got {delta.shape}")
    _check_delta_shape(delta, input_shape, (kh, kw), (sh, sw), (ph, pw), "conv_backward_delta")
    if (net_prev is None) != (activation_derivative is None):
        raise ValueError("conv_backward_delta: give net_prev and activation_derivative "
                         "together, or neither")

    hp, wp = h + 2 * ph, w + 2 * pw
    stride_one_shape = (hp - kh + 1, wp - kw + 1)
    delta_padded_input = np.zeros((depth, hp, wp))
    for k in range(n_filters):
        delta_k = stride_one_map(delta[k], (sh, sw), stride_one_shape)
        for d in range(depth):
            delta_padded_input[d] += full_convolution(delta_k, filters[k, d])

    delta_input = _crop(delta_padded_input, (ph, pw), (depth, h, w))
    if net_prev is None:
        return delta_input
    net_prev = _array(net_prev, 3, "(D, H, W)", "conv_backward_delta net_prev")
    if net_prev.shape != (depth, h, w):
        raise ValueError(f"conv_backward_delta: net_prev must have the input's shape "
                         f"{(depth, h, w)}, got {net_prev.shape}")
    return delta_input * activation_derivative(net_prev)


def conv_weight_gradient(x, delta, kernel_size, stride=1, padding=0) -> np.ndarray:
    """Gradient of the loss with respect to every filter weight.

    The filter is shared by every output position, so a weight's gradient
    sums over all of them: ``∂E/∂w_{k,d,m,n} = Σ_i Σ_j δ_{k,i,j} ·
    a_{d, i+m, j+n}``, the padded input cross-correlated with the sensitivity
    map. With stride S, δ is first expanded to the stride-1 map, as for
    eq. 5.2, which is the same as ``Σ_i Σ_j δ_{k,i,j} a_{d, i·S+m, j·S+n}``
    over the unexpanded map.

    Args:
        x: the layer's input a^{l-1}, (D, H, W).
        delta: δ^l, (N, H2, W2).
        kernel_size: int or (KH, KW).
        stride: int S or (SH, SW). padding: int P or (PH, PW).

    Returns:
        (N, D, KH, KW).
    """
    x = _array(x, 3, "(D, H, W)", "conv_weight_gradient input")
    kh, kw = pair(kernel_size, "kernel_size", 1)
    (sh, sw), (ph, pw) = pair(stride, "stride", 1), pair(padding, "padding", 0)
    delta = _array(delta, 3, "(N, H2, W2)", "conv_weight_gradient delta")
    check_kernel_fits(x.shape[1:], (kh, kw), (ph, pw), "conv_weight_gradient")
    _check_delta_shape(delta, x.shape, (kh, kw), (sh, sw), (ph, pw), "conv_weight_gradient")

    x_padded = zero_pad(x, (ph, pw))
    depth, hp, wp = x_padded.shape
    grad = np.zeros((delta.shape[0], depth, kh, kw))
    for k in range(delta.shape[0]):
        delta_k = stride_one_map(delta[k], (sh, sw), (hp - kh + 1, wp - kw + 1))
        for d in range(depth):
            grad[k, d] = cross_correlation(x_padded[d], delta_k)
    return grad


def conv_bias_gradient(delta) -> np.ndarray:
    """Gradient of each filter's bias: the sum of its sensitivity map.

    ``∂E/∂w_b = Σ_i Σ_j δ_{i,j}``. delta: (N, H2, W2). Returns (N,).
    """
    delta = _array(delta, 3, "(N, H2, W2)", "conv_bias_gradient delta")
    n_filters, h2, w2 = delta.shape
    grad = np.zeros(n_filters)
    for k in range(n_filters):
        for i in range(h2):
            for j in range(w2):
                grad[k] += delta[k, i, j]
    return grad


# ----------------------------------------------------------------------------
# Pooling: max and mean, forward and backward
# ----------------------------------------------------------------------------

def _pool_arguments(x, kernel_size, stride, padding, name: str):
    """Read the pooling arguments; stride defaults to the kernel size.

    Padding may be at most half the kernel (PyTorch's rule), so that every
    window holds at least one real input.
    """
    x = _array(x, 3, "(D, H, W)", f"{name} input")
    kernel = pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None else pair(stride, "stride", 1)
    padding = pair(padding, "padding", 0)
    check_pool_padding(kernel, padding, name)
    check_kernel_fits(x.shape[1:], kernel, padding, name)
    out_hw = (output_size(x.shape[1], kernel[0], padding[0], stride[0]),
              output_size(x.shape[2], kernel[1], padding[1], stride[1]))
    return x, kernel, stride, padding, out_hw


def window_argmax(channel: np.ndarray, i: int, j: int, kernel, stride) -> tuple[int, int]:
    """Row and column of the maximum of window (i, j) of a padded channel.

    Offsets are visited in row-major order and only a strictly larger value
    replaces the best so far, so among equal maxima the first one wins.
    """
    (kh, kw), (sh, sw) = kernel, stride
    best = (i * sh, j * sw)
    for m in range(kh):
        for n in range(kw):
            r, c = i * sh + m, j * sw + n
            if channel[r, c] > channel[best]:
                best = (r, c)
    return best


def max_pool_forward(x, kernel_size, stride=None, padding=0) -> np.ndarray:
    """Max pooling: every KH x KW window of every channel gives its maximum.

    Each depth slice is pooled on its own, so the depth is unchanged.
    Padding adds rings of -inf (PyTorch's meaning), which never win.

    Args:
        x: (D, H, W). kernel_size: int or (KH, KW).
        stride: int or pair; None means the kernel size (windows tile).
        padding: int or pair, at most half the kernel.

    Returns:
        (D, H2, W2), H2 and W2 from eq. 4.2/4.3.
    """
    x, kernel, stride, padding, (h2, w2) = _pool_arguments(x, kernel_size, stride, padding,
                                                           "max_pool_forward")
    x_padded = _pad(x, padding, -np.inf)
    out = np.zeros((x.shape[0], h2, w2))
    for d in range(x.shape[0]):
        for i in range(h2):
            for j in range(w2):
                out[d, i, j] = x_padded[d][window_argmax(x_padded[d], i, j, kernel, stride)]
    return out


def max_pool_backward(x, delta, kernel_size, stride=None, padding=0) -> np.ndarray:
    """Max pooling backward: δ goes unchanged to the window's maximum.

    The other neurons of the window get 0 from it. When a window holds
    several equal maxima, the first in row-major order takes δ; when windows
    overlap (stride < kernel), a neuron that is the maximum of several
    windows gets the sum of their δ.

    Args:
        x: the pooling layer's input, (D, H, W).
        delta: δ of the pooling output, (D, H2, W2).
        kernel_size, stride, padding: as :func:`max_pool_forward`.

    Returns:
        δ of the input, (D, H, W).
    """
    x, kernel, stride, padding, (h2, w2) = _pool_arguments(x, kernel_size, stride, padding,
                                                           "max_pool_backward")
    delta = _check_pool_delta(delta, x.shape[0], (h2, w2), "max_pool_backward")
    x_padded = _pad(x, padding, -np.inf)
    grad_padded = np.zeros(x_padded.shape)
    for d in range(x.shape[0]):
        for i in range(h2):
            for j in range(w2):
                r, c = window_argmax(x_padded[d], i, j, kernel, stride)
                grad_padded[d, r, c] += delta[d, i, j]
    return _crop(grad_padded, padding, x.shape)


def _check_pool_delta(delta, depth: int, out_hw, name: str) -> np.ndarray:
    """δ as a float64 (D, H2, W2) array of the shape the forward produced."""
    delta = _array(delta, 3, "(D, H2, W2)", f"{name} delta")
    if delta.shape != (depth,) + tuple(out_hw):
        raise ValueError(f"{name}: delta must have the output's shape "
                         f"{(depth,) + tuple(out_hw)}, got {delta.shape}")
    return delta


def mean_pool_forward(x, kernel_size, stride=None, padding=0) -> np.ndarray:
    """Mean pooling: every KH x KW window gives its average.

    Padding adds zeros, and they count in the average (PyTorch's default,
    ``count_include_pad=True``): every window divides by KH·KW.

    Arguments and result as :func:`max_pool_forward`.
    """
    x, (kh, kw), (sh, sw), padding, (h2, w2) = _pool_arguments(
        x, kernel_size, stride, padding, "mean_pool_forward")
    x_padded = zero_pad(x, padding)
    out = np.zeros((x.shape[0], h2, w2))
    for d in range(x.shape[0]):
        for i in range(h2):
            for j in range(w2):
                total = 0.0
                for m in range(kh):
                    for n in range(kw):
                        total += x_padded[d, i * sh + m, j * sw + n]
                out[d, i, j] = total / (kh * kw)
    return out


def mean_pool_backward(x, delta, kernel_size, stride=None, padding=0) -> np.ndarray:
    """Mean pooling backward: each of a window's KH·KW inputs gets δ/(KH·KW).

    Where the windows tile the input (stride equal to the kernel, no
    padding) this is the tutorial's Kronecker product
    ``δ^{l-1} = δ^l ⊗ (1/n²)_{n×n}`` (``np.kron``; KH x KW blocks of
    1/(KH·KW) for a non-square window); rows and columns that no window
    reached (eq. 4.2 floored) get 0. Otherwise every window shares its δ
    among its members one by one, and overlapping windows add.

    Args:
        x: the pooling layer's input, (D, H, W); only its shape is used.
        delta: δ of the pooling output, (D, H2, W2).
        kernel_size, stride, padding: as :func:`max_pool_forward`.

    Returns:
        δ of the input, (D, H, W).
    """
    x, (kh, kw), (sh, sw), padding, (h2, w2) = _pool_arguments(
        x, kernel_size, stride, padding, "mean_pool_backward")
    delta = _check_pool_delta(delta, x.shape[0], (h2, w2), "mean_pool_backward")
    depth, h, w = x.shape
    if (sh, sw) == (kh, kw) and padding == (0, 0):
        share = np.full((kh, kw), 1.0 / (kh * kw))
        out = np.zeros((depth, h, w))
        for d in range(depth):
            out[d, :h2 * kh, :w2 * kw] = np.kron(delta[d], share)
        return out
    grad_padded = np.zeros((depth, h + 2 * padding[0], w + 2 * padding[1]))
    for d in range(depth):
        for i in range(h2):
            for j in range(w2):
                for m in range(kh):
                    for n in range(kw):
                        grad_padded[d, i * sh + m, j * sw + n] += delta[d, i, j] / (kh * kw)
    return _crop(grad_padded, padding, x.shape)


# ----------------------------------------------------------------------------
# Fully connected layer: net = W·a + b, a = f(net)
# ----------------------------------------------------------------------------

def fc_forward(a, weight, bias, activation=None) -> np.ndarray:
    """A fully connected layer for one sample: ``net_j = Σ_i w_{j,i} a_i + b_j``.

    Args:
        a: the previous layer's output, (n_in,).
        weight: (n_out, n_in); row j holds the weights into neuron j.
        bias: (n_out,), or None for no bias.
        activation: f, a callable on a number, or None for the identity.

    Returns:
        f(net), (n_out,).
    """
    a = _array(a, 1, "(n_in,)", "fc_forward input")
    weight = _array(weight, 2, "(n_out, n_in)", "fc_forward weight")
    n_out, n_in = weight.shape
    if a.shape != (n_in,):
        raise ValueError(f"fc_forward: the weight expects an input of shape ({n_in},), "
                         f"got {a.shape}")
    if bias is not None:
        bias = _array(bias, 1, "(n_out,)", "fc_forward bias")
        if bias.shape != (n_out,):
            raise ValueError(f"fc_forward: bias must have shape ({n_out},), got {bias.shape}")
    f = activation if activation is not None else (lambda net: net)
    out = np.zeros(n_out)
    for j in range(n_out):
        net = 0.0 if bias is None else bias[j]
        for i in range(n_in):
            net += weight[j, i] * a[i]
        out[j] = f(net)
    return out


def fc_backward(a, weight, delta):
    """A fully connected layer backward, for one sample.

    With δ = ∂E/∂net of this layer:

    - ``(Wᵀ δ)_i = Σ_j w_{j,i} δ_j``: the previous layer's δ before its
      f'; δ^{l-1} = f'(net^{l-1}) ∘ Wᵀ δ^l;
    - ``∂E/∂w_{j,i} = δ_j a_i``: the outer product δ aᵀ;
    - ``∂E/∂b_j = δ_j``.

    Args:
        a: the layer's input, (n_in,). weight: (n_out, n_in). delta: (n_out,).

    Returns:
        (delta_prev (n_in,), grad_weight (n_out, n_in), grad_bias (n_out,)).
    """
    a = _array(a, 1, "(n_in,)", "fc_backward input")
    weight = _array(weight, 2, "(n_out, n_in)", "fc_backward weight")
    delta = _array(delta, 1, "(n_out,)", "fc_backward delta")
    n_out, n_in = weight.shape
    if a.shape != (n_in,) or delta.shape != (n_out,):
        raise ValueError(f"fc_backward: expected input ({n_in},) and delta ({n_out},) for "
                         f"weight {weight.shape}, got {a.shape} and {delta.shape}")
    delta_prev = np.zeros(n_in)
    grad_weight = np.zeros((n_out, n_in))
    for j in range(n_out):
        for i in range(n_in):
            delta_prev[i] += weight[j, i] * delta[j]
            grad_weight[j, i] = delta[j] * a[i]
    return delta_prev, grad_weight, delta.copy()
