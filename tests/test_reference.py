"""The fast path equals the tutorial's literal loops.

:mod:`tinyconv.nn.functional` works on whole batches with vectorised NumPy,
batch last (C, H, W, N); :mod:`tinyconv.tutorial.reference` writes each formula out
for one sample (C, H, W). The arrays here are drawn batch first, so that
``x[n]`` is sample n, and converted for the fast path. Both
run on random configurations drawn by hypothesis (strides, paddings, square
and non-square kernels, channels, filters, batch sizes, strides that do not
divide the padded size), and every output and gradient must agree to ~1e-10
in float64, sample by sample. Parameter gradients of the batch are the sums
of the per-sample gradients.
"""

import re
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tinyconv import functional as F
from tinyconv import reference as R

TOLERANCE = dict(rtol=1e-10, atol=1e-10)
SETTINGS = settings(max_examples=60, deadline=None)


@dataclass(frozen=True)
class Config:
    """One layer configuration and the seed of its random arrays."""

    batch: int
    channels: int
    filters: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int] | None
    padding: tuple[int, int]
    seed: int

    @property
    def input_shape(self):
        return (self.batch, self.channels, self.height, self.width)


def _size_that_fits(draw, kernel: int, padding: int) -> int:
    """An input size from the smallest the kernel fits (padding included) up."""
    smallest = max(1, kernel - 2 * padding)
    return draw(st.integers(smallest, smallest + 6))


@st.composite
def conv_configs(draw):
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    return Config(batch=draw(st.integers(1, 4)), channels=draw(st.integers(1, 3)),
                  filters=draw(st.integers(1, 3)),
                  height=_size_that_fits(draw, kernel[0], padding[0]),
                  width=_size_that_fits(draw, kernel[1], padding[1]),
                  kernel=kernel,
                  stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                  padding=padding, seed=draw(st.integers(0, 2**32 - 1)))


