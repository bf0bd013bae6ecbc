"""``tinyconv explain``: the tutorial's numbers, and agreement with the library.

The printed numbers are parsed back and compared with the tutorial's worked
examples (FORMULAS.md), with values worked out by hand from its formulas, and
for random inputs with the fast :mod:`tinyconv.nn.functional` ops and the
reference loops.
"""

import re
import subprocess
import sys

import numpy as np
import pytest

from tinyconv.cli import explain as explain_cli
from tinyconv.tutorial import explain
from tinyconv.tutorial import conv_gif as conv_gif_module
from tinyconv.tutorial.conv_gif import conv_gif
from tinyconv import functional as F
from tinyconv import reference as R

TOLERANCE = 1e-4   # numbers are printed with at most 4 decimals

# The tutorial's feature maps of its 5x5 image (FORMULAS.md, eq. 4.1 and 4.2).
TUTORIAL_MAP_STRIDE_1 = [[4, 3, 4],
                         [2, 4, 3],
                         [2, 3, 4]]
TUTORIAL_MAP_STRIDE_2 = [[4, 4],
                         [2, 4]]

NUMBER = r"-?\d+(?:\.\d+)?"


def grids(text: str, title: str) -> list[np.ndarray]:
    """Every array printed under a line that starts with ``title``, in order."""
    found, lines = [], text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(title):
            rows = []
            for row in lines[index + 1:]:
                cells = row.split()
                if not row.startswith("    ") or not all(re.fullmatch(NUMBER, c) for c in cells):
                    break
                rows.append([float(c) for c in cells])
            found.append(np.array(rows))
    return found


def value_blocks(text: str) -> dict[str, list[str]]:
    """``{"0,1": [lines]}``: each ``a_{...}`` of the forward explanation and its lines."""
    blocks, current = {}, None
    for line in text.splitlines():
        match = re.match(r"a_\{([\d,]+)\}", line)
        if match:
            current = blocks.setdefault(match.group(1), [])
        elif not line.startswith(" "):
            current = None
        if current is not None:
            current.append(line)
    return blocks


def final_value(block: list[str]) -> float:
    return float(block[-1].split("= ")[-1])


# ---------------------------------------------------------------- conv forward

def test_conv_default_is_the_tutorial_example():
    text = explain.explain_conv()
    assert "W2 = (W1 - F + 2P)/S + 1 = (5 - 3 + 2·0)/1 + 1 = 3" in text
    assert "H2 = (H1 - F + 2P)/S + 1 = (5 - 3 + 2·0)/1 + 1 = 3" in text
    blocks = value_blocks(text)
    assert len(blocks) == 9
    # The tutorial: a_{0,0} = relu(1+0+1+0+1+0+0+0+1+0) = 4, a_{0,1} = relu(1+0+0+0+1+0+0+0+1+0) = 3.
    assert blocks["0,0"] == ["a_{0,0} = relu(1·1 + 0·1 + 1·1 + 0·0 + 1·1 + 0·1 + 1·0 + 0·0 + 1·1 + 0)",
                             "        = relu(1 + 0 + 1 + 0 + 1 + 0 + 0 + 0 + 1 + 0)",
                             "        = relu(4)",
                             "        = 4"]
    assert "        = relu(1 + 0 + 0 + 0 + 1 + 0 + 0 + 0 + 1 + 0)" in blocks["0,1"]
    assert final_value(blocks["0,1"]) == 3
    for (i, j), expected in np.ndenumerate(TUTORIAL_MAP_STRIDE_1):
        assert final_value(blocks[f"{i},{j}"]) == expected
    (feature_map,) = grids(text, "Feature map")
    np.testing.assert_array_equal(feature_map, TUTORIAL_MAP_STRIDE_1)


