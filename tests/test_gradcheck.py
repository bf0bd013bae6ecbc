"""Every backward agrees with central differences, and gradcheck can tell.

``tinyconv.gradcheck`` perturbs each input and parameter element by ±ε and
compares the slope with what backward returned; its docstring says a correct
backward gives 1e-8 or less in float64. These tests run it on every layer and
on the tutorial's Figure 1 network, then check that it really catches a wrong
backward and that it hands the module back as it found it.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinyconv
from tinyconv.models.spec import build

LIMIT = 1e-6


def layer_cases():
    """(id, layer, input shape): small inputs, because the cost is per element."""
    yield "conv", tinyconv.Conv2d(2, 3, 3, rng=0), (2, 2, 5, 6)
    yield "conv-stride-pad", tinyconv.Conv2d(2, 2, 3, stride=2, padding=1, rng=1), (1, 2, 6, 5)
    yield "conv-nonsquare", tinyconv.Conv2d(1, 2, (1, 3), stride=(2, 1), padding=(2, 0),
                                            rng=2), (2, 1, 5, 4)
    yield "conv-no-bias", tinyconv.Conv2d(3, 2, 2, bias=False, rng=3), (1, 3, 4, 4)
    yield "maxpool", tinyconv.MaxPool2d(2), (2, 2, 5, 4)
    yield "maxpool-overlap-pad", tinyconv.MaxPool2d(3, stride=1, padding=1), (1, 2, 4, 5)
    yield "avgpool", tinyconv.AvgPool2d(2), (2, 2, 5, 4)
    yield "avgpool-overlap-pad", tinyconv.AvgPool2d((3, 2), stride=(2, 1), padding=(1, 0)), \
        (1, 2, 5, 4)
    yield "linear", tinyconv.Linear(6, 4, rng=4), (3, 6)
    yield "linear-no-bias", tinyconv.Linear(5, 2, bias=False, rng=5), (1, 5)
    yield "flatten", tinyconv.Flatten(), (2, 3, 2, 2)
    yield "relu", tinyconv.ReLU(), (2, 3, 4)
    yield "sigmoid", tinyconv.Sigmoid(), (2, 3, 4)
    yield "tanh", tinyconv.Tanh(), (2, 3, 4)
    yield "identity", tinyconv.Identity(), (2, 3, 4)


CASES = list(layer_cases())


@pytest.mark.parametrize("layer, shape", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_every_layer_passes(layer, shape):
    # Continuous random input: no ReLU input at its kink, no tie in a max window.
    x = np.random.default_rng(10).standard_normal(shape)
    assert tinyconv.gradcheck(layer, x) < LIMIT


def figure1_network():
    """The tutorial's Figure 1: INPUT -> CONV -> POOL -> CONV -> POOL -> FC -> FC.

    Three filters, then five, each followed by ReLU and 2x2 max pooling; on
    an 8x8 input the second pooling leaves 5 maps of 2x2.
    """
    return tinyconv.Sequential(
        tinyconv.Conv2d(1, 3, 3, padding=1, rng=20), tinyconv.ReLU(),
        tinyconv.MaxPool2d(2),
        tinyconv.Conv2d(3, 5, 3, padding=1, rng=21), tinyconv.ReLU(),
        tinyconv.MaxPool2d(2),
        tinyconv.Flatten(),
        tinyconv.Linear(5 * 2 * 2, 8, rng=22), tinyconv.ReLU(),
        tinyconv.Linear(8, 4, rng=23),
    )


def test_figure1_network_with_cross_entropy():
    rng = np.random.default_rng(11)
    model = figure1_network()
    # Non-zero biases, so that no ReLU input is exactly zero by construction.
    for p in model.parameters():
        if p.data.ndim == 1:
            p.data = rng.uniform(-0.1, 0.1, p.shape).astype(p.data.dtype)
    x = rng.standard_normal((2, 1, 8, 8))
    error = tinyconv.gradcheck(model, x, tinyconv.CrossEntropyLoss(), np.array([1, 3]))
    assert error < LIMIT


def test_losses_pass_inside_a_network():
    """The losses' backward, checked through a small network ending in each."""
    rng = np.random.default_rng(12)
    model = tinyconv.Sequential(tinyconv.Linear(4, 3, rng=6), tinyconv.Tanh())
    x = rng.standard_normal((3, 4))
    assert tinyconv.gradcheck(model, x, tinyconv.MSELoss(), rng.standard_normal((3, 3))) < LIMIT
    assert tinyconv.gradcheck(model, x, tinyconv.CrossEntropyLoss(), np.array([0, 2, 2])) < LIMIT