@st.composite
def pool_configs(draw):
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    # PyTorch's rule: padding at most half the window.
    padding = (draw(st.integers(0, min(2, kernel[0] // 2))),
               draw(st.integers(0, min(2, kernel[1] // 2))))
    stride = draw(st.none() | st.tuples(st.integers(1, 3), st.integers(1, 3)))
    return Config(batch=draw(st.integers(1, 4)), channels=draw(st.integers(1, 3)), filters=0,
                  height=_size_that_fits(draw, kernel[0], padding[0]),
                  width=_size_that_fits(draw, kernel[1], padding[1]),
                  kernel=kernel, stride=stride, padding=padding,
                  seed=draw(st.integers(0, 2**32 - 1)))


def _assert_close(actual, expected):
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, **TOLERANCE)


# (6 - 3) / 2 and (7 - 2 + 2) / 3 do not divide: eq. 4.2 floors, and the
# dropped last row and columns must get a zero gradient on both sides.
@example(Config(batch=1, channels=2, filters=3, height=6, width=7, kernel=(3, 2),
                stride=(2, 3), padding=(0, 1), seed=1))
@example(Config(batch=2, channels=1, filters=1, height=1, width=1, kernel=(5, 5),
                stride=(3, 3), padding=(2, 2), seed=2))
# A stride taller than the kernel and padding wider than it: rows that no
# window reads, and δ's rows spread three apart.
@example(Config(batch=2, channels=2, filters=2, height=7, width=5, kernel=(1, 2),
                stride=(3, 2), padding=(2, 0), seed=3))
@given(conv_configs())
@SETTINGS
def test_conv_forward_and_every_gradient(config):
    rng = np.random.default_rng(config.seed)
    x = rng.normal(size=config.input_shape)
    weight = rng.normal(size=(config.filters, config.channels) + config.kernel)
    bias = rng.normal(size=config.filters)

    out, cache = F.conv2d_forward(F.batch_last(x), weight, bias, config.stride, config.padding)
    out = F.batch_first(out)
    delta = rng.normal(size=out.shape)
    grad_x, grad_weight, grad_bias = F.conv2d_backward(F.batch_last(delta), cache)
    grad_x = F.batch_first(grad_x)

    geometry = (config.stride, config.padding)
    for n in range(config.batch):
        _assert_close(out[n], R.conv_forward(x[n], weight, bias, *geometry))
        _assert_close(grad_x[n], R.conv_backward_delta(delta[n], weight, x.shape[1:],
                                                       *geometry))
    _assert_close(grad_weight, sum(R.conv_weight_gradient(x[n], delta[n], config.kernel,
                                                          *geometry)
                                   for n in range(config.batch)))
    _assert_close(grad_bias, sum(R.conv_bias_gradient(delta[n]) for n in range(config.batch)))


def test_row_windows_are_the_rows_they_name():
    rows = np.arange(7 * 2 * 3.0).reshape(7, 2, 3)
    windows = F._row_windows(rows, 3, 2, 3)
    expected = np.stack([rows[2 * r:2 * r + 3].reshape(6, 3) for r in range(3)])
    np.testing.assert_array_equal(windows, expected)
    with pytest.raises(ValueError, match="C-contiguous"):
        F._row_windows(rows[:, :, ::2], 3, 2, 3)


@given(conv_configs())
@settings(max_examples=20, deadline=None)
def test_conv_delta_times_f_prime_equals_conv_then_relu_backward(config):
    """Eq. 5.2 in one step equals the fast conv backward followed by ReLU's."""
    rng = np.random.default_rng(config.seed)
    net_prev = rng.normal(size=config.input_shape)
    a_prev, relu_cache = F.relu_forward(F.batch_last(net_prev))
    weight = rng.normal(size=(config.filters, config.channels) + config.kernel)
    out, cache = F.conv2d_forward(a_prev, weight, None, config.stride, config.padding)
    delta = rng.normal(size=out.shape[-1:] + out.shape[:-1])
    delta_prev = F.relu_backward(F.conv2d_backward(F.batch_last(delta), cache)[0], relu_cache)
    delta_prev = F.batch_first(delta_prev)

    for n in range(config.batch):
        expected = R.conv_backward_delta(delta[n], weight, net_prev.shape[1:], config.stride,
                                         config.padding, net_prev=net_prev[n],
                                         activation_derivative=R.relu_derivative)
        _assert_close(delta_prev[n], expected)


# Overlapping 3x3 windows at stride 1 on values 0, 1, 2: ties in most windows.
@example(Config(batch=1, channels=1, filters=0, height=4, width=4, kernel=(3, 3),
                stride=(1, 1), padding=(1, 1), seed=3), True)
# 2x2 windows that tile the input (every position written once, no zeros
# first), and the same windows leaving a row and a column over (they need 0).
@example(Config(batch=2, channels=2, filters=0, height=4, width=6, kernel=(2, 2),
                stride=None, padding=(0, 0), seed=6), True)
@example(Config(batch=2, channels=2, filters=0, height=5, width=7, kernel=(2, 2),
                stride=None, padding=(0, 0), seed=7), True)
@given(pool_configs(), st.booleans())
@SETTINGS
def test_max_pool_forward_and_backward(config, ties):
    rng = np.random.default_rng(config.seed)
    if ties:
        # Few distinct values: windows hold equal maxima, and the gradient
        # pins which of them takes δ (the first in row-major order).
        x = rng.integers(0, 3, size=config.input_shape).astype(np.float64)
    else:
        x = rng.normal(size=config.input_shape)
    args = (config.kernel, config.stride, config.padding)

    out, cache = F.max_pool2d_forward(F.batch_last(x), *args)
    out = F.batch_first(out)
    delta = rng.normal(size=out.shape)
    grad_x = F.batch_first(F.max_pool2d_backward(F.batch_last(delta), cache))
    for n in range(config.batch):
        _assert_close(out[n], R.max_pool_forward(x[n], *args))
        _assert_close(grad_x[n], R.max_pool_backward(x[n], delta[n], *args))


@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), (3, 1, 1), (3, 2, 1)])
def test_max_pool_over_several_blocks_of_channels(kernel, stride, padding, monkeypatch):
    """Max pooling's backward runs over blocks of channels; here 1 or 2 in each."""
    rng = np.random.default_rng(8)
    x = rng.integers(0, 3, size=(2, 5, 6, 7)).astype(np.float64)  # ties in most windows
    # A channel is 672 bytes (two samples of 6x7 float64), 1,152 padded:
    # blocks of 1,200 bytes hold one channel, blocks of 2,000 one or two.
    for block_bytes in (1200, 2000):
        monkeypatch.setattr(F, "BLOCK_BYTES", block_bytes)
        out, cache = F.max_pool2d_forward(F.batch_last(x), kernel, stride, padding)
        assert len(F._channel_blocks(cache.xp)) > 2
        out = F.batch_first(out)
        delta = rng.normal(size=out.shape)
        grad_x = F.batch_first(F.max_pool2d_backward(F.batch_last(delta), cache))
        for n in range(2):
            _assert_close(out[n], R.max_pool_forward(x[n], kernel, stride, padding))
            _assert_close(grad_x[n], R.max_pool_backward(x[n], delta[n], kernel, stride, padding))


@example(Config(batch=1, channels=2, filters=0, height=7, width=5, kernel=(2, 2),
                stride=None, padding=(0, 0), seed=4))
@given(pool_configs())
@SETTINGS
def test_mean_pool_forward_and_backward(config):
    rng = np.random.default_rng(config.seed)
    x = rng.normal(size=config.input_shape)
    args = (config.kernel, config.stride, config.padding)

    out, cache = F.avg_pool2d_forward(F.batch_last(x), *args)
    out = F.batch_first(out)
    delta = rng.normal(size=out.shape)
    grad_x = F.batch_first(F.avg_pool2d_backward(F.batch_last(delta), cache))
    for n in range(config.batch):
        _assert_close(out[n], R.mean_pool_forward(x[n], *args))
        _assert_close(grad_x[n], R.mean_pool_backward(x[n], delta[n], *args))


@given(batch=st.integers(1, 4), n_in=st.integers(1, 8), n_out=st.integers(1, 8),
       has_bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
@SETTINGS
def test_linear_forward_and_every_gradient(batch, n_in, n_out, has_bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, n_in))
    weight = rng.normal(size=(n_out, n_in))
    bias = rng.normal(size=n_out) if has_bias else None

    # The fast path keeps a column per sample: (features, N).
    out, cache = F.linear_forward(x.T, weight, bias)
    out = out.T
    delta = rng.normal(size=out.shape)
    grad_x, grad_weight, grad_bias = F.linear_backward(delta.T, cache)
    grad_x = grad_x.T

    grads = [R.fc_backward(x[n], weight, delta[n]) for n in range(batch)]
    for n in range(batch):
        _assert_close(out[n], R.fc_forward(x[n], weight, bias))
        _assert_close(grad_x[n], grads[n][0])
    _assert_close(grad_weight, sum(g[1] for g in grads))
    if has_bias:
        _assert_close(grad_bias, sum(g[2] for g in grads))
    else:
        assert grad_bias is None


@given(ma=st.integers(1, 6), na=st.integers(1, 6), mb=st.integers(1, 6), nb=st.integers(1, 6),
       seed=st.integers(0, 2**32 - 1))
@SETTINGS
def test_full_convolution_is_cross_correlation_with_the_rotated_filter(ma, na, mb, nb, seed):
    """Eq. 4.5 equals padding A by (mb-1, nb-1) and cross-correlating with rot180(B)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(ma, na))
    b = rng.normal(size=(mb, nb))
    padded = R.zero_pad(a[None], (mb - 1, nb - 1))[0]
    _assert_close(R.full_convolution(a, b), R.cross_correlation(padded, R.rot180(b)))


@pytest.mark.parametrize("call, message", [
    (lambda: R.conv_forward(np.zeros((2, 5, 5)), np.zeros((1, 3, 3, 3)), [0.0]), "depth 3"),
    (lambda: R.conv_forward(np.zeros((1, 2, 2)), np.zeros((1, 1, 3, 3)), [0.0]), "larger"),
    (lambda: R.conv_forward(np.zeros((5, 5)), np.zeros((1, 1, 3, 3)), [0.0]), "3 dimensions"),
    (lambda: R.conv_forward(np.zeros((1, 5, 5)), np.zeros((1, 1, 3, 3)), [0.0], stride=0),
     "positive"),
    (lambda: R.conv_backward_delta(np.zeros((1, 2, 2)), np.zeros((1, 1, 3, 3)), (1, 5, 5)),
     "output's shape"),
    (lambda: R.conv_backward_delta(np.zeros((1, 3, 3)), np.zeros((1, 1, 3, 3)), (1, 5, 5),
                                   net_prev=np.zeros((1, 5, 5))), "together"),
    (lambda: R.max_pool_forward(np.zeros((1, 4, 4)), 2, padding=2), "half the kernel"),
    (lambda: R.mean_pool_backward(np.zeros((1, 4, 4)), np.zeros((1, 3, 3)), 2),
     "output's shape"),
    (lambda: R.fc_forward(np.zeros(3), np.zeros((2, 4)), None), "(4,)"),
])
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