def test_conv_stride_2_gives_the_tutorial_2x2_map():
    text = explain.explain_conv(stride=2)
    assert "(5 - 3 + 2·0)/2 + 1 = 2   (eq. 4.2)" in text
    (feature_map,) = grids(text, "Feature map")
    np.testing.assert_array_equal(feature_map, TUTORIAL_MAP_STRIDE_2)
    assert len(value_blocks(text)) == 4


def test_conv_floor_and_padding_are_written_out():
    text = explain.explain_conv(padding=1, stride=2, activation="none")
    assert "(5 - 3 + 2·1)/2 + 1 = 3" in text
    text = explain.explain_conv(np.ones((6, 6)), stride=2)
    assert "(6 - 3 + 2·0)/2 + 1 = ⌊3/2⌋ + 1 = 2" in text
    assert "floors" in text


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "none"])
def test_conv_random_values_agree_with_the_fast_ops(seed, activation):
    rng = np.random.default_rng(seed)
    depth, n_filters = rng.integers(1, 4), rng.integers(1, 4)
    k, stride, padding = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 2))
    x = rng.normal(size=(depth, 5, 6))
    w = rng.normal(size=(n_filters, depth, k, k))
    b = rng.normal(size=n_filters)
    text = explain.explain_conv(x, w, b, stride, padding, activation)

    # One sample, batch last: (D, H, W, 1).
    net, _ = F.conv2d_forward(x[..., None], w, b, stride=stride, padding=padding)
    expected = {"relu": np.maximum(net, 0), "sigmoid": 1 / (1 + np.exp(-net)),
                "tanh": np.tanh(net), "none": net}[activation][..., 0]
    printed = grids(text, "Feature map")
    assert len(printed) == n_filters
    np.testing.assert_allclose(np.array(printed), expected, atol=TOLERANCE)
    blocks = value_blocks(text)
    assert len(blocks) == expected.size
    for index, value in np.ndenumerate(expected):
        label = ",".join(map(str, index if n_filters > 1 else index[1:]))
        assert abs(final_value(blocks[label]) - value) <= TOLERANCE


def test_conv_several_channels_prints_each_channel_sum():
    rng = np.random.default_rng(5)
    x = rng.integers(-3, 4, size=(3, 4, 4)).astype(float)
    w = rng.integers(-2, 3, size=(2, 3, 2, 2)).astype(float)
    text = explain.explain_conv(x, w, [1.0, -1.0], activation="none")
    blocks = value_blocks(text)
    for k in range(2):
        for i in range(3):
            for j in range(3):
                sums = [float(line.split("= ")[-1]) for line in blocks[f"{k},{i},{j}"]
                        if "channel" in line]
                expected = [np.sum(w[k, d] * x[d, i:i + 2, j:j + 2]) for d in range(3)]
                assert sums == expected
                assert final_value(blocks[f"{k},{i},{j}"]) == sum(expected) + [1, -1][k]


def test_negative_factors_are_in_parentheses():
    text = explain.explain_conv([[-1, 2], [3, 4]], [[2, -1], [0, 1]], -0.5, activation="none")
    assert "a_{0,0} = 2·(-1) + (-1)·2 + 0·3 + 1·4 + (-0.5)" in text
    assert final_value(value_blocks(text)["0,0"]) == -0.5


# --------------------------------------------------------------- conv backward

