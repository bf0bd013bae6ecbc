"""The tutorial's worked numbers, through the reference loops and the public layers.

Expected values are the tutorial's (FORMULAS.md) or worked out by hand from
its formulas; each test says which.
"""

import numpy as np
import pytest

import tinyconv
from tinyconv import reference as R

IMAGE = np.array([[1, 1, 1, 0, 0],
                  [0, 1, 1, 1, 0],
                  [0, 0, 1, 1, 1],
                  [0, 0, 1, 1, 0],
                  [0, 1, 1, 0, 0]], dtype=np.float64)
FILTER = np.array([[1, 0, 1],
                   [0, 1, 0],
                   [1, 0, 1]], dtype=np.float64)

# a_{i,j} = x_{i,j} + x_{i,j+2} + x_{i+1,j+1} + x_{i+2,j} + x_{i+2,j+2} (the
# filter's five ones), worked out by hand for every position; the tutorial
# gives a_{0,0} = 4 and a_{0,1} = 3.
FEATURE_MAP_STRIDE_1 = np.array([[4, 3, 4],
                                 [2, 4, 3],
                                 [2, 3, 4]], dtype=np.float64)
# Stride 2 keeps the positions (0, 0), (0, 2), (2, 0), (2, 2) of the above.
FEATURE_MAP_STRIDE_2 = np.array([[4, 4],
                                 [2, 4]], dtype=np.float64)


def _conv_relu_layer(stride, padding=0):
    """Conv2d with the tutorial's filter and bias 0, in float64, then ReLU."""
    conv = tinyconv.Conv2d(1, 1, 3, stride=stride, padding=padding, rng=0)
    conv.weight.data = FILTER[None, None].copy()
    conv.bias.data = np.zeros(1)
    return tinyconv.Sequential(conv, tinyconv.ReLU())


@pytest.mark.parametrize("stride, expected", [(1, FEATURE_MAP_STRIDE_1),
                                              (2, FEATURE_MAP_STRIDE_2)])
def test_feature_map_of_the_5x5_image(stride, expected):
    out = R.conv_forward(IMAGE[None], FILTER[None, None], [0.0], stride=stride,
                         activation=R.relu)
    np.testing.assert_array_equal(out[0], expected)
    out = _conv_relu_layer(stride)(IMAGE[None, None])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out[0, 0], expected)


def test_first_two_values_as_the_tutorial_sums_them():
    assert R.conv_at(IMAGE[None], FILTER[None], 0.0, 0, 0) == 1 + 0 + 1 + 0 + 1 + 0 + 0 + 0 + 1
    assert R.conv_at(IMAGE[None], FILTER[None], 0.0, 0, 1) == 1 + 0 + 0 + 0 + 1 + 0 + 0 + 0 + 1


def test_output_size_examples():
    assert R.output_size(5, 3, 0, 2) == 2     # eq. 4.2's worked example
    assert R.output_size(5, 3, 0, 1) == 3     # the stride-1 feature map
    assert R.output_size(5, 3, 1, 2) == 3     # the animation after eq. 4.4
    assert R.output_size(6, 3, 0, 2) == 2     # (6 - 3) / 2 + 1 floors


def test_two_filters_stride_2_padding_1_give_3x3x2_and_56_parameters():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 5, 5))
    filters = rng.normal(size=(2, 3, 3, 3))
    biases = rng.normal(size=2)
    out = R.conv_forward(x, filters, biases, stride=2, padding=1)
    assert out.shape == (2, 3, 3)

    layer = tinyconv.Conv2d(3, 2, 3, stride=2, padding=1, rng=0)
    assert sum(p.size for p in layer.parameters()) == (3 * 3 * 3 + 1) * 2 == 56
    layer.weight.data = filters
    layer.bias.data = biases
    np.testing.assert_allclose(layer(x[None])[0], out, rtol=0, atol=1e-12)


def test_full_convolution_by_hand():
    a = np.array([[1, 2],
                  [3, 4]])
    b = np.array([[1, 0],
                  [0, 2]])
    # C_{s,t} = Σ A_{m,n} B_{s-m,t-n} = A_{s,t}·B_{0,0} + A_{s-1,t-1}·B_{1,1}
    expected = np.array([[1, 2, 0],
                         [3, 1 * 4 + 2 * 1, 2 * 2],
                         [0, 2 * 3, 2 * 4]])
    np.testing.assert_array_equal(R.full_convolution(a, b), expected)