def dropout_batchnorm_network():
    """CONV -> BN -> ReLU -> DROPOUT(0.3) -> FLATTEN -> FC, in training mode.

    The convolution has no bias: batch norm would subtract it again, so its
    gradient would be zero and its relative error only rounding noise.
    """
    return tinyconv.Sequential(
        tinyconv.Conv2d(1, 2, 3, bias=False, rng=24), tinyconv.BatchNorm2d(2), tinyconv.ReLU(),
        tinyconv.Dropout(0.3, rng=25), tinyconv.Flatten(), tinyconv.Linear(2 * 4 * 4, 3, rng=26))


# The "strong" preset's structure at a tiny size: two CONV -> BN -> MAXPOOL
# blocks, then FC -> DROPOUT -> FC.
TINY_STRONG = ("INPUT(1,8,8) -> [CONV(2,3,pad=1) -> BN -> MAXPOOL(2)] -> "
               "[CONV(3,3,pad=1) -> BN -> MAXPOOL(2)] -> FC(6) -> DROPOUT(0.5) -> FC(4)")


@pytest.mark.parametrize("make, shape", [
    (dropout_batchnorm_network, (3, 1, 6, 6)),
    (lambda: build(TINY_STRONG, rng=27), (3, 1, 8, 8)),
], ids=["conv-bn-relu-dropout-fc", "tiny-strong"])
def test_dropout_and_batch_norm_in_training_mode(make, shape):
    """Each forward draws the same masks, so the objective is one fixed function."""
    model = make().train()
    x = np.random.default_rng(17).standard_normal(shape)
    error = tinyconv.gradcheck(model, x, tinyconv.CrossEntropyLoss(), np.array([0, 2, 1]))
    assert error < LIMIT


# ----------------------------------------------------------------------------
# gradcheck catches mistakes
# ----------------------------------------------------------------------------

class SlightlyWrongInputGradient(tinyconv.Linear):
    """A Linear layer whose input gradient is 1% too large."""

    def backward_batch_last(self, grad_output, input_grad=True):
        return 1.01 * super().backward_batch_last(grad_output)


class WrongBiasGradient(tinyconv.Conv2d):
    """A Conv2d layer that forgets to sum the bias gradient over the batch."""

    def backward_batch_last(self, grad_output, input_grad=True):
        grad_x = super().backward_batch_last(grad_output)
        self.bias.grad *= 0.5
        return grad_x


class Square(tinyconv.Module):
    """A layer of a user's own, written batch first as in PyTorch: f(x) = x²."""

    def forward(self, x):
        self.x = np.asarray(x)
        return self.x ** 2

    def backward(self, grad_output, input_grad=True):
        return 2 * self.x * grad_output


def test_a_batch_first_layer_of_ones_own_works_inside_a_network():
    model = tinyconv.Sequential(tinyconv.Conv2d(1, 2, 3, rng=18), Square(), tinyconv.Flatten(),
                                tinyconv.Linear(8, 3, rng=19))
    x = np.random.default_rng(20).standard_normal((3, 1, 4, 4))
    assert tinyconv.gradcheck(model, x, tinyconv.CrossEntropyLoss(), np.array([0, 2, 1])) < LIMIT
    assert model[1].x.shape == (3, 2, 2, 2)  # batch first, as Square was written for