def test_conv_backward_default_is_the_tutorial_derivation():
    text = explain.explain_conv_backward()
    (d11, d12), (d21, d22) = explain.BACKWARD_DELTA
    (w11, w12), (w21, w22) = explain.BACKWARD_FILTER
    a = explain.BACKWARD_INPUT
    (grad_input,) = grids(text, "∂E/∂a^{l-1}")
    assert grad_input[0, 0] == d11 * w11                                      # example 1
    assert grad_input[0, 1] == d11 * w12 + d12 * w11                          # example 2
    assert grad_input[1, 1] == d11 * w22 + d12 * w21 + d21 * w12 + d22 * w11  # example 3
    (padded,) = grids(text, "Step 2.")
    np.testing.assert_array_equal(padded, np.pad(explain.BACKWARD_DELTA, 1))
    (rotated,) = grids(text, "Step 3.")
    np.testing.assert_array_equal(rotated, [[w22, w21], [w12, w11]])
    (grad_weight,) = grids(text, "∂E/∂W^l")
    assert grad_weight[0, 0] == d11 * a[0, 0] + d12 * a[0, 1] + d21 * a[1, 0] + d22 * a[1, 1]
    assert grad_weight[0, 1] == d11 * a[0, 1] + d12 * a[0, 2] + d21 * a[1, 1] + d22 * a[1, 2]
    assert f"∂E/∂w_b = 10 + 100 + 1000 + 10000 = {int(d11 + d12 + d21 + d22)}" in text
    assert "∂E/∂w_{0,1} = 10·2 + 100·3 + 1000·5 + 10000·6 = 65320" in text


def test_conv_backward_stride_2_prints_the_expanded_map():
    text = explain.explain_conv_backward(np.ones((5, 5)), [[1, 0], [0, -1]], [[1, 2], [3, 4]],
                                         stride=2)
    # Stride 2: one zero between the elements; the 5x5 input's stride-1 map is 4x4.
    (expanded,) = grids(text, "Step 1.")
    np.testing.assert_array_equal(expanded, [[1, 0, 2, 0],
                                             [0, 0, 0, 0],
                                             [3, 0, 4, 0],
                                             [0, 0, 0, 0]])


@pytest.mark.parametrize("seed", range(4))
def test_conv_backward_random_values_agree_with_the_fast_ops(seed):
    rng = np.random.default_rng(seed)
    depth, n_filters = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    k, stride, padding = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 2))
    net_prev = rng.normal(size=(depth, 5, 5))
    x = np.maximum(net_prev, 0)
    w = rng.normal(size=(n_filters, depth, k, k))
    out, cache = F.conv2d_forward(x[..., None], w, np.zeros(n_filters), stride=stride,
                                  padding=padding)
    delta = rng.normal(size=out.shape[:-1])
    text = explain.explain_conv_backward(x, w, delta, stride, padding, net_prev=net_prev,
                                         activation="relu")

    grad_x, grad_w, grad_b = F.conv2d_backward(delta[..., None], cache)
    grad_x = grad_x[..., 0]
    np.testing.assert_allclose(grids(text, "∂E/∂a^{l-1}"), grad_x, atol=TOLERANCE)
    np.testing.assert_allclose(grids(text, "δ^{l-1} ="), grad_x * (net_prev > 0),
                               atol=TOLERANCE)
    np.testing.assert_allclose(np.reshape(grids(text, "∂E/∂W^l"), grad_w.shape), grad_w,
                               atol=TOLERANCE)
    printed_bias = [float(line.split("= ")[-1]) for line in text.splitlines()
                    if line.startswith("  ∂E/∂w_b")]
    np.testing.assert_allclose(printed_bias, grad_b, atol=TOLERANCE)
    # The reference module, which the explanation reads its numbers from.
    np.testing.assert_allclose(grids(text, "δ^{l-1} ="), R.conv_backward_delta(
        delta, w, x.shape, stride, padding, net_prev, R.relu_derivative), atol=TOLERANCE)


# --------------------------------------------------------------------- pooling