def test_rot180_by_hand():
    np.testing.assert_array_equal(R.rot180([[1, 2, 3], [4, 5, 6]]), [[6, 5, 4], [3, 2, 1]])


def test_expand_sensitivity_map_by_hand():
    delta = np.array([[1, 2],
                      [3, 4]])
    np.testing.assert_array_equal(R.expand_sensitivity_map(delta, 2),
                                  [[1, 0, 2],
                                   [0, 0, 0],
                                   [3, 0, 4]])
    np.testing.assert_array_equal(R.expand_sensitivity_map(delta, (1, 3)),
                                  [[1, 0, 0, 2],
                                   [3, 0, 0, 4]])


# The tutorial's smallest backward case: a 3x3 input, a 2x2 filter, stride 1,
# a 2x2 sensitivity map. Its indices are 1-based; here w[0, 0] is its w_{1,1}.
W2X2 = np.array([[1.0, 2.0],
                 [3.0, 4.0]])
DELTA2X2 = np.array([[10.0, 100.0],
                     [1000.0, 10000.0]])


def test_delta_through_a_conv_layer_as_the_tutorial_derives_it():
    grad = R.conv_backward_delta(DELTA2X2[None], W2X2[None, None], (1, 3, 3))[0]
    (d11, d12), (d21, d22) = DELTA2X2
    (w11, w12), (w21, w22) = W2X2
    assert grad[0, 0] == d11 * w11                                          # example 1
    assert grad[0, 1] == d11 * w12 + d12 * w11                              # example 2
    assert grad[1, 1] == d11 * w22 + d12 * w21 + d21 * w12 + d22 * w11      # example 3
    # The rule it generalises to: pad δ with a ring of zeros, cross-correlate
    # with the filter rotated by 180°.
    padded = R.zero_pad(DELTA2X2[None], 1)[0]
    np.testing.assert_array_equal(grad, R.cross_correlation(padded, R.rot180(W2X2)))

    layer = tinyconv.Conv2d(1, 1, 2, rng=0)
    layer.weight.data = W2X2[None, None].copy()
    layer.bias.data = np.zeros(1)
    layer(np.zeros((1, 1, 3, 3)))
    np.testing.assert_array_equal(layer.backward(DELTA2X2[None, None])[0, 0], grad)


def test_delta_times_the_activation_derivative_eq_5_2():
    net_prev = np.array([[[-1.0, 2.0, 3.0],
                          [4.0, -5.0, 6.0],
                          [7.0, 8.0, 0.0]]])
    plain = R.conv_backward_delta(DELTA2X2[None], W2X2[None, None], (1, 3, 3))
    with_f = R.conv_backward_delta(DELTA2X2[None], W2X2[None, None], (1, 3, 3),
                                   net_prev=net_prev, activation_derivative=R.relu_derivative)
    np.testing.assert_array_equal(with_f, plain * (net_prev > 0))


def test_weight_and_bias_gradients_as_the_tutorial_derives_them():
    a = np.arange(1.0, 10.0).reshape(3, 3)  # a_{1,1} = 1, ..., a_{3,3} = 9
    grad = R.conv_weight_gradient(a[None], DELTA2X2[None], 2)[0, 0]
    (d11, d12), (d21, d22) = DELTA2X2
    assert grad[0, 0] == d11 * a[0, 0] + d12 * a[0, 1] + d21 * a[1, 0] + d22 * a[1, 1]
    assert grad[0, 1] == d11 * a[0, 1] + d12 * a[0, 2] + d21 * a[1, 1] + d22 * a[1, 2]
    assert R.conv_bias_gradient(DELTA2X2[None])[0] == d11 + d12 + d21 + d22

    layer = tinyconv.Conv2d(1, 1, 2, rng=0)
    layer.weight.data = W2X2[None, None].copy()
    layer.bias.data = np.zeros(1)
    layer(a[None, None])
    layer.backward(DELTA2X2[None, None])
    np.testing.assert_array_equal(layer.weight.grad[0, 0], grad)
    assert layer.bias.grad[0] == d11 + d12 + d21 + d22


