"""The fast layers and losses equal PyTorch's, in float64, over a grid of shapes.

For every configuration the same float64 parameters and input go into a
tinyconv layer and its PyTorch twin; the forward outputs, the input gradients
for the same random upstream gradient, and every parameter gradient must
agree to about 1e-10. PyTorch is an independent implementation, so agreement
here checks the output-size formula, the padding rules and every backward.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import tinyconv

TOL = dict(rtol=1e-10, atol=1e-10)


def float64_parameters(module, rng):
    """Give every parameter of ``module`` fresh random float64 values (biases too)."""
    for _, p in module.named_parameters():
        p.data = rng.standard_normal(p.shape)


def copy_into_torch(module, torch_module, torch):
    """Copy tinyconv's parameters into the PyTorch module, matched by name."""
    ours = dict(module.named_parameters())
    theirs = dict(torch_module.named_parameters())
    assert ours.keys() == theirs.keys()
    with torch.no_grad():
        for name, p in ours.items():
            theirs[name].copy_(torch.from_numpy(p.data))


def assert_same_layer(module, torch_module, x, torch, rng):
    """Forward, input gradient and every parameter gradient agree with PyTorch."""
    copy_into_torch(module, torch_module, torch)
    out = module.forward(x)

    tx = torch.tensor(x, requires_grad=True)
    tout = torch_module(tx)
    np.testing.assert_allclose(out, tout.detach().numpy(), **TOL)
    assert out.dtype == np.float64

    upstream = rng.standard_normal(out.shape)
    module.zero_grad()
    grad_x = module.backward(upstream)
    tout.backward(torch.from_numpy(upstream))
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), **TOL)
    assert grad_x.shape == x.shape

    theirs = dict(torch_module.named_parameters())
    for name, p in module.named_parameters():
        np.testing.assert_allclose(p.grad, theirs[name].grad.numpy(), **TOL,
                                   err_msg=f"gradient of {name}")


# ----------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------

CONV_KERNELS = [1, 2, 3, 5, (2, 3), (3, 1)]
CONV_STRIDES = [1, 2, 3, (1, 2)]
CONV_PADDINGS = [0, 1, 3, (2, 0)]  # 3 is more than the half of every kernel here


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("padding", CONV_PADDINGS)
@pytest.mark.parametrize("stride", CONV_STRIDES)
@pytest.mark.parametrize("kernel_size", CONV_KERNELS)
def test_conv2d_matches_torch(torch, kernel_size, stride, padding, bias):
    rng = np.random.default_rng(0)
    # 7x9 is odd and non-square, so most strides leave pixels no window reaches.
    x = rng.standard_normal((2, 3, 7, 9))
    layer = tinyconv.Conv2d(3, 4, kernel_size, stride=stride, padding=padding, bias=bias)
    float64_parameters(layer, rng)
    theirs = torch.nn.Conv2d(3, 4, kernel_size, stride=stride, padding=padding, bias=bias)
    assert_same_layer(layer, theirs, x, torch, rng)


@pytest.mark.parametrize("in_channels, out_channels, shape", [
    (1, 1, (1, 1, 5, 5)),    # batch of one, one filter
    (1, 6, (3, 1, 4, 4)),    # kernel as large as the input: a 1x1 output
    (5, 2, (1, 5, 6, 3)),    # more channels than filters, tall input
])
def test_conv2d_shapes_match_torch(torch, in_channels, out_channels, shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    kernel = min(shape[2:])
    layer = tinyconv.Conv2d(in_channels, out_channels, kernel)
    float64_parameters(layer, rng)
    theirs = torch.nn.Conv2d(in_channels, out_channels, kernel)
    assert_same_layer(layer, theirs, x, torch, rng)


# ----------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------

def pool_configs():
    """(kernel_size, stride, padding) triples PyTorch accepts: padding <= kernel // 2."""
    kernels = [1, 2, 3, (2, 3), (3, 2)]
    strides = [None, 1, 2, (1, 2), 3]
    paddings = [0, 1, (1, 0)]
    for kernel, stride, padding in itertools.product(kernels, strides, paddings):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        if ph <= kh // 2 and pw <= kw // 2:
            yield kernel, stride, padding


POOL_CONFIGS = list(pool_configs())


@pytest.mark.parametrize("shape", [(2, 3, 7, 8), (1, 1, 6, 6)])
@pytest.mark.parametrize("kernel_size, stride, padding", POOL_CONFIGS,
                         ids=[f"k{k}-s{s}-p{p}" for k, s, p in POOL_CONFIGS])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_matches_torch(torch, kind, kernel_size, stride, padding, shape):
    rng = np.random.default_rng(2)
    # Continuous random values: no window holds two equal maxima, so the
    # comparison is about the pooling itself, not about a rule for ties.
    x = rng.standard_normal(shape)
    ours, theirs = {
        "max": (tinyconv.MaxPool2d, torch.nn.MaxPool2d),
        "avg": (tinyconv.AvgPool2d, torch.nn.AvgPool2d),
    }[kind]
    assert_same_layer(ours(kernel_size, stride, padding),
                      theirs(kernel_size, stride, padding), x, torch, rng)


# ----------------------------------------------------------------------------
# Fully connected layer, Flatten, activations
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch, in_features, out_features", [
    (1, 1, 1), (1, 10, 3), (4, 7, 5), (3, 20, 20),
])
def test_linear_matches_torch(torch, batch, in_features, out_features, bias):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, in_features))
    layer = tinyconv.Linear(in_features, out_features, bias=bias)
    float64_parameters(layer, rng)
    theirs = torch.nn.Linear(in_features, out_features, bias=bias)
    assert_same_layer(layer, theirs, x, torch, rng)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3, 4, 5), (1, 6, 1, 1), (3, 4, 2)])