def test_a_layer_that_implements_nothing_says_so():
    with pytest.raises(NotImplementedError, match="neither forward nor forward_batch_last"):
        tinyconv.Module().forward(np.ones((1, 2)))
    with pytest.raises(NotImplementedError, match="neither forward nor forward_batch_last"):
        tinyconv.Sequential(tinyconv.Module()).forward(np.ones((1, 2)))


def test_catches_a_wrong_input_gradient():
    x = np.random.default_rng(13).standard_normal((2, 4))
    assert tinyconv.gradcheck(SlightlyWrongInputGradient(4, 3, rng=7), x) > 1e-3


def test_catches_a_wrong_parameter_gradient():
    x = np.random.default_rng(14).standard_normal((2, 1, 4, 4))
    assert tinyconv.gradcheck(WrongBiasGradient(1, 2, 3, rng=8), x) > 1e-3


def test_catches_a_wrong_layer_inside_a_network():
    rng = np.random.default_rng(15)
    model = tinyconv.Sequential(tinyconv.Linear(3, 4, rng=9), tinyconv.Tanh(),
                                SlightlyWrongInputGradient(4, 2, rng=10))
    x = rng.standard_normal((2, 3))
    assert tinyconv.gradcheck(model, x, tinyconv.CrossEntropyLoss(), np.array([0, 1])) > 1e-3


# ----------------------------------------------------------------------------
# gradcheck hands the module back as it found it
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_leaves_parameters_and_gradients_as_they_were(dtype):
    model = tinyconv.Sequential(tinyconv.Conv2d(1, 2, 2, rng=11, dtype=dtype),
                                tinyconv.Flatten(), tinyconv.Linear(18, 2, rng=12, dtype=dtype))
    rng = np.random.default_rng(16)
    for p in model.parameters():
        p.grad[...] = rng.standard_normal(p.shape)  # gradients a caller accumulated
    before = {name: (p.data, p.data.copy(), p.grad, p.grad.copy())
              for name, p in model.named_parameters()}
    x = rng.standard_normal((1, 1, 4, 4)).astype(dtype)
    x_before = x.copy()

    assert tinyconv.gradcheck(model, x) < LIMIT

    np.testing.assert_array_equal(x, x_before)
    for name, p in model.named_parameters():
        data, data_copy, grad, grad_copy = before[name]
        assert p.data is data and p.grad is grad, name
        assert p.data.dtype == dtype and p.grad.dtype == dtype, name
        np.testing.assert_array_equal(p.data, data_copy, err_msg=name)
        np.testing.assert_array_equal(p.grad, grad_copy, err_msg=name)


def test_restores_parameters_when_the_module_raises():
    class Broken(tinyconv.Linear):
        def backward_batch_last(self, grad_output, input_grad=True):
            raise ArithmeticError("broken on purpose")

    layer = Broken(3, 2, rng=13)
    data = layer.weight.data.copy()
    with pytest.raises(ArithmeticError):
        tinyconv.gradcheck(layer, np.ones((1, 3)))
    assert layer.weight.data.dtype == np.float32
    np.testing.assert_array_equal(layer.weight.data, data)


def test_leaves_dropout_randomness_and_running_statistics_as_they_were():
    model = build(TINY_STRONG, rng=28).train()
    dropout = next(m for m in model.modules() if isinstance(m, tinyconv.Dropout))
    rng_state = dropout.rng.bit_generator.state
    buffers = {name: (array, array.copy()) for name, array in model.named_buffers()}
    assert buffers, "the network has batch-norm running statistics"
    x = np.random.default_rng(18).standard_normal((2, 1, 8, 8))

    tinyconv.gradcheck(model, x, tinyconv.CrossEntropyLoss(), np.array([3, 1]))

    assert dropout.rng.bit_generator.state == rng_state
    for name, array in model.named_buffers():
        same_array, values = buffers[name]
        assert array is same_array, name
        np.testing.assert_array_equal(array, values, err_msg=name)
