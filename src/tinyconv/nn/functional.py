"""The fast path: stateless forward and backward functions over whole batches.

Every layer of tinyconv is a thin object over the functions here. Each
``*_forward`` returns ``(out, cache)`` and each ``*_backward`` takes the
gradient of the loss with respect to ``out`` (the tutorial's sensitivity map
δ, when the layer's input is a net input) together with that cache, and
returns the gradients with respect to the inputs and parameters. Nothing here
keeps state between calls, and no function writes into its arguments.

The same mathematics is written out literally, one sample and one number at a
time, in :mod:`tinyconv.tutorial.reference`; the test suite proves the two equal.

Shape letters used in this module:

====  ==========================================================
N     batch size
C     input channels (the tutorial's depth D)
F     output channels: the number of filters
H, W  input height and width (W1, H1 in the tutorial)
KH    kernel height, KW kernel width (the tutorial's F x F)
OH    output height, OW output width (H2, W2; eq. 4.2 and 4.3)
HP    padded input height H + 2·PH, WP padded width W + 2·PW
K     C·KH·KW, the length of one receptive field
====  ==========================================================

The layer functions here keep the batch LAST: a batch of images is
(C, H, W, N) and a batch of vectors (features, N), each sample a column, as
the tutorial writes one sample (net = W·a + b). Two reasons: a kernel
offset or a pooling window is then a slice of the outer H and W axes, so
every copy in a convolution's columns and in pooling moves runs of OW·N
numbers rather than rows of a dozen; and a convolution's matrix products
yield this layout directly, so nothing is transposed between layers
(benchmarks/RESULTS.md gives the speed-ups). The layers of :mod:`tinyconv.nn.layers`
take and give PyTorch's batch-first NCHW and convert once, at the edges of
a model; the losses take a model's batch-first output.

A function computes in the floating dtype of its input; parameters are cast
to it, never the other way round, so float32 stays float32 and float64
stays float64.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..checks import (as_float_array, check_grad, check_kernel_fits, check_ndim,
                      check_pool_padding, conv_output_size, pair)

__all__ = [
    "batch_last",
    "batch_first",
    "conv_output_size",
    "conv2d_forward",
    "conv2d_backward",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "linear_forward",
    "linear_backward",
    "relu_forward",
    "relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "softmax",
    "cross_entropy_forward",
    "cross_entropy_backward",
    "mse_forward",
    "mse_backward",
    "ConvCache",
    "PoolCache",
    "LinearCache",
    "CrossEntropyCache",
    "BatchNormCache",
    "batch_norm2d_forward",
    "batch_norm2d_backward",
    "dropout_forward",
    "dropout_backward",
]


# ----------------------------------------------------------------------------
# What each forward keeps for its backward
# ----------------------------------------------------------------------------

class ConvCache(NamedTuple):
    """What :func:`conv2d_forward` keeps for its backward."""

    x_shape: tuple          # (C, H, W, N), the input's
    fields: np.ndarray      # (OH, K, OW·N), the receptive fields, a view of the width columns
    weight: np.ndarray      # (F, C, KH, KW), in the input's dtype
    stride: tuple           # (SH, SW)
    padding: tuple          # (PH, PW)
    out_hw: tuple           # (OH, OW)
    has_bias: bool


class PoolCache(NamedTuple):
    """What :func:`max_pool2d_forward` and :func:`avg_pool2d_forward` keep.

    Max pooling keeps its padded input ``xp`` (C, HP, WP, N) and output
    ``out`` (C, OH, OW, N) to find each window's maximum again; mean pooling
    needs only the shapes, and keeps None there.
    """

    x_shape: tuple          # (C, H, W, N)
    dtype: np.dtype
    kernel: tuple           # (KH, KW)
    stride: tuple           # (SH, SW)
    padding: tuple          # (PH, PW)
    out_hw: tuple           # (OH, OW)
    xp: np.ndarray | None = None
    out: np.ndarray | None = None


class LinearCache(NamedTuple):
    """What :func:`linear_forward` keeps for its backward."""

    x: np.ndarray           # (in_features, N)
    weight: np.ndarray      # (out_features, in_features), in the input's dtype
    has_bias: bool


class CrossEntropyCache(NamedTuple):
    """What :func:`cross_entropy_forward` keeps for its backward."""

    log_probs: np.ndarray   # (N, classes)
    labels: np.ndarray      # (N,)


# ----------------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------------

#: How error messages describe the batch-last layouts of this module.
IMAGES = "(C, H, W, N), batch last"
VECTORS = "(features, N), batch last"


def _refuse_batch_first(x: np.ndarray, width: int, layout: str, name: str) -> None:
    """Raise when ``x`` has ``width`` on axis 1 rather than axis 0: it looks batch
    first, as the layers take it, where this module wants the batch last."""
    if x.ndim > 1 and x.shape[1] == width:
        raise ValueError(f"{name} takes {layout}, but got shape {x.shape}, "
                         f"which looks batch first: convert it with batch_last(x) (the "
                         f"layers do this themselves)")


def batch_last(x: np.ndarray) -> np.ndarray:
    """A batch-first array as a contiguous batch-last one: (N, C, H, W) -> (C, H, W, N).

    (N, features) becomes (features, N); arrays of fewer than two
    dimensions have nothing to move and come back as they are.
    """
    return np.ascontiguousarray(np.moveaxis(x, 0, -1)) if x.ndim > 1 else x


def batch_first(x: np.ndarray) -> np.ndarray:
    """The inverse of :func:`batch_last`: (C, H, W, N) -> (N, C, H, W), contiguous."""
    return np.ascontiguousarray(np.moveaxis(x, -1, 0)) if x.ndim > 1 else x


def _window_geometry(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                     padding: tuple[int, int], name: str) -> tuple[int, int]:
    """Check that a kernel fits the padded (C, H, W, N) input; return (OH, OW)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    h, w = x.shape[1:3]
    check_kernel_fits((h, w), kernel, padding, name)
    return conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)