POOL_INPUT = np.array([[1, 1, 2, 4],
                       [5, 6, 7, 8],
                       [3, 2, 1, 0],
                       [1, 2, 3, 4]], dtype=np.float64)


def test_max_pooling_2x2_on_a_4x4_input():
    expected = np.array([[6, 8],
                         [3, 4]])
    np.testing.assert_array_equal(R.max_pool_forward(POOL_INPUT[None], 2)[0], expected)
    layer = tinyconv.MaxPool2d(2)
    np.testing.assert_array_equal(layer(POOL_INPUT[None, None])[0, 0], expected)

    # δ goes unchanged to each window's maximum, the others get 0.
    delta = np.array([[10.0, 20.0],
                      [30.0, 40.0]])
    expected_grad = np.array([[0, 0, 0, 0],
                              [0, 10, 0, 20],
                              [30, 0, 0, 0],
                              [0, 0, 0, 40]])
    np.testing.assert_array_equal(R.max_pool_backward(POOL_INPUT[None], delta[None], 2)[0],
                                  expected_grad)
    np.testing.assert_array_equal(layer.backward(delta[None, None])[0, 0], expected_grad)


def test_max_pooling_ties_go_to_the_first_in_row_major_order():
    x = np.array([[3, 3],
                  [3, 3]], dtype=np.float64)
    expected_grad = np.array([[5, 0],
                              [0, 0]])
    np.testing.assert_array_equal(R.max_pool_backward(x[None], [[[5.0]]], 2)[0], expected_grad)
    layer = tinyconv.MaxPool2d(2)
    layer(x[None, None])
    np.testing.assert_array_equal(layer.backward(np.full((1, 1, 1, 1), 5.0))[0, 0],
                                  expected_grad)


def test_mean_pooling_forward_and_the_kronecker_backward():
    np.testing.assert_array_equal(R.mean_pool_forward(POOL_INPUT[None], 2)[0],
                                  [[13 / 4, 21 / 4],
                                   [8 / 4, 8 / 4]])
    delta = np.array([[4.0, 8.0],
                      [12.0, 16.0]])
    # δ^{l-1} = δ^l ⊗ (1/4)_{2x2}: every δ shared by the four inputs of its window.
    expected = np.array([[1, 1, 2, 2],
                         [1, 1, 2, 2],
                         [3, 3, 4, 4],
                         [3, 3, 4, 4]])
    np.testing.assert_array_equal(R.mean_pool_backward(POOL_INPUT[None], delta[None], 2)[0],
                                  expected)
    layer = tinyconv.AvgPool2d(2)
    layer(POOL_INPUT[None, None])
    np.testing.assert_array_equal(layer.backward(delta[None, None])[0, 0], expected)


def test_fully_connected_layer_by_hand():
    a = np.array([1.0, 2.0])
    weight = np.array([[1.0, -1.0],
                       [2.0, 0.5],
                       [0.0, 3.0]])
    bias = np.array([0.5, 0.0, -1.0])
    np.testing.assert_array_equal(R.fc_forward(a, weight, bias), [-0.5, 3.0, 5.0])
    np.testing.assert_array_equal(R.fc_forward(a, weight, bias, activation=R.relu),
                                  [0.0, 3.0, 5.0])
    delta = np.array([1.0, 10.0, 100.0])
    delta_prev, grad_weight, grad_bias = R.fc_backward(a, weight, delta)
    np.testing.assert_array_equal(delta_prev, [1 + 20, -1 + 5 + 300])       # Wᵀδ
    np.testing.assert_array_equal(grad_weight, [[1, 2], [10, 20], [100, 200]])  # δ aᵀ
    np.testing.assert_array_equal(grad_bias, delta)


def test_activation_derivatives():
    np.testing.assert_array_equal(R.relu_derivative([-1.0, 0.0, 2.0]), [0, 0, 1])
    assert R.sigmoid_derivative(0.0) == 0.25       # σ' is at most 1/4
    assert R.tanh_derivative(0.0) == 1.0
    np.testing.assert_array_equal(R.sigmoid([-1000.0, 1000.0]), [0.0, 1.0])
