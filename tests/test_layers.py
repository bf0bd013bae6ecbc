"""How the layers behave as objects: dtypes, purity, gradient bookkeeping,
parameters and their names, saving and loading, repr, numerical safety and
batches of one.

The numbers themselves are checked against PyTorch, the reference loops and
finite differences elsewhere; here each property is checked against its
definition (a batch is its samples side by side, two backward passes add
up, float64 is more exact than float32).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import tinyconv

# Every layer with an input shape it accepts; `dtype` sets the parameters' dtype.
LAYERS = {
    "Conv2d": (lambda dtype: tinyconv.Conv2d(2, 3, 3, padding=1, rng=0, dtype=dtype),
               (2, 2, 5, 6)),
    "Conv2d-strided-nonsquare": (lambda dtype: tinyconv.Conv2d(
        2, 2, (3, 2), stride=(2, 1), padding=(0, 1), bias=False, rng=1, dtype=dtype),
        (2, 2, 6, 5)),
    "MaxPool2d": (lambda dtype: tinyconv.MaxPool2d(2), (2, 2, 5, 6)),
    "MaxPool2d-overlap": (lambda dtype: tinyconv.MaxPool2d(3, stride=1, padding=1),
                          (2, 2, 4, 4)),
    "AvgPool2d": (lambda dtype: tinyconv.AvgPool2d(2), (2, 2, 4, 6)),
    "AvgPool2d-overlap": (lambda dtype: tinyconv.AvgPool2d((2, 3), stride=1, padding=(1, 1)),
                          (2, 2, 4, 4)),
    "Linear": (lambda dtype: tinyconv.Linear(6, 4, rng=2, dtype=dtype), (3, 6)),
    "Flatten": (lambda dtype: tinyconv.Flatten(), (2, 3, 2, 2)),
    "ReLU": (lambda dtype: tinyconv.ReLU(), (2, 3, 4)),
    "Sigmoid": (lambda dtype: tinyconv.Sigmoid(), (2, 3, 4)),
    "Tanh": (lambda dtype: tinyconv.Tanh(), (2, 3, 4)),
    "Identity": (lambda dtype: tinyconv.Identity(), (2, 3, 4)),
    "Sequential": (lambda dtype: tinyconv.Sequential(
        tinyconv.Conv2d(1, 2, 3, rng=3, dtype=dtype), tinyconv.ReLU(), tinyconv.MaxPool2d(2),
        tinyconv.Flatten(), tinyconv.Linear(8, 3, rng=4, dtype=dtype), tinyconv.Tanh()),
        (2, 1, 6, 6)),
}

# Layers that hold parameters, for the dtype and gradient tests.
WITH_PARAMETERS = ["Conv2d", "Conv2d-strided-nonsquare", "Linear", "Sequential"]


def make(name, dtype=np.float32):
    """A fresh layer and a random input for it, input as float64."""
    factory, shape = LAYERS[name]
    x = np.random.default_rng(100).standard_normal(shape)
    return factory(dtype), x


def randomise(module, rng, dtype=None):
    """Random values in every parameter (biases too), in ``dtype`` or their own."""
    for p in module.parameters():
        p.data = rng.standard_normal(p.shape).astype(dtype or p.data.dtype)


# ----------------------------------------------------------------------------
# dtypes: a layer computes in its input's dtype, .grad keeps its parameter's
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_dtype_is_kept_everywhere(name, dtype):
    """float32 in: float32 out, back and in every .grad; float64 likewise."""
    layer, x = make(name, dtype)
    out = layer(x.astype(dtype))
    grad_x = layer.backward(np.ones(out.shape, dtype))
    assert out.dtype == dtype and grad_x.dtype == dtype
    for pname, p in layer.named_parameters():
        assert p.data.dtype == dtype and p.grad.dtype == dtype, pname


@pytest.mark.parametrize("name", LAYERS)
def test_float64_input_with_float32_parameters_computes_in_float64(name):
    layer, x = make(name, np.float32)
    exact, _ = make(name, np.float64)
    for p, q in zip(layer.parameters(), exact.parameters()):
        q.data = p.data.astype(np.float64)  # the same numbers, in float64

    out = layer(x)
    grad_x = layer.backward(np.ones(out.shape))
    expected = exact(x)
    expected_grad_x = exact.backward(np.ones(out.shape))
    assert out.dtype == np.float64 and grad_x.dtype == np.float64
    # Equal far beyond float32's ~1e-7: the arithmetic itself was float64.
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_x, expected_grad_x, rtol=1e-12, atol=1e-12)
    for p, q in zip(layer.parameters(), exact.parameters()):
        assert p.data.dtype == np.float32 and p.grad.dtype == np.float32
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", WITH_PARAMETERS)
def test_float64_data_gives_a_float64_grad(name):
    layer, x = make(name, np.float32)
    for p in layer.parameters():
        p.data = p.data.astype(np.float64)
        assert p.grad.dtype == np.float64 and p.grad.shape == p.shape
    out = layer(x)
    layer.backward(np.ones(out.shape))
    for p in layer.parameters():
        assert p.grad.dtype == np.float64


def test_integer_input_works_like_float():
    """The tutorial writes its image with integers; they are read as float64."""
    image = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1],
                      [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]])[None, None]
    conv = tinyconv.Conv2d(1, 1, 3)
    conv.weight.data = np.array([[[[1.0, 0, 1], [0, 1, 0], [1, 0, 1]]]])
    out = conv(image)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, conv(image.astype(np.float64)))
    assert out[0, 0, 0, 0] == 4 and out[0, 0, 0, 1] == 3


@pytest.mark.parametrize("name", LAYERS)
def test_integer_input_through_every_layer(name):
    layer, x = make(name, np.float64)
    ints = np.round(3 * x).astype(np.int64)
    out = layer(ints)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, layer(ints.astype(np.float64)))


def test_parameter_data_keeps_its_shape_and_must_be_floating():
    p = tinyconv.Linear(3, 2).weight
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        p.data = np.zeros((3, 2))
    with pytest.raises(TypeError, match="floating.*int64"):
        p.data = np.zeros((2, 3), dtype=np.int64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_keep_the_prediction_dtype(dtype):
    rng = np.random.default_rng(101)
    logits = rng.standard_normal((3, 4)).astype(dtype)
    ce = tinyconv.CrossEntropyLoss()
    assert isinstance(ce(logits, np.array([0, 3, 1])), float)
    assert ce.backward().dtype == dtype
    mse = tinyconv.MSELoss()
    assert isinstance(mse(logits, rng.standard_normal((3, 4))), float)
    assert mse.backward().dtype == dtype


# ----------------------------------------------------------------------------
# Backward (and forward) never modify their arguments
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_and_backward_leave_their_arguments_alone(name, dtype):
    layer, x = make(name, dtype)
    x = x.astype(dtype)
    x_before = x.copy()
    out = layer(x)
    upstream = np.random.default_rng(102).standard_normal(out.shape).astype(dtype)
    upstream_before = upstream.copy()
    layer.backward(upstream)
    layer.backward(upstream)  # a second pass reads the same cache
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(upstream, upstream_before)


def test_losses_leave_their_arguments_alone():
    rng = np.random.default_rng(103)
    logits, labels = rng.standard_normal((4, 3)), np.array([2, 0, 1, 2])
    target = rng.standard_normal((4, 3))
    kept = [a.copy() for a in (logits, labels, target)]
    for criterion, t in [(tinyconv.CrossEntropyLoss(), labels), (tinyconv.MSELoss(), target)]:
        criterion(logits, t)
        first = criterion.backward()
        first[...] = 7  # a caller writing into the returned gradient
        np.testing.assert_array_equal(criterion.backward(), criterion.backward())
        assert not np.all(criterion.backward() == 7)
    for array, copy in zip((logits, labels, target), kept):
        np.testing.assert_array_equal(array, copy)


# ----------------------------------------------------------------------------
# Gradients accumulate until zero_grad
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", WITH_PARAMETERS)
def test_gradients_accumulate_and_zero_grad_clears_them(name):
    layer, x = make(name, np.float64)
    randomise(layer, np.random.default_rng(104))
    out = layer(x)
    upstream = np.random.default_rng(105).standard_normal(out.shape)
    first_x = layer.backward(upstream)
    once = [p.grad.copy() for p in layer.parameters()]
    assert all(np.any(g != 0) for g in once)

    second_x = layer.backward(upstream)
    np.testing.assert_array_equal(first_x, second_x)  # the input gradient does not add up
    for p, g in zip(layer.parameters(), once):
        np.testing.assert_allclose(p.grad, 2 * g, rtol=1e-12)

    layer.zero_grad()
    for p in layer.parameters():
        assert np.all(p.grad == 0) and p.grad.dtype == p.data.dtype


# ----------------------------------------------------------------------------
# parameters, names, state_dict
# ----------------------------------------------------------------------------

def lenet_like():
    return tinyconv.Sequential(
        tinyconv.Conv2d(1, 6, 5, padding=2, rng=5), tinyconv.ReLU(), tinyconv.MaxPool2d(2),
        tinyconv.Conv2d(6, 16, 5, bias=False, rng=6), tinyconv.ReLU(), tinyconv.AvgPool2d(2),
        tinyconv.Flatten(),
        tinyconv.Linear(16 * 5 * 5, 10, rng=7),
    )


def test_named_parameters_are_named_by_position():
    model = lenet_like()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "3.weight", "7.weight", "7.bias"]
    shapes = {name: p.shape for name, p in model.named_parameters()}
    assert shapes == {"0.weight": (6, 1, 5, 5), "0.bias": (6,), "3.weight": (16, 6, 5, 5),
                      "7.weight": (10, 400), "7.bias": (10,)}
    assert model.parameters() == [p for _, p in model.named_parameters()]
    assert all(isinstance(p, tinyconv.Parameter) for p in model.parameters())


def test_parameter_counts():
    # (C·KH·KW + 1)·F for a conv layer, (in + 1)·out for a fully connected one.
    assert sum(p.size for p in tinyconv.Conv2d(3, 2, 3).parameters()) == 56
    assert sum(p.size for p in tinyconv.Conv2d(3, 2, 3, bias=False).parameters()) == 54
    assert sum(p.size for p in tinyconv.Linear(400, 10).parameters()) == 4010
    assert sum(p.size for p in lenet_like().parameters()) == (
        (25 + 1) * 6 + 150 * 16 + 401 * 10)
    for layer in (tinyconv.MaxPool2d(2), tinyconv.AvgPool2d(2), tinyconv.Flatten(),
                  tinyconv.ReLU(), tinyconv.Sigmoid(), tinyconv.Tanh(), tinyconv.Identity()):
        assert layer.parameters() == []


def test_nested_sequential_names():
    inner = tinyconv.Sequential(tinyconv.Linear(3, 3, rng=8), tinyconv.ReLU())
    model = tinyconv.Sequential(tinyconv.Linear(4, 3, rng=9), inner, tinyconv.Linear(3, 2))
    assert [name for name, _ in model.named_parameters()] == [
        "0.weight", "0.bias", "1.0.weight", "1.0.bias", "2.weight", "2.bias"]


def test_state_dict_round_trip():
    rng = np.random.default_rng(106)
    model, other = lenet_like(), lenet_like()
    randomise(model, rng)
    randomise(other, rng)
    saved = {name: array.copy() for name, array in model.state_dict().items()}
    assert list(saved) == [name for name, _ in model.named_parameters()]

    other.load_state_dict(saved)
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(other(x), model(x))
    for name, array in other.state_dict().items():
        np.testing.assert_array_equal(array, saved[name])
        assert array.dtype == np.float32


def test_load_state_dict_keeps_the_model_dtype_and_arrays():
    model = tinyconv.Linear(3, 2)
    weight = model.weight.data
    model.load_state_dict({"weight": np.ones((2, 3)), "bias": np.arange(2)})
    assert model.weight.data is weight and weight.dtype == np.float32
    np.testing.assert_array_equal(model.bias.data, [0, 1])


@pytest.mark.parametrize("change, exception, fragments", [
    (lambda s: s.pop("3.weight"), ValueError, ["missing", "3.weight"]),
    (lambda s: s.update({"9.weight": np.ones(2)}), ValueError, ["unexpected", "9.weight"]),
    (lambda s: s.update({"0.bias": np.ones(5)}), ValueError, ["0.bias", "(5,)", "(6,)"]),
    (lambda s: s.update({"7.bias": np.full(10, "x")}), TypeError, ["7.bias", "numeric"]),
])
def test_load_state_dict_refuses_a_mismatch_and_changes_nothing(change, exception, fragments):
    model = lenet_like()
    before = {name: array.copy() for name, array in model.state_dict().items()}
    state = {name: np.zeros_like(array) for name, array in before.items()}
    change(state)
    with pytest.raises(exception) as error:
        model.load_state_dict(state)
    for fragment in fragments:
        assert fragment in str(error.value)
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(array, before[name])


def test_repr_shows_only_what_differs_from_the_defaults():
    assert repr(tinyconv.Conv2d(3, 2, 3)) == "Conv2d(3, 2, kernel_size=(3, 3))"
    assert repr(tinyconv.Conv2d(3, 2, (3, 1), stride=2, padding=(1, 0), bias=False)) == (
        "Conv2d(3, 2, kernel_size=(3, 1), stride=(2, 2), padding=(1, 0), bias=False)")
    assert repr(tinyconv.MaxPool2d(2)) == "MaxPool2d(kernel_size=(2, 2))"
    assert repr(tinyconv.AvgPool2d(3, stride=1, padding=1)) == (
        "AvgPool2d(kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))")
    assert repr(tinyconv.Linear(4, 2)) == "Linear(in_features=4, out_features=2)"
    assert repr(tinyconv.Linear(4, 2, bias=False)) == (
        "Linear(in_features=4, out_features=2, bias=False)")
    for name in ("Flatten", "ReLU", "Sigmoid", "Tanh", "Identity"):
        assert repr(getattr(tinyconv, name)()) == f"{name}()"
    assert repr(tinyconv.Sequential(tinyconv.Linear(4, 2), tinyconv.ReLU())) == (
        "Sequential(\n  (0): Linear(in_features=4, out_features=2)\n  (1): ReLU()\n)")
    assert repr(tinyconv.CrossEntropyLoss()) == "CrossEntropyLoss()"


def test_parameter_repr():
    assert repr(tinyconv.Linear(3, 2).weight) == "Parameter(shape=(2, 3), dtype=float32)"


# ----------------------------------------------------------------------------
# Numerical safety: ±1000 stays finite, with no overflow and no warning
# ----------------------------------------------------------------------------

def strict():
    """Overflow, division by zero and invalid results raise instead of warning.

    Underflow stays allowed: e^-1000 rounding to 0 is the correct answer.
    """
    return np.errstate(over="raise", divide="raise", invalid="raise")


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings(), strict():
        warnings.simplefilter("error")
        yield


@pytest.mark.usefixtures("no_warnings")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_at_plus_minus_1000(dtype):
    x = np.array([[-1000.0, -100.0, 0.0, 100.0, 1000.0]], dtype)
    sigmoid = tinyconv.Sigmoid()
    out = sigmoid(x)
    np.testing.assert_array_equal(out, [[0, np.exp(dtype(-100)), 0.5, 1, 1]])
    grad = sigmoid.backward(np.ones_like(x))
    assert np.all(np.isfinite(grad)) and grad.dtype == dtype
    assert grad[0, 0] == 0 and grad[0, -1] == 0 and grad[0, 2] == 0.25
    tanh = tinyconv.Tanh()
    np.testing.assert_array_equal(tanh(x)[0, [0, 2, 4]], [-1, 0, 1])
    assert np.all(np.isfinite(tanh.backward(np.ones_like(x))))


@pytest.mark.usefixtures("no_warnings")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_at_plus_minus_1000(dtype):
    logits = np.array([[1000.0, -1000.0, 0.0],
                       [1000.0, -1000.0, 0.0],
                       [1000.0, 1000.0, -1000.0]], dtype)
    labels = np.array([0, 1, 2])
    ce = tinyconv.CrossEntropyLoss()
    loss = ce(logits, labels)
    # Sample 0 is certain and right (0), sample 1 wrong by 2000, sample 2
    # wrong by 2000 plus log 2 for the two tied winners.
    assert loss == pytest.approx((0 + 2000 + 2000 + np.log(2)) / 3, rel=1e-6)
    grad = ce.backward()
    assert np.all(np.isfinite(grad)) and grad.dtype == dtype
    expected = np.array([[0, 0, 0], [1, -1, 0], [0.5, 0.5, -1]]) / 3
    np.testing.assert_allclose(grad, expected, atol=1e-7)


@pytest.mark.usefixtures("no_warnings")
def test_a_network_stays_finite_on_huge_inputs():
    model = tinyconv.Sequential(tinyconv.Linear(4, 3, rng=10), tinyconv.Sigmoid(),
                                tinyconv.Linear(3, 2, rng=11))
    ce = tinyconv.CrossEntropyLoss()
    x = np.array([[1000.0, -1000.0, 1000.0, -1000.0]])
    loss = ce(model(x), np.array([1]))
    assert np.isfinite(loss)
    assert np.all(np.isfinite(model.backward(ce.backward())))


# ----------------------------------------------------------------------------
# Batches of one: a batch is its samples side by side
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", LAYERS)
def test_a_batch_equals_its_samples_one_at_a_time(name):
    layer, x = make(name, np.float64)
    randomise(layer, np.random.default_rng(107))
    out = layer(x)
    upstream = np.random.default_rng(108).standard_normal(out.shape)
    layer.zero_grad()
    grad_x = layer.backward(upstream)
    batch_grads = [p.grad.copy() for p in layer.parameters()]

    layer.zero_grad()
    for n in range(x.shape[0]):
        one = x[n:n + 1]
        out_one = layer(one)
        assert out_one.shape == (1,) + out.shape[1:]
        np.testing.assert_allclose(out_one, out[n:n + 1], rtol=1e-12, atol=1e-12)
        grad_one = layer.backward(upstream[n:n + 1])
        assert grad_one.shape == one.shape
        np.testing.assert_allclose(grad_one, grad_x[n:n + 1], rtol=1e-12, atol=1e-12)
    # Parameter gradients of the samples add up to the batch's.
    for p, g in zip(layer.parameters(), batch_grads):
        np.testing.assert_allclose(p.grad, g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("criterion, target", [
    (tinyconv.CrossEntropyLoss(), np.array([2])),
    (tinyconv.MSELoss(), np.array([[0.5, -1.0, 2.0]])),
])
def test_losses_on_a_batch_of_one(criterion, target):
    prediction = np.array([[0.1, -0.3, 0.7]])
    loss = criterion(prediction, target)
    assert isinstance(loss, float) and np.isfinite(loss)
    assert criterion.backward().shape == (1, 3)


# ---------------------------------------------------------------------------
# backward(..., input_grad=False): parameter gradients without the input's
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("make, shape", [
    (lambda: tinyconv.Conv2d(2, 3, 3, stride=2, padding=1, rng=0), (2, 2, 7, 7)),
    (lambda: tinyconv.Linear(5, 4, rng=0), (3, 5)),
    (lambda: tinyconv.Sequential(tinyconv.Conv2d(1, 2, 3, rng=0), tinyconv.ReLU(),
                                 tinyconv.MaxPool2d(2), tinyconv.Flatten(),
                                 tinyconv.Linear(2 * 3 * 3, 4, rng=1)), (2, 1, 8, 8)),
    (lambda: tinyconv.Sequential(tinyconv.BatchNorm2d(2), tinyconv.Dropout(0.3, rng=0),
                                 tinyconv.Flatten(), tinyconv.Linear(2 * 4 * 4, 3, rng=1)),
     (4, 2, 4, 4)),
    (lambda: tinyconv.ReLU(), (2, 3)),
    (lambda: tinyconv.AvgPool2d(2), (1, 1, 4, 4)),
    (lambda: tinyconv.Identity(), (2, 2)),
])
def test_input_grad_false_skips_only_the_input_gradient(make, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    full, skipping = make(), make()
    for layer in (full, skipping):
        for p in layer.parameters():
            p.data = p.data.astype(np.float64)
    grad = rng.standard_normal(full.forward(x).shape)
    skipping.forward(x)
    assert full.backward(grad).shape == x.shape
    assert skipping.backward(grad, input_grad=False) is None
    for (name, a), (_, b) in zip(full.named_parameters(), skipping.named_parameters()):
        np.testing.assert_array_equal(a.grad, b.grad, err_msg=name)


# ----------------------------------------------------------------------------
# A Sequential runs a ReLU right before a MaxPool2d after it
# ----------------------------------------------------------------------------

def test_running_order_moves_relu_after_max_pooling_only():
    T = tinyconv
    model = T.Sequential(T.ReLU(), T.MaxPool2d(2), T.Conv2d(1, 1, 1), T.ReLU(), T.AvgPool2d(2),
                         T.Sigmoid(), T.MaxPool2d(2), T.ReLU(), T.MaxPool2d(2), T.MaxPool2d(1))
    assert model.running_order() == (1, 0, 2, 3, 4, 5, 6, 8, 9, 7)


@pytest.mark.parametrize("pool", [lambda: tinyconv.MaxPool2d(2),
                                  lambda: tinyconv.MaxPool2d(3, stride=2, padding=1)])
def test_pooling_before_relu_changes_no_bit(pool):
    """The reordered model against its layers run one by one, in the listed order."""
    model = tinyconv.Sequential(tinyconv.ReLU(), pool(), tinyconv.Conv2d(2, 3, 3, rng=5),
                                tinyconv.ReLU(), pool(), tinyconv.ReLU())
    assert model.running_order() != tuple(range(6))
    rng = np.random.default_rng(6)
    # Few distinct values, half of them negative: windows whose maxima tie,
    # and windows that are negative throughout.
    x = rng.integers(-3, 3, size=(3, 2, 9, 9)).astype(np.float32)
    out = model.forward(x)
    grad = rng.standard_normal(out.shape).astype(np.float32)
    grad_x = model.backward(grad)
    grads = [p.grad.copy() for p in model.parameters()]

    model.zero_grad()
    a = x
    for layer in model.layers:
        a = layer.forward(a)
    np.testing.assert_array_equal(out, a)
    g = grad
    for layer in reversed(model.layers):
        g = layer.backward(g)
    np.testing.assert_array_equal(grad_x, g)
    for before, p in zip(grads, model.parameters()):
        np.testing.assert_array_equal(before, p.grad)


def test_input_grad_false_reaches_the_layer_that_runs_first():
    model = tinyconv.Sequential(tinyconv.ReLU(), tinyconv.MaxPool2d(2))
    x = np.random.default_rng(7).standard_normal((2, 1, 4, 4))
    assert model.backward(np.ones(model.forward(x).shape), input_grad=False) is None
    assert model.backward(np.ones(model.forward(x).shape)).shape == x.shape