def test_pool_default_is_the_4x4_example():
    text = explain.explain_pool()
    assert "max = 6 at x_{1,1}" in text
    assert "mean = (1 + 1 + 5 + 6)/4 = 3.25" in text
    (max_out,) = grids(text, "Max pooling output")
    np.testing.assert_array_equal(max_out, [[6, 8], [3, 4]])
    (mean_out,) = grids(text, "Mean pooling output")
    np.testing.assert_array_equal(mean_out, [[13 / 4, 21 / 4], [8 / 4, 8 / 4]])
    assert "δ^l_{0,0} = 4 → δ^{l-1}_{1,1}" in text
    (max_back,) = grids(text, "δ^{l-1}, max pooling")
    np.testing.assert_array_equal(max_back, [[0, 0, 0, 0],
                                             [0, 4, 0, 8],
                                             [12, 0, 0, 0],
                                             [0, 0, 0, 16]])
    # δ^{l-1} = δ^l ⊗ (1/4)_{2x2}
    assert "δ^l ⊗ (1/n²)_{n×n}" in text
    (share, mean_back) = grids(text, "Mean pooling: ") + grids(text, "δ^{l-1}, mean pooling")
    np.testing.assert_array_equal(share, np.full((2, 2), 0.25))
    np.testing.assert_array_equal(mean_back, np.kron(explain.POOL_DELTA, np.full((2, 2), 0.25)))


@pytest.mark.parametrize("size, stride", [(2, None), (3, 1), (2, 1), (3, 2)])
def test_pool_random_values_agree_with_the_fast_ops(size, stride):
    rng = np.random.default_rng(size * 10 + (stride or 0))
    x = rng.normal(size=(2, 6, 7))
    # One sample, batch last: (D, H, W, 1).
    max_out, max_cache = F.max_pool2d_forward(x[..., None], size, stride)
    mean_out, mean_cache = F.avg_pool2d_forward(x[..., None], size, stride)
    delta = rng.normal(size=max_out.shape[:-1])
    text = explain.explain_pool(x, size, stride, delta)
    np.testing.assert_allclose(grids(text, "Max pooling output"), max_out[..., 0],
                               atol=TOLERANCE)
    np.testing.assert_allclose(grids(text, "Mean pooling output"), mean_out[..., 0],
                               atol=TOLERANCE)
    np.testing.assert_allclose(grids(text, "δ^{l-1}, max pooling"),
                               F.max_pool2d_backward(delta[..., None], max_cache)[..., 0],
                               atol=TOLERANCE)
    np.testing.assert_allclose(grids(text, "δ^{l-1}, mean pooling"),
                               F.avg_pool2d_backward(delta[..., None], mean_cache)[..., 0],
                               atol=TOLERANCE)


# ------------------------------------------------------------------ arrays in