def _pad(x: np.ndarray, padding: tuple[int, int], value: float = 0.0) -> np.ndarray:
    """Surround the H and W axes of (C, H, W, N) with ``padding`` rings of ``value``."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    c, h, w, n = x.shape
    out = np.full((c, h + 2 * ph, w + 2 * pw, n), value, x.dtype)
    out[:, ph:ph + h, pw:pw + w] = x
    return out


#: Chains of element-wise passes (batch normalisation, max pooling's
#: backward) run over blocks of channels of about this many bytes, so that
#: every pass after a block's first finds the block in the CPU's cache rather
#: than in memory.
BLOCK_BYTES = 1 << 19


def _channel_blocks(x: np.ndarray) -> list[slice]:
    """Slices of ``x``'s axis 0, the channels, of about BLOCK_BYTES each."""
    channel_bytes = max(1, x.nbytes // max(1, x.shape[0]))
    step = max(1, BLOCK_BYTES // channel_bytes)
    return [slice(start, start + step) for start in range(0, x.shape[0], step)]


def _every(start: int, step: int, count: int) -> slice:
    """The slice start, start + step, ..., count indices in all."""
    return slice(start, start + step * (count - 1) + 1, step)


def _window(i: int, j: int, out_hw: tuple[int, int], stride: tuple[int, int]):
    """Index of the input pixels that kernel offset (i, j) touches.

    Output position (r, c) reads padded input row ``r·S + i`` and column
    ``c·S + j`` (eq. 4.4 with stride S), so for one offset the rows form the
    strided slice ``i, i + S, ..., i + (OH-1)·S``. The index leaves the
    channel axis and the trailing batch axis whole: (C, OH, OW, N).
    """
    (oh, ow), (sh, sw) = out_hw, stride
    return slice(None), _every(i, sh, oh), _every(j, sw, ow)


# ----------------------------------------------------------------------------
# Convolution (eq. 4.4 forward; 5.1-5.3 and the weight/bias gradients backward)
# ----------------------------------------------------------------------------
#
# A convolution is computed as matrix products, one per output row. Output
# row r of every feature map, all its OW·N values at once, is the filters,
# one per row (F, K), times a matrix whose columns are the receptive fields
# of that row's pixels (K, OW·N). The fields are built in two steps:
#
# 1. "Width columns" (HP, C, KW, OW, N): for every padded input row, KW
#    copies of it, copy j read from column j on, SW columns apart. This is
#    KW copies of the input, where the textbook im2col makes KH·KW.
# 2. The fields of output row r are the KH consecutive rows r·SH ..
#    r·SH+KH-1 of the width columns: KH·C·KW rows of OW·N numbers, evenly
#    spaced in memory, so a strided view with no copy (:func:`_row_windows`).
#
# One np.matmul runs the OH products inside BLAS. The weight gradient is the
# same products transposed, and the input gradient the same scheme run
# backwards (see conv2d_backward), so no matrix of KH·KW copies is ever
# made: columns 5x (5x5 kernels) or 3x (3x3) smaller than im2col's stay in
# cache.

def _width_columns(xp: np.ndarray, kw: int, sw: int, ow: int) -> np.ndarray:
    """Every kernel column's view of every padded input row.

    xp: the padded input (C, HP, WP, N). Returns (HP, C, KW, OW, N) with
    entry ``[y, d, j, q, n] = xp[d, y, q·SW + j, n]``: the value that kernel
    column j meets at output column q (eq. 4.4 with stride), for every row.
    """
    c, hp, _, n = xp.shape
    cols = np.empty((hp, c, kw, ow, n), dtype=xp.dtype)
    for j in range(kw):
        cols[:, :, j] = xp[:, :, _every(j, sw, ow)].transpose(1, 0, 2, 3)
    return cols


def _width_col2im(dcols: np.ndarray, padded_width: int, sw: int) -> np.ndarray:
    """The adjoint of :func:`_width_columns`: add each copy back where it came from.

    dcols: (H, C, KW, OW, N). Returns (C, H, WP, N). Where windows overlap
    (stride < kernel) an input pixel receives the sum of its contributions
    to every output it fed: the tutorial's sum in eq. 5.3.
    """
    h, c, kw, ow, n = dcols.shape
    dx = np.zeros((c, h, padded_width, n), dtype=dcols.dtype)
    for j in range(kw):
        dx[:, :, _every(j, sw, ow)] += dcols[:, :, j].transpose(1, 0, 2, 3)
    return dx


def _row_windows(rows: np.ndarray, kh: int, sh: int, count: int) -> np.ndarray:
    """``count`` windows of ``kh`` consecutive rows, ``sh`` rows apart, as a view.

    rows: C-contiguous (R, B, M). Returns (count, KH·B, M): window r is
    rows r·SH .. r·SH+KH-1 flattened, read in place (windows share rows).
    """
    if not rows.flags.c_contiguous:
        # The view's strides assume each row follows the last in memory.
        raise ValueError("_row_windows needs a C-contiguous array")
    b, m = rows.shape[1:]
    step, inner = rows.strides[1:]
    return np.lib.stride_tricks.as_strided(rows, (count, kh * b, m), (sh * b * step, step, inner),
                                           writeable=False)


def conv2d_forward(x, weight, bias=None, stride=1, padding=0):
    """A convolutional layer's net input for a batch: eq. 4.4, vectorised.

    Batch last, this module's layout: x (C, H, W, N); the Conv2d layer takes NCHW.

    ``out[f, r, c, n] = Σ_d Σ_m Σ_n' weight[f, d, m, n'] ·
    xpad[d, r·S + m, c·S + n', n] + bias[f]``: cross-correlation, as the
    tutorial explains and every framework computes (the filter is not
    rotated). The activation is a separate layer.

    Args:
        x: input (C, H, W, N).
        weight: filters (F, C, KH, KW).
        bias: (F,) or None.
        stride: int or (SH, SW).
        padding: int or (PH, PW): rings of zeros around the input.

    Returns:
        out: (F, OH, OW, N) with OH, OW from eq. 4.2/4.3, in x's dtype.
        cache: what :func:`conv2d_backward` needs.
    """
    x = as_float_array(x, "conv2d input")
    check_ndim(x, 4, IMAGES, "conv2d input")
    weight = as_float_array(weight, "conv2d weight")
    check_ndim(weight, 4, "(F, C, KH, KW)", "conv2d weight")
    f, c, kh, kw = weight.shape
    if x.shape[0] != c:
        _refuse_batch_first(x, c, IMAGES, "conv2d")
        raise ValueError(f"conv2d expected input with {c} channels, got {x.shape[0]}")
    if bias is not None:
        bias = as_float_array(bias, "conv2d bias")
        if bias.shape != (f,):
            raise ValueError(f"conv2d bias must have shape ({f},), got {bias.shape}")
    stride = pair(stride, "stride", 1)
    padding = pair(padding, "padding", 0)
    oh, ow = _window_geometry(x, (kh, kw), stride, padding, "conv2d")
    n = x.shape[3]

    weight = weight.astype(x.dtype, copy=False)
    cols = _width_columns(_pad(x, padding), kw, stride[1], ow)     # (HP, C, KW, OW, N)
    fields = _row_windows(cols.reshape(len(cols), c * kw, ow * n), kh, stride[0], oh)
    # The filters' weights in the fields' (KH, C, KW) order: (F, K).
    filters = weight.transpose(0, 2, 1, 3).reshape(f, kh * c * kw)
    out = np.empty((f, oh, ow * n), dtype=x.dtype)
    np.matmul(filters, fields, out=out.transpose(1, 0, 2))   # row r: (F, K)·(K, OW·N)
    if bias is not None:
        out += bias.astype(x.dtype, copy=False)[:, None, None]
    # The fields view keeps the width columns alive for the backward.
    cache = ConvCache(x.shape, fields, weight, stride, padding, (oh, ow), bias is not None)
    return out.reshape(f, oh, ow, n), cache


def conv2d_backward(grad_out, cache, input_grad=True):
    """Gradients of a convolutional layer.

    Batch last, this module's layout: δ (F, OH, OW, N).

    Args:
        grad_out: δ of this layer's output, (F, OH, OW, N).
        cache: from :func:`conv2d_forward`.
        input_grad: False skips grad_x (returned as None), for a first layer
            whose input is the data.

    Returns:
        (grad_x, grad_weight, grad_bias):

        - grad_x (C, H, W, N): the sensitivity map passed back, eq. 5.1-5.3
          before the previous layer's f'. As the tutorial says, it is a full
          convolution of the stride-expanded δ with the 180°-rotated
          filters: each input row y gathers δ of the KH output rows whose
          windows cover it, through the kernel rows flipped. That is the
          forward's scheme over δ's rows, spaced SH apart with zero rows
          between (the stride expansion) and KH-1 zero rows above, and it
          yields width columns, which :func:`_width_col2im` adds back onto
          the input's columns. Padding is cropped away.
        - grad_weight (F, C, KH, KW): ∂E/∂w_{d,m,n} = Σ δ_{r,c} ·
          a_{d, r·S+m, c·S+n}, summed over positions and samples (weight
          sharing): for each output row, its fields times its δ, summed.
        - grad_bias (F,): the sum of each feature map's δ, or None.
    """
    x_shape, fields, weight, stride, padding, (oh, ow), has_bias = cache
    c, h, w, n = x_shape
    f, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    grad_out = check_grad(grad_out, (f, oh, ow, n), fields.dtype, "conv2d")
    g_rows = grad_out.reshape(f, oh, ow * n).transpose(1, 0, 2)     # (OH, F, OW·N), a view

    grad_filters = np.matmul(fields, g_rows.transpose(0, 2, 1)).sum(axis=0)   # (K, F)
    grad_weight = np.ascontiguousarray(grad_filters.T.reshape(f, kh, c, kw).transpose(0, 2, 1, 3))
    # Σ over positions as a matrix-vector product: BLAS beats a strided sum.
    g = grad_out.reshape(f, -1)
    grad_bias = g @ np.ones(g.shape[1], dtype=g.dtype) if has_bias else None
    if not input_grad:
        return None, grad_weight, grad_bias

    # δ's row r goes to row KH-1 + r·SH: SH-1 zero rows between (the stride
    # expansion) and KH-1 above (the full convolution's border).
    spread = np.zeros((h + 2 * ph + kh - 1, f, ow * n), dtype=fields.dtype)
    spread[_every(kh - 1, sh, oh)] = g_rows
    # Row t of padded input row y's window is δ of the output row that met y
    # through kernel row KH-1-t: the filters rotated, as (C·KW, KH·F).
    flipped = weight[:, :, ::-1].transpose(1, 3, 2, 0).reshape(c * kw, kh * f)
    # Only the input's own rows: the padding rows' gradients would be cropped.
    dcols = np.matmul(flipped, _row_windows(spread[ph:], kh, 1, h))   # (H, C·KW, OW·N)
    grad_x = _width_col2im(dcols.reshape(h, c, kw, ow, n), w + 2 * pw, sw)
    return np.ascontiguousarray(grad_x[:, :, pw:pw + w]), grad_weight, grad_bias


# ----------------------------------------------------------------------------
# Pooling (forward: max or mean of each window; backward: where δ goes)
# ----------------------------------------------------------------------------

def _pool_setup(x, kernel_size, stride, padding, name):
    """Read and check the arguments shared by max and average pooling."""
    x = as_float_array(x, f"{name} input")
    check_ndim(x, 4, IMAGES, f"{name} input")
    kernel = pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None else pair(stride, "stride", 1)
    padding = pair(padding, "padding", 0)
    check_pool_padding(kernel, padding, name)
    out_hw = _window_geometry(x, kernel, stride, padding, name)
    return x, kernel, stride, padding, out_hw


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Max pooling: every window of every channel gives its maximum.

    Batch last, this module's layout: x (C, H, W, N); MaxPool2d takes NCHW.

    Padding adds rings of -inf (PyTorch's meaning), so a padded position never
    wins; the output size follows eq. 4.2.

    Args:
        x: (C, H, W, N).
        kernel_size: int or (KH, KW). stride: int or pair, default kernel_size.
        padding: int or pair, at most half the kernel.

    Returns:
        out: (C, OH, OW, N) and the cache for :func:`max_pool2d_backward`.
    """
    x, kernel, stride, padding, out_hw = _pool_setup(x, kernel_size, stride, padding,
                                                     "max_pool2d")
    xp = _pad(x, padding, value=-np.inf)
    # One np.maximum per kernel offset over the whole batch: a few long passes.
    out = xp[_window(0, 0, out_hw, stride)].copy()
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            if i or j:
                np.maximum(out, xp[_window(i, j, out_hw, stride)], out=out)
    return out, PoolCache(x.shape, x.dtype, kernel, stride, padding, out_hw, xp, out)


def max_pool2d_backward(grad_out, cache):
    """Max pooling backward: δ goes to the window's maximum, zeros elsewhere.

    Batch last, this module's layout: δ (C, OH, OW, N).

    When a window holds several equal maxima the first in row-major order
    takes δ (the tutorial's code and the major frameworks agree); when windows
    overlap, an input that is the maximum of several windows receives the sum.
    A NaN input passes NaN forward but gets no gradient (NaN equals nothing);
    training that sees NaN has already diverged, so the loop does not test for it.

    Args:
        grad_out: (C, OH, OW, N). cache: from :func:`max_pool2d_forward`.

    Returns:
        grad_x: (C, H, W, N).
    """
    xp, out, kernel, stride, padding, out_hw = (cache.xp, cache.out, cache.kernel, cache.stride,
                                                cache.padding, cache.out_hw)
    grad_out = check_grad(grad_out, out.shape, xp.dtype, "max_pool2d")
    overlapping = stride[0] < kernel[0] or stride[1] < kernel[1]
    # When the windows tile the padded input exactly, the loop below writes
    # every position once and the zeros can be skipped.
    tiled = stride == kernel and all(k * o == size for k, o, size
                                     in zip(kernel, out_hw, xp.shape[1:3]))
    grad_xp = np.empty_like(xp) if tiled else np.zeros_like(xp)
    for block in _channel_blocks(xp):
        _max_pool_block_backward(xp[block], out[block], grad_out[block], grad_xp[block],
                                 kernel, stride, out_hw, overlapping)
    (ph, pw), (hp, wp) = padding, xp.shape[1:3]
    return np.ascontiguousarray(grad_xp[:, ph:hp - ph, pw:wp - pw])


def _max_pool_block_backward(xp, out, grad_out, grad_xp, kernel, stride, out_hw, overlapping):
    """Route δ of some channels to their windows' first maxima, into ``grad_xp``."""
    free = np.ones(out.shape, dtype=bool)      # windows whose maximum is not yet found
    first = np.empty(out.shape, dtype=bool)    # ... and found at this offset
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            window = _window(i, j, out_hw, stride)
            np.equal(xp[window], out, out=first)
            first &= free
            free ^= first
            # δ times a 0/1 mask, far faster than np.where. Apart, windows can
            # be written in place; overlapping ones must add up.
            if overlapping:
                grad_xp[window] += grad_out * first
            else:
                np.multiply(grad_out, first, out=grad_xp[window])


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Mean pooling: every window gives its average.

    Batch last, this module's layout: x (C, H, W, N); AvgPool2d takes NCHW.

    Padding adds zeros, and they count in the average (PyTorch's default,
    ``count_include_pad=True``): every window divides by KH·KW.

    Args and returns as :func:`max_pool2d_forward`.
    """
    x, kernel, stride, padding, out_hw = _pool_setup(x, kernel_size, stride, padding,
                                                     "avg_pool2d")
    xp = _pad(x, padding)
    out = xp[_window(0, 0, out_hw, stride)].copy()
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            if i or j:
                out += xp[_window(i, j, out_hw, stride)]
    out *= out.dtype.type(1.0 / (kernel[0] * kernel[1]))
    return out, PoolCache(x.shape, x.dtype, kernel, stride, padding, out_hw)


def avg_pool2d_backward(grad_out, cache):
    """Mean pooling backward: each of a window's KH·KW inputs gets δ/(KH·KW).

    Batch last, this module's layout: δ (C, OH, OW, N).

    Where the windows tile the input (stride equals kernel, no padding) this
    is the tutorial's Kronecker product δ ⊗ (1/n²)_{n×n}, done as a reshape
    and a broadcast; elsewhere overlapping contributions are added per kernel
    offset.

    Args:
        grad_out: (C, OH, OW, N). cache: from :func:`avg_pool2d_forward`.

    Returns:
        grad_x: (C, H, W, N).
    """
    x_shape, dtype, kernel, stride, padding, out_hw, _, _ = cache
    c, h, w, n = x_shape
    grad_out = check_grad(grad_out, (c, *out_hw, n), dtype, "avg_pool2d")
    (kh, kw), (oh, ow), (ph, pw) = kernel, out_hw, padding
    share = grad_out * dtype.type(1.0 / (kh * kw))
    if stride == kernel and padding == (0, 0):
        grad_x = np.zeros(x_shape, dtype=dtype)
        # Rows and columns past OH·KH, OW·KW fed no window and keep zero.
        tiles = grad_x[:, :oh * kh, :ow * kw].reshape(c, oh, kh, ow, kw, n)
        tiles[...] = share[:, :, None, :, None]
        return grad_x
    grad_xp = np.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            grad_xp[_window(i, j, out_hw, stride)] += share
    return np.ascontiguousarray(grad_xp[:, ph:ph + h, pw:pw + w])


# ----------------------------------------------------------------------------
# Fully connected layer: net = W·a + b
# ----------------------------------------------------------------------------

def linear_forward(x, weight, bias=None):
    """Fully connected layer for a batch: ``out = W · x + b``, a column per sample.

    Batch last, this module's layout: x (in_features, N); Linear takes (N, in_features).

    Args:
        x: (in_features, N). weight: (out_features, in_features), PyTorch's
        layout, so that row j holds the weights into neuron j. bias:
        (out_features,) or None.

    Returns:
        out: (out_features, N) and the cache for :func:`linear_backward`.
    """
    x = as_float_array(x, "linear input")
    check_ndim(x, 2, VECTORS, "linear input")
    weight = as_float_array(weight, "linear weight")
    check_ndim(weight, 2, "(out_features, in_features)", "linear weight")
    if x.shape[0] != weight.shape[1]:
        _refuse_batch_first(x, weight.shape[1], VECTORS, "linear")
        raise ValueError(f"linear expected input with {weight.shape[1]} features "
                         f"({weight.shape[1]}, N), got shape {x.shape}")
    if bias is not None:
        bias = as_float_array(bias, "linear bias")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"linear bias must have shape ({weight.shape[0]},), "
                             f"got {bias.shape}")
    w = weight.astype(x.dtype, copy=False)
    out = w @ x
    if bias is not None:
        out += bias.astype(x.dtype, copy=False)[:, None]
    return out, LinearCache(x, w, bias is not None)


def linear_backward(grad_out, cache, input_grad=True):
    """Fully connected layer backward.

    Batch last, this module's layout: δ (out_features, N).

    With δ = grad_out (out_features, N): the previous layer's δ before its
    f' is Wᵀ · δ, ∂E/∂W = δ · xᵀ (δ aᵀ summed over the batch), ∂E/∂b = Σ δ.

    Returns:
        (grad_x (in_features, N), grad_weight (out, in), grad_bias (out,) or
        None); grad_x is None when ``input_grad`` is False.
    """
    x, w, has_bias = cache
    g = check_grad(grad_out, (w.shape[0], x.shape[1]), x.dtype, "linear")
    grad_bias = g.sum(axis=1) if has_bias else None
    return (w.T @ g if input_grad else None), g @ x.T, grad_bias


# ----------------------------------------------------------------------------
# Activations: a = f(net), and δ_net = δ_a ∘ f'(net)
# ----------------------------------------------------------------------------

def relu_forward(x):
    """ReLU, f(x) = max(0, x). Returns (out, cache); any shape.

    Any layout: it works element by element.
    """
    x = as_float_array(x, "relu input")
    out = np.maximum(x, 0)
    return out, out


def relu_backward(grad_out, cache):
    """ReLU backward: f'(x) is 1 where x > 0 and 0 elsewhere (at 0 too)."""
    out = cache
    grad_out = check_grad(grad_out, out.shape, out.dtype, "relu")
    # δ times a 0/1 mask: one multiplication, far faster than np.where.
    return grad_out * (out > 0)


def sigmoid_forward(x):
    """Sigmoid 1 / (1 + e^-x), computed so that no exp can overflow.

    Any layout: it works element by element.

    For x >= 0 it uses 1/(1 + e^-x); for x < 0 the equal e^x/(1 + e^x). Both
    exponents are then <= 0, so inputs of ±1000 give exactly 1 and 0.
    """
    x = as_float_array(x, "sigmoid input")
    e = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return out, out


def sigmoid_backward(grad_out, cache):
    """Sigmoid backward: σ'(x) = σ(x)(1 - σ(x)), at most 1/4."""
    out = cache
    grad_out = check_grad(grad_out, out.shape, out.dtype, "sigmoid")
    return grad_out * out * (1 - out)


def tanh_forward(x):
    """Hyperbolic tangent. Returns (out, cache); any shape.

    Any layout: it works element by element.
    """
    x = as_float_array(x, "tanh input")
    out = np.tanh(x)
    return out, out


def tanh_backward(grad_out, cache):
    """tanh backward: tanh'(x) = 1 - tanh(x)²."""
    out = cache
    grad_out = check_grad(grad_out, out.shape, out.dtype, "tanh")
    return grad_out * (1 - out * out)


# ----------------------------------------------------------------------------
# Losses: these take a model's output, which is batch first (N, classes)
# ----------------------------------------------------------------------------

def softmax(logits) -> np.ndarray:
    """Class probabilities (N, classes) from logits (N, classes).

    Batch first, (N, classes): a model's output as the layers give it.

    ``p[n, k] = exp(logits[n, k]) / Σ_j exp(logits[n, j])``. Each row is
    shifted by its maximum first, which leaves the ratio unchanged but keeps
    every exp at most 1, so logits of ±1000 cannot overflow. Each row sums to 1.
    """
    logits = as_float_array(logits, "softmax logits")
    check_ndim(logits, 2, "(N, classes)", "softmax logits")
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def cross_entropy_forward(logits, labels):
    """Softmax and cross-entropy on logits, averaged over the batch.

    Batch first, (N, classes): a model's output as the layers give it.

    ``loss = mean_n( logsumexp(logits[n]) - logits[n, labels[n]] )``, with the
    log-sum-exp shifted by each row's maximum so that no exp overflows: logits
    of ±1000 give a finite loss.

    Args:
        logits: (N, classes), any real values.
        labels: (N,) integers in [0, classes).

    Returns:
        loss: a Python float, and the cache for :func:`cross_entropy_backward`.
    """
    logits = as_float_array(logits, "cross-entropy logits")
    check_ndim(logits, 2, "(N, classes)", "cross-entropy logits")
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError) as error:
        raise TypeError(f"cross-entropy labels must be an array of integer class indices, "
                        f"got {type(labels).__name__} that NumPy cannot read as one "
                        f"({error})") from None
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross-entropy labels must be integer class indices, "
                        f"got dtype {labels.dtype}")
    n, classes = logits.shape
    if labels.shape != (n,):
        raise ValueError(f"cross-entropy labels must have shape ({n},), one per sample, "
                         f"got {labels.shape}")
    if n == 0:
        raise ValueError("cross-entropy needs at least one sample, got an empty batch")
    if labels.min() < 0 or labels.max() >= classes:
        bad = labels[(labels < 0) | (labels >= classes)][0]
        raise ValueError(f"cross-entropy labels must be in [0, {classes}), got {bad}")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    loss = -float(log_probs[rows, labels].mean())
    return loss, CrossEntropyCache(log_probs, labels)


def cross_entropy_backward(cache):
    """d loss / d logits = (softmax(logits) - onehot(labels)) / N, shape (N, classes)."""
    log_probs, labels = cache
    n = log_probs.shape[0]
    grad = np.exp(log_probs)
    grad[np.arange(n), labels] -= 1
    grad /= n
    return grad


def mse_forward(prediction, target):
    """Mean squared error over every element: ``mean((prediction - target)²)``.

    Any layout: prediction and target have the same shape.

    Args:
        prediction, target: arrays of the same shape.

    Returns:
        loss: a Python float, and the cache for :func:`mse_backward`.
    """
    prediction = as_float_array(prediction, "mse prediction")
    target = as_float_array(target, "mse target")
    if prediction.shape != target.shape:
        raise ValueError(f"mse target must have the prediction's shape {prediction.shape}, "
                         f"got {target.shape}")
    if prediction.size == 0:
        raise ValueError("mse needs at least one element, got an empty prediction")
    diff = prediction - target.astype(prediction.dtype, copy=False)
    return float(np.mean(diff * diff)), diff


def mse_backward(cache):
    """d loss / d prediction = 2 (prediction - target) / number of elements."""
    diff = cache
    return diff * diff.dtype.type(2.0 / diff.size)


# ----------------------------------------------------------------------------
# Batch normalisation and dropout (not in the tutorial; the stronger models use them)
# ----------------------------------------------------------------------------

class BatchNormCache(NamedTuple):
    """What :func:`batch_norm2d_forward` keeps for its backward.

    ``mean`` and ``var`` (C,) are the statistics the forward normalised with:
    the batch's own (biased variance) when ``batch_stats`` is true, the given
    running statistics otherwise. ``count`` is M = N·H·W, the number of
    values behind each channel's statistics; a layer reads ``mean``, ``var``
    and ``count`` to update its running statistics.
    """

    centred: np.ndarray     # (C, H, W, N), x - mean; x_hat is centred · inv_std
    inv_std: np.ndarray     # (C,), 1 / sqrt(var + eps)
    weight: np.ndarray      # (C,), gamma in the input's dtype
    mean: np.ndarray
    var: np.ndarray
    count: int
    batch_stats: bool
    has_bias: bool


def _channel_vector(value, c: int, dtype, name: str) -> np.ndarray:
    """``value`` as a (C,) array of ``dtype``, or a clear error."""
    value = as_float_array(value, name)
    if value.shape != (c,):
        raise ValueError(f"{name} must have shape ({c},), one per channel, got {value.shape}")
    return value.astype(dtype, copy=False)


def batch_norm2d_forward(x, weight, bias=None, mean=None, var=None, eps=1e-5, gather=None):
    """Batch normalisation of every channel: ``out = gamma · x_hat + beta``.

    Batch last, this module's layout: x (C, H, W, N); BatchNorm2d takes NCHW.

    ``x_hat = (x - mean) / sqrt(var + eps)``, per channel, over the batch and
    every position. With ``mean`` and ``var`` None the statistics are the
    batch's own, with the biased variance (training); given, they are used as
    constants (evaluation with the running statistics). A (C, N) batch of
    vectors is normalised as the (C, 1, 1, N) maps it equals.

    Args:
        x: (C, H, W, N).
        weight: gamma (C,). bias: beta (C,) or None.
        mean, var: (C,) statistics to use, or None for the batch's.
        eps: added to the variance so that a constant channel divides by
            sqrt(eps), not by zero.
        gather: None on one process. When the batch is shared among
            workers (:mod:`tinyconv.training.distributed`), ``x`` holds this
            worker's columns and ``gather(a)`` returns every worker's array
            ``a``, stacked in the order of the workers; the batch
            statistics are then the whole batch's, and the cache's
            ``count`` is the whole batch's M.

    Returns:
        out: (C, H, W, N) in x's dtype, and a :class:`BatchNormCache`.
    """
    x = as_float_array(x, "batch_norm2d input")
    check_ndim(x, 4, IMAGES, "batch_norm2d input")
    c = x.shape[0]
    if (mean is None) != (var is None):
        raise ValueError("batch_norm2d needs both mean and var, or neither (batch statistics)")
    if np.size(weight) != c:
        _refuse_batch_first(x, np.size(weight), IMAGES, "batch_norm2d")
    weight = _channel_vector(weight, c, x.dtype, "batch_norm2d weight")
    if bias is not None:
        bias = _channel_vector(bias, c, x.dtype, "batch_norm2d bias")
    # With the batch last, each channel's M = H·W·N values are one
    # contiguous row of this (C, M) view.
    rows = x.reshape(c, -1)
    n = rows.shape[1]                    # this worker's values per channel
    batch_stats = mean is None
    shared = batch_stats and gather is not None
    if batch_stats:
        mean, var = np.empty(c, x.dtype), np.empty(c, x.dtype)
    else:
        mean = _channel_vector(mean, c, x.dtype, "batch_norm2d mean")
        var = _channel_vector(var, c, x.dtype, "batch_norm2d var")
    inv_std = np.empty(c, x.dtype)
    centred, out = np.empty_like(rows), np.empty_like(rows)

    def centre(k):
        """x - mean; with batch statistics, first this worker's mean and variance."""
        if batch_stats:
            mean[k] = rows[k].sum(axis=1) / x.dtype.type(max(n, 1))
        np.subtract(rows[k], mean[k, None], out=centred[k])
        if batch_stats:
            var[k] = np.einsum("cm,cm->c", centred[k], centred[k]) / x.dtype.type(max(n, 1))

    def normalise(k):
        if shared:  # centred again, on the whole batch's mean
            np.subtract(rows[k], mean[k, None], out=centred[k])
        inv_std[k] = 1 / np.sqrt(var[k] + x.dtype.type(eps))
        # gamma · x_hat as one product with gamma / std: x_hat itself is never
        # stored, which saves a pass over the maps (the backward needs only sums).
        np.multiply(centred[k], (weight[k] * inv_std[k])[:, None], out=out[k])
        if bias is not None:
            out[k] += bias[k, None]

    # Workers: one allgather between the passes makes the statistics the whole batch's.
    combined = _by_blocks(rows, centre, normalise,
                          (lambda: _combine_statistics(mean, var, n, gather)) if shared else None)
    count = n if combined is None else combined
    if batch_stats and count < 2:
        raise ValueError(f"batch_norm2d needs more than one value per channel to take "
                         f"batch statistics, got {count}")
    return out.reshape(x.shape), BatchNormCache(centred.reshape(x.shape), inv_std, weight, mean,
                                                var, count, batch_stats, bias is not None)


def _by_blocks(rows, first, second, combine=None):
    """Run ``first(k)`` and then ``second(k)`` on every block k of channels of ``rows``.

    One process (``combine`` None): each block's second pass follows its
    first while the block is still in the cache. Workers: every first
    pass, then ``combine()`` (the collective that the second passes need),
    then every second pass; returns what ``combine`` returned.
    """
    blocks = _channel_blocks(rows)
    for k in blocks:
        first(k)
        if combine is None:
            second(k)
    if combine is None:
        return None
    combined = combine()
    for k in blocks:
        second(k)
    return combined


def _combine_statistics(mean, var, n: int, gather) -> int:
    """Turn this worker's per-channel ``mean`` and ``var`` (of its ``n``
    values each) into the whole batch's, in place; return the batch's count.

    One allgather of every worker's (n, mean, n·var), then Chan, Golub and
    LeVeque's pairwise rule on every worker alike: the batch's mean is the
    workers' means weighted by n, and its sum of squares about that mean
    is the workers' own sums plus n·(worker's mean - batch's mean)² each.
    Nothing subtracts large sums of squares, so the variance stays as exact
    as one process's even when the mean is far from zero.
    """
    c = len(mean)
    ours = np.concatenate([[n], mean, n * var.astype(np.float64)])
    every = gather(ours)                                   # (workers, 1 + 2C)
    counts, means, squares = every[:, :1], every[:, 1:c + 1], every[:, c + 1:]
    count = int(counts.sum())
    whole = (counts * means).sum(axis=0) / max(count, 1)
    mean[:] = whole
    var[:] = (squares + counts * (means - whole) ** 2).sum(axis=0) / max(count, 1)
    return count


def batch_norm2d_backward(grad_out, cache, gather=None):
    """Gradients of batch normalisation.

    Batch last, this module's layout: δ (C, H, W, N).

    With g = grad_out and sums over the batch and positions of each channel
    (M values): ∂E/∂beta = Σ g, ∂E/∂gamma = Σ g·x_hat. With batch statistics
    the mean and variance depend on every input too, which gives
    ``grad_x = gamma / sqrt(var + eps) · (g - Σg / M - x_hat · Σ(g·x_hat) / M)``;
    with fixed statistics only the first term remains.

    ``gather``: as :func:`batch_norm2d_forward` took it. The two sums in
    grad_x are then the whole batch's (one allgather, summed in the workers'
    order), while grad_weight and grad_bias are this worker's share, which
    the workers' gradient sum adds up.

    Returns:
        (grad_x (C, H, W, N), grad_weight (C,), grad_bias (C,) or None).
    """
    shape = cache.centred.shape
    grad_out = check_grad(grad_out, shape, cache.centred.dtype, "batch_norm2d")
    g = grad_out.reshape(shape[0], -1)               # (C, M), as in the forward
    centred = cache.centred.reshape(shape[0], -1)
    shared = gather is not None and cache.batch_stats
    grad_bias, grad_weight = np.empty_like(cache.inv_std), np.empty_like(cache.inv_std)
    # The whole batch's Σg and Σ g·x_hat: on one process, this batch's own.
    sum_g, sum_g_hat = ((np.empty_like(grad_bias), np.empty_like(grad_weight)) if shared
                        else (grad_bias, grad_weight))
    scale = cache.weight * cache.inv_std
    m = cache.centred.dtype.type(cache.count)
    grad_x = np.empty_like(g)

    def sums(k):
        grad_bias[k] = g[k].sum(axis=1)
        grad_weight[k] = np.einsum("cm,cm->c", g[k], centred[k]) * cache.inv_std[k]

    def input_gradient(k):
        np.multiply(g[k], scale[k, None], out=grad_x[k])
        if cache.batch_stats:
            grad_x[k] -= centred[k] * (scale[k] * cache.inv_std[k] * sum_g_hat[k] / m)[:, None]
            grad_x[k] -= (scale[k] * sum_g[k] / m)[:, None]

    def combine():
        every = gather(np.concatenate([grad_bias, grad_weight]).astype(np.float64))
        sum_g[:], sum_g_hat[:] = np.split(every.sum(axis=0), 2)

    _by_blocks(g, sums, input_gradient, combine if shared else None)
    return grad_x.reshape(shape), grad_weight, grad_bias if cache.has_bias else None


def dropout_forward(x, p, rng, columns=None):
    """Inverted dropout for training: zero each value with probability ``p``.

    Batch last, this module's layout: the mask is drawn in x's shape, batch last.

    The kept values are scaled by 1 / (1 - p), so every value's expectation
    is unchanged and evaluation needs no rescaling (it skips dropout).

    Args:
        x: any shape. p: the drop probability, in [0, 1).
        rng: a ``numpy.random.Generator``, the only source of the mask.
        columns: None, or ``(start, stop, total)`` when x holds columns
            start:stop of a batch of ``total`` shared among workers: the
            mask is drawn for the whole batch and cut to those columns, so
            each sample gets the mask one process would have given it.

    Returns:
        out: x's shape and dtype, and the cache: the mask (0 or 1/(1-p) per
        value, x's dtype) that backward multiplies by.
    """
    x = as_float_array(x, "dropout input")
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"dropout p must be a number in [0, 1), got {p!r}")
    if not 0 <= p < 1:
        raise ValueError(f"dropout p must be in [0, 1), got {p}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"dropout rng must be a numpy Generator, got {type(rng).__name__}")
    # float32 draws are half the work of float64 and plenty to compare with p.
    draw_dtype = np.float32 if x.dtype == np.float32 else np.float64
    if columns is None:
        keep = rng.random(x.shape, dtype=draw_dtype) >= p
    else:
        start, stop, total = columns
        if stop - start != x.shape[-1] or not 0 <= start <= stop <= total:
            raise ValueError(f"dropout columns {columns} do not fit an input of "
                             f"{x.shape[-1]} columns")
        keep = rng.random(x.shape[:-1] + (total,), dtype=draw_dtype)[..., start:stop] >= p
    mask = keep * x.dtype.type(1 / (1 - p))
    return x * mask, mask


def dropout_backward(grad_out, cache):
    """Dropout backward: δ passes where the value was kept, scaled the same way."""
    mask = cache
    return check_grad(grad_out, mask.shape, mask.dtype, "dropout") * mask