def test_flatten_matches_torch(torch, shape):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    assert_same_layer(tinyconv.Flatten(), torch.nn.Flatten(), x, torch, rng)


ACTIVATIONS = ["ReLU", "Sigmoid", "Tanh", "Identity"]


@pytest.mark.parametrize("shape", [(1, 1), (2, 3, 4, 5), (4, 10)])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_torch(torch, name, shape):
    rng = np.random.default_rng(5)
    # Scaled so that sigmoid and tanh reach their flat tails too.
    x = 6 * rng.standard_normal(shape)
    assert_same_layer(getattr(tinyconv, name)(), getattr(torch.nn, name)(), x, torch, rng)


# ----------------------------------------------------------------------------
# A whole network
# ----------------------------------------------------------------------------

def small_cnn(library, **kwargs):
    """The same small CNN built from ``library``'s layers (tinyconv or torch.nn)."""
    return library.Sequential(
        library.Conv2d(2, 3, 3, padding=1, **kwargs), library.ReLU(),
        library.MaxPool2d(2),
        library.Conv2d(3, 4, (2, 3), stride=(1, 2), **kwargs), library.Tanh(),
        library.AvgPool2d((2, 1), stride=1),
        library.Flatten(),
        library.Linear(4 * 2 * 1, 6, **kwargs), library.Sigmoid(),
        library.Linear(6, 3, **kwargs),
    )


@pytest.mark.parametrize("batch", [1, 3])
def test_sequential_cnn_matches_torch(torch, batch):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((batch, 2, 8, 8))
    model = small_cnn(tinyconv)
    float64_parameters(model, rng)
    assert_same_layer(model, small_cnn(torch.nn), x, torch, rng)


def test_sequential_cnn_with_loss_matches_torch(torch):
    """Loss, then backward from the loss, through the whole network."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 2, 8, 8))
    labels = np.array([0, 2, 1, 2])
    model = small_cnn(tinyconv)
    float64_parameters(model, rng)
    theirs = small_cnn(torch.nn)
    copy_into_torch(model, theirs, torch)

    criterion = tinyconv.CrossEntropyLoss()
    loss = criterion.forward(model.forward(x), labels)
    model.backward(criterion.backward())
    tloss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)),
                                              torch.from_numpy(labels))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    grads = dict(theirs.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name].grad.numpy(), **TOL, err_msg=name)


# ----------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("batch, classes, scale", [
    (1, 2, 1.0), (1, 10, 1.0), (5, 3, 1.0), (8, 10, 3.0), (4, 5, 500.0),
])
def test_cross_entropy_matches_torch(torch, batch, classes, scale):
    rng = np.random.default_rng(8)
    logits = scale * rng.standard_normal((batch, classes))
    labels = rng.integers(0, classes, size=batch)
    criterion = tinyconv.CrossEntropyLoss()
    loss = criterion.forward(logits, labels)
    grad = criterion.backward()

    tlogits = torch.tensor(logits, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(tlogits, torch.from_numpy(labels))
    tloss.backward()
    assert isinstance(loss, float)
    assert loss == pytest.approx(tloss.item(), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(grad, tlogits.grad.numpy(), **TOL)


@pytest.mark.parametrize("shape", [(1,), (1, 1), (4, 3), (2, 3, 4, 5)])
def test_mse_matches_torch(torch, shape):
    rng = np.random.default_rng(9)
    prediction = rng.standard_normal(shape)
    target = rng.standard_normal(shape)
    criterion = tinyconv.MSELoss()
    loss = criterion.forward(prediction, target)
    grad = criterion.backward()

    tprediction = torch.tensor(prediction, requires_grad=True)
    tloss = torch.nn.functional.mse_loss(tprediction, torch.from_numpy(target))
    tloss.backward()
    assert isinstance(loss, float)
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    np.testing.assert_allclose(grad, tprediction.grad.numpy(), **TOL)