def test_parse_array_reads_lists_numbers_and_npy_files(tmp_path):
    np.testing.assert_array_equal(explain_cli.parse_array("[[1, 2], [3, 4.5]]", "x"),
                                  [[1, 2], [3, 4.5]])
    assert explain_cli.parse_array("-0.5", "x").shape == ()
    np.save(tmp_path / "a.npy", np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(explain_cli.parse_array(str(tmp_path / "a.npy"), "x"),
                                  np.arange(6).reshape(2, 3))


@pytest.mark.parametrize("text, error, words", [
    ("[[1, 2], [3]]", ValueError, "different lengths"),
    ("[[1, 2], [3, 4]", ValueError, "nested list"),
    ("[__import__('os').getcwd()]", ValueError, "nested list"),
    ("[['a', 'b']]", TypeError, "numeric"),
    ("[]", ValueError, "empty"),
    ("[1e999]", ValueError, "finite"),
    ("no/such/file.npy", ValueError, "neither"),
])
def test_parse_array_refuses_bad_text(text, error, words):
    with pytest.raises(error, match=words):
        explain_cli.parse_array(text, "--input")


def test_parse_array_refuses_files_that_are_no_npy(tmp_path):
    (tmp_path / "text.npy").write_text("[[1, 2]]")
    np.savez(tmp_path / "archive.npz", a=np.ones(2))
    np.save(tmp_path / "objects.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    for name, words in [("text.npy", "not a .npy file"), ("archive.npz", "archive"),
                        ("objects.npy", "not a readable .npy")]:
        with pytest.raises(ValueError, match=words):
            explain_cli.parse_array(str(tmp_path / name), "--input")


# ------------------------------------------------------------------------ GIF

def frames_of(path):
    from PIL import Image
    with Image.open(path) as image:
        assert image.format == "GIF"
        frames = []
        for index in range(image.n_frames):
            image.seek(index)
            frames.append(np.asarray(image.convert("RGB"), dtype=np.float64))
        return image.size, frames


@pytest.mark.parametrize("kwargs, n_frames", [({}, 9), ({"stride": 2}, 4),
                                              ({"padding": 1}, 25)])
def test_gif_has_one_frame_per_output_value(tmp_path, kwargs, n_frames):
    path = tmp_path / "conv.gif"
    assert conv_gif(path, **kwargs) == n_frames
    (width, height), frames = frames_of(path)
    assert len(frames) == n_frames
    padded = 5 + 2 * kwargs.get("padding", 0)
    # Three panels side by side: the padded input, the 3x3 filter, the feature map.
    assert width >= (padded + 3 + 1) * conv_gif_module.CELL
    assert height >= padded * conv_gif_module.CELL
    assert all(frame.shape == (height, width, 3) for frame in frames)
    assert all(frame.var() > 0 for frame in frames)
    assert all(np.any(a != b) for a, b in zip(frames, frames[1:]))
    assert not list(tmp_path.glob(".*.tmp"))


def test_gif_several_channels_and_filters(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "conv.gif"
    x, w = rng.integers(0, 3, size=(2, 4, 4)), rng.integers(-1, 2, size=(3, 2, 2, 2))
    assert conv_gif(path, x, w) == 3 * 3 * 3
    _, frames = frames_of(path)
    assert len(frames) == 27


def test_gif_to_an_unwritable_path_is_a_clear_oserror(tmp_path):
    with pytest.raises(OSError, match="cannot write the GIF"):
        conv_gif(tmp_path / "no" / "such" / "dir.gif")


# ------------------------------------------------------------- command line

def tinyconv(*args):
    return subprocess.run([sys.executable, "-m", "tinyconv", "explain", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_explains_and_draws(tmp_path):
    gif = tmp_path / "conv.gif"
    result = tinyconv("conv", "--stride", "2", "--gif", str(gif))
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(grids(result.stdout, "Feature map")[0], TUTORIAL_MAP_STRIDE_2)
    assert f"Wrote {gif} (4 frames)" in result.stdout
    assert gif.is_file()

    delta = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.save(tmp_path / "delta.npy", delta)
    result = tinyconv("conv-backward", "--filter", "[[1, -1], [2, 0]]",
                      "--delta", str(tmp_path / "delta.npy"))
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(grids(result.stdout, "∂E/∂a^{l-1}")[0],
                                  R.full_convolution(delta, [[1, -1], [2, 0]]))
    result = tinyconv("pool", "--input", "[[1, 2], [3, 4]]", "--delta", "[[8]]")
    assert result.returncode == 0, result.stderr
    assert "δ^l_{0,0} = 8 → δ^{l-1}_{1,1}" in result.stdout


@pytest.mark.parametrize("args", [
    ["conv", "--input", "[[1, 2], [3"],                       # malformed
    ["conv", "--input", "[[1, 2, 3], [4, 5]]"],               # ragged
    ["conv", "--input", "NOT_AN_NPY"],                        # a file that is not .npy
    ["conv", "--input", "[[1, 2], [3, 4]]"],                  # the 3x3 filter is too large
    ["conv", "--gif", "UNWRITABLE/conv.gif"],                 # no such directory
    ["conv-backward", "--delta", "[[1, 2, 3]]"],              # δ of the wrong shape
    ["pool", "--size", "0"],
])
def test_cli_bad_input_is_one_line_and_exit_status_2(tmp_path, args):
    (tmp_path / "not.npy").write_text("hello")
    args = [a.replace("NOT_AN_NPY", str(tmp_path / "not.npy"))
             .replace("UNWRITABLE", str(tmp_path / "missing")) for a in args]
    result = tinyconv(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("tinyconv: error: ")
    assert not (tmp_path / "missing").exists()
