"""Bad input gets a clear ValueError or TypeError, before any computation.

Each message must say what was expected and what came, so these tests look
inside the message, not only at the exception's type. An IndexError or a
broadcast error from deep inside NumPy is never an acceptable answer.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import tinyconv
from tinyconv import functional as F
from tinyconv import reference as R


def raises(kind, *fragments):
    """``pytest.raises(kind)`` whose message must contain every fragment, literally."""
    return pytest.raises(kind, match="(?s)" + "".join(f"(?=.*{re.escape(str(f))})"
                                                     for f in fragments))


# ----------------------------------------------------------------------------
# Wrong number of dimensions
# ----------------------------------------------------------------------------

IMAGE_LAYERS = {
    "Conv2d": lambda: tinyconv.Conv2d(2, 3, 3),
    "MaxPool2d": lambda: tinyconv.MaxPool2d(2),
    "AvgPool2d": lambda: tinyconv.AvgPool2d(2),
}


@pytest.mark.parametrize("shape", [(2, 5, 5), (5, 5), (1, 1, 2, 5, 5), ()])
@pytest.mark.parametrize("name", IMAGE_LAYERS)
def test_image_layers_want_four_dimensions(name, shape):
    with raises(ValueError, "4 dimensions", "(N, C, H, W)", f"got {len(shape)} dimensions",
                str(shape)):
        IMAGE_LAYERS[name]()(np.ones(shape))


@pytest.mark.parametrize("shape", [(4,), (1, 1, 2, 2), ()])
def test_linear_wants_two_dimensions(shape):
    with raises(ValueError, "2 dimensions", "(N, in_features)", str(shape)):
        tinyconv.Linear(4, 2)(np.ones(shape))


@pytest.mark.parametrize("shape", [(4,), ()])
def test_flatten_wants_a_batch_axis_and_more(shape):
    with raises(ValueError, "batch axis", str(shape)):
        tinyconv.Flatten()(np.ones(shape))


def test_sequential_names_the_failing_layer_input():
    model = tinyconv.Sequential(tinyconv.Conv2d(1, 2, 3), tinyconv.Flatten(),
                                tinyconv.Linear(5, 2))
    # The conv output flattens to 2·3·3 = 18 features; the Linear wants 5.
    with raises(ValueError, "5 features", "(1, 18)"):
        model(np.ones((1, 1, 5, 5)))


# ----------------------------------------------------------------------------
# Sizes that do not fit
# ----------------------------------------------------------------------------

def test_conv_channel_count_mismatch():
    with raises(ValueError, "3 channels", "(1, 2, 5, 5)"):
        tinyconv.Conv2d(3, 4, 3)(np.ones((1, 2, 5, 5)))


def test_linear_feature_count_mismatch():
    with raises(ValueError, "4 features", "(2, 5)"):
        tinyconv.Linear(4, 2)(np.ones((2, 5)))


@pytest.mark.parametrize("make, fragments", [
    (lambda: tinyconv.Conv2d(1, 1, 6), ("6x6", "5x5")),
    (lambda: tinyconv.Conv2d(1, 1, (2, 8), padding=1), ("2x8", "7x7")),
    (lambda: tinyconv.MaxPool2d(6), ("6x6", "5x5")),
    (lambda: tinyconv.MaxPool2d((2, 8), padding=(0, 1)), ("2x8", "5x7")),
    (lambda: tinyconv.AvgPool2d((6, 2)), ("6x2", "5x5")),
])
def test_kernel_larger_than_padded_input(make, fragments):
    with raises(ValueError, "larger than the padded input", *fragments):
        make()(np.ones((1, 1, 5, 5)))


def test_kernel_equal_to_padded_input_is_fine():
    assert tinyconv.Conv2d(1, 1, 7, padding=1)(np.ones((1, 1, 5, 5))).shape == (1, 1, 1, 1)
    assert tinyconv.MaxPool2d(5)(np.ones((1, 1, 5, 5))).shape == (1, 1, 1, 1)


# ----------------------------------------------------------------------------
# Arguments of the layers
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("make, name, value", [
    (lambda: tinyconv.Conv2d(1, 1, 0), "kernel_size", 0),
    (lambda: tinyconv.Conv2d(1, 1, (3, -1)), "kernel_size", (3, -1)),
    (lambda: tinyconv.Conv2d(1, 1, 3, stride=0), "stride", 0),
    (lambda: tinyconv.Conv2d(1, 1, 3, stride=(1, -2)), "stride", (1, -2)),
    (lambda: tinyconv.MaxPool2d(0), "kernel_size", 0),
    (lambda: tinyconv.MaxPool2d(2, stride=0), "stride", 0),
    (lambda: tinyconv.AvgPool2d((0, 2)), "kernel_size", (0, 2)),
    (lambda: tinyconv.AvgPool2d(2, stride=-1), "stride", -1),
])
def test_non_positive_kernel_or_stride(make, name, value):
    with raises(ValueError, name, "positive", f"got {value}"):
        make()


@pytest.mark.parametrize("make, value", [
    (lambda: tinyconv.Conv2d(1, 1, 3, padding=-1), -1),
    (lambda: tinyconv.Conv2d(1, 1, 3, padding=(0, -2)), (0, -2)),
    (lambda: tinyconv.MaxPool2d(3, padding=-1), -1),
    (lambda: tinyconv.AvgPool2d(3, padding=(-1, 0)), (-1, 0)),
])
def test_negative_padding(make, value):
    with raises(ValueError, "padding", "non-negative", f"got {value}"):
        make()


@pytest.mark.parametrize("layer", [tinyconv.MaxPool2d, tinyconv.AvgPool2d])
@pytest.mark.parametrize("kernel_size, padding", [(2, 2), (3, 2), ((4, 3), (1, 2))])
def test_pool_padding_more_than_half_the_kernel(layer, kernel_size, padding):
    with raises(ValueError, "at most half the kernel"):
        layer(kernel_size, padding=padding)


@pytest.mark.parametrize("make, who", [
    (lambda: tinyconv.MaxPool2d(2, padding=(0, 2)), "MaxPool2d"),
    (lambda: F.avg_pool2d_forward(np.ones((1, 1, 4, 4)), 2, padding=(0, 2)), "avg_pool2d"),
    (lambda: R.max_pool_forward(np.ones((1, 4, 4)), 2, padding=(0, 2)), "max_pool_forward"),
])
def test_pool_padding_is_one_rule_everywhere(make, who):
    with raises(ValueError, f"{who}: padding should be at most half the kernel size",
                "got padding (0, 2) for kernel_size (2, 2)"):
        make()


@pytest.mark.parametrize("value", [2.5, "3", (2, 2, 2), (2,), None, True, (2, 1.0)])
def test_kernel_size_must_be_an_int_or_pair(value):
    with raises(TypeError, "kernel_size", "an int or a pair of ints", repr(value)):
        tinyconv.Conv2d(1, 1, value)


@pytest.mark.parametrize("make, name", [
    (lambda: tinyconv.Conv2d(0, 1, 3), "in_channels"),
    (lambda: tinyconv.Conv2d(1, -2, 3), "out_channels"),
    (lambda: tinyconv.Linear(0, 1), "in_features"),
    (lambda: tinyconv.Linear(3, 0), "out_features"),
])
def test_non_positive_sizes(make, name):
    with raises(ValueError, name, "positive"):
        make()


@pytest.mark.parametrize("make, name, value", [
    (lambda: tinyconv.Conv2d(1.0, 1, 3), "in_channels", 1.0),
    (lambda: tinyconv.Linear(3, "2"), "out_features", "2"),
    (lambda: tinyconv.BatchNorm2d(True), "num_features", True),
])
def test_sizes_must_be_ints(make, name, value):
    with raises(TypeError, f"{name} must be an int", f"got {value!r}"):
        make()


def test_linear_bias_shape():
    with raises(ValueError, "linear bias must have shape (2,)", "got (3,)"):
        F.linear_forward(np.ones((4, 1)), np.ones((2, 4)), np.ones(3))


def test_sequential_takes_only_layers():
    with raises(TypeError, "Modules", "ufunc", "position 1"):
        tinyconv.Sequential(tinyconv.ReLU(), np.tanh)


# ----------------------------------------------------------------------------
# Input that is not a numeric array
# ----------------------------------------------------------------------------

ALL_LAYERS = {
    "Conv2d": (lambda: tinyconv.Conv2d(1, 1, 1), (1, 1, 2, 2)),
    "MaxPool2d": (lambda: tinyconv.MaxPool2d(1), (1, 1, 2, 2)),
    "AvgPool2d": (lambda: tinyconv.AvgPool2d(1), (1, 1, 2, 2)),
    "Linear": (lambda: tinyconv.Linear(2, 1), (1, 2)),
    "Flatten": (lambda: tinyconv.Flatten(), (1, 2)),
    "ReLU": (lambda: tinyconv.ReLU(), (1, 2)),
    "Sigmoid": (lambda: tinyconv.Sigmoid(), (1, 2)),
    "Tanh": (lambda: tinyconv.Tanh(), (1, 2)),
    "Identity": (lambda: tinyconv.Identity(), (1, 2)),
}


@pytest.mark.parametrize("kind, value, fragment", [
    ("strings", lambda shape: np.full(shape, "a"), "dtype <U1"),
    ("objects", lambda shape: np.full(shape, object()), "dtype object"),
    ("complex", lambda shape: np.ones(shape, complex), "dtype complex128"),
    ("None", lambda shape: None, "dtype object"),
    ("ragged", lambda shape: [[1.0, 2.0], [3.0]], "list that NumPy cannot read"),
])
@pytest.mark.parametrize("name", ALL_LAYERS)
def test_non_numeric_input(name, kind, value, fragment):
    make, shape = ALL_LAYERS[name]
    with raises(TypeError, "numeric array", fragment):
        make()(value(shape))


# ----------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------

LOGITS = np.zeros((3, 4))


@pytest.mark.parametrize("labels, bad", [([0, 1, 4], 4), ([0, -1, 2], -1), ([7, 0, 0], 7)])
def test_labels_out_of_range(labels, bad):
    with raises(ValueError, "[0, 4)", f"got {bad}"):
        tinyconv.CrossEntropyLoss()(LOGITS, np.array(labels))


@pytest.mark.parametrize("labels, dtype", [
    (np.array([0.0, 1.0, 2.0]), "float64"),
    (np.array([True, False, True]), "bool"),
    (np.array(["a", "b", "c"]), "<U1"),
    (np.array([0, 1, 2], dtype=object), "object"),
])
def test_labels_must_be_integers(labels, dtype):
    with raises(TypeError, "integer class indices", f"dtype {dtype}"):
        tinyconv.CrossEntropyLoss()(LOGITS, labels)


def test_ragged_labels():
    with raises(TypeError, "integer class indices", "list"):
        tinyconv.CrossEntropyLoss()(LOGITS, [[0], [1, 2], 3])


@pytest.mark.parametrize("labels", [np.array([[0], [1], [2]]), np.array([0, 1]),
                                    np.array(1), np.eye(3, 4, dtype=int)])
def test_labels_of_the_wrong_shape(labels):
    with raises(ValueError, "(3,)", "one per sample", f"got {labels.shape}"):
        tinyconv.CrossEntropyLoss()(LOGITS, labels)


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4)])
def test_logits_must_be_two_dimensional(shape):
    with raises(ValueError, "2 dimensions", "(N, classes)", str(shape)):
        tinyconv.CrossEntropyLoss()(np.zeros(shape), np.zeros(shape[0], int))


def test_non_numeric_logits():
    with raises(TypeError, "logits", "numeric array"):
        tinyconv.CrossEntropyLoss()(np.full((1, 2), "x"), np.array([0]))


@pytest.mark.parametrize("prediction, target", [((3, 2), (3,)), ((3, 2), (2, 3)),
                                                ((1,), (1, 1)), ((2, 1), (2, 3))])
def test_mse_shape_mismatch(prediction, target):
    with raises(ValueError, f"prediction's shape {prediction}", f"got {target}"):
        tinyconv.MSELoss()(np.zeros(prediction), np.zeros(target))


def test_mse_non_numeric_target():
    with raises(TypeError, "target", "numeric array"):
        tinyconv.MSELoss()(np.zeros(2), np.array(["a", "b"]))


# ----------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_LAYERS)
def test_backward_before_forward(name):
    make, shape = ALL_LAYERS[name]
    with raises(RuntimeError, name, "before forward"):
        make().backward(np.ones(shape))


def test_sequential_backward_before_forward():
    with raises(RuntimeError, "before forward"):
        tinyconv.Sequential(tinyconv.Linear(2, 2), tinyconv.ReLU()).backward(np.ones((1, 2)))


@pytest.mark.parametrize("criterion", [tinyconv.CrossEntropyLoss, tinyconv.MSELoss])
def test_loss_backward_before_forward(criterion):
    with raises(RuntimeError, criterion.__name__, "before forward"):
        criterion().backward()


def wrong_shapes(shape):
    """Shapes a careless caller might pass instead of ``shape``."""
    yield shape + (1,)
    yield shape[::-1] if shape[::-1] != shape else shape[:-1]
    yield (shape[0] + 1,) + shape[1:]


BACKWARD_CASES = {
    "Conv2d": (lambda: tinyconv.Conv2d(2, 3, 3), (2, 2, 5, 6)),
    "Conv2d-strided": (lambda: tinyconv.Conv2d(2, 3, 2, stride=2, padding=1), (1, 2, 5, 5)),
    "MaxPool2d": (lambda: tinyconv.MaxPool2d(2), (2, 2, 5, 6)),
    "AvgPool2d": (lambda: tinyconv.AvgPool2d(2), (2, 2, 4, 6)),
    "AvgPool2d-overlap": (lambda: tinyconv.AvgPool2d(2, stride=1), (2, 2, 5, 6)),
    "Linear": (lambda: tinyconv.Linear(3, 2), (4, 3)),
    "Flatten": (lambda: tinyconv.Flatten(), (2, 3, 2, 2)),
    "ReLU": (lambda: tinyconv.ReLU(), (2, 3)),
    "Sigmoid": (lambda: tinyconv.Sigmoid(), (2, 3)),
    "Tanh": (lambda: tinyconv.Tanh(), (2, 3)),
    "Identity": (lambda: tinyconv.Identity(), (2, 3)),
}


@pytest.mark.parametrize("name", BACKWARD_CASES)
def test_grad_output_of_the_wrong_shape(name):
    make, shape = BACKWARD_CASES[name]
    layer = make()
    out = layer(np.ones(shape))
    for wrong in wrong_shapes(out.shape):
        with raises(ValueError, "grad_output", f"shape {out.shape}", f"got {wrong}"):
            layer.backward(np.ones(wrong))


@pytest.mark.parametrize("name", BACKWARD_CASES)
def test_non_numeric_grad_output(name):
    make, shape = BACKWARD_CASES[name]
    layer = make()
    out = layer(np.ones(shape))
    with raises(TypeError, "grad_output", "numeric array"):
        layer.backward(np.full(out.shape, "a"))


def test_a_refused_input_leaves_the_layer_as_it_was():
    """The check comes first: a bad forward changes neither weights nor what backward uses."""
    layer = tinyconv.Conv2d(2, 3, 3, rng=0)
    weight = layer.weight.data.copy()
    out = layer(np.ones((1, 2, 4, 4)))
    with raises(ValueError, "2 channels"):
        layer(np.ones((1, 5, 4, 4)))
    np.testing.assert_array_equal(layer.weight.data, weight)
    assert layer.backward(np.ones(out.shape)).shape == (1, 2, 4, 4)


@pytest.mark.parametrize("call", [
    lambda x: F.conv2d_forward(x, np.ones((4, 3, 3, 3))),
    lambda x: F.batch_norm2d_forward(x, np.ones(3)),
], ids=["conv2d", "batch_norm2d"])
def test_functional_refuses_batch_first_images(call):
    # (N, C, H, W) with N = 5 and C = 3, as a layer would take it.
    with pytest.raises(ValueError, match=r"takes \(C, H, W, N\), batch last.*looks batch first"):
        call(np.zeros((5, 3, 8, 8)))


def test_functional_refuses_batch_first_vectors():
    with pytest.raises(ValueError, match=r"takes \(features, N\), batch last.*looks batch first"):
        F.linear_forward(np.zeros((5, 7)), np.ones((2, 7)))
