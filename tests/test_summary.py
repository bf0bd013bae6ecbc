"""summary: per-layer shapes, parameters and multiply-adds, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from tinyconv import Conv2d, Linear, ReLU, Sequential
from tinyconv.models.presets import resolve
from tinyconv.models.spec import build, input_shape
from tinyconv.nn.summary import summary, summary_rows, summary_totals

# LeNet-5 by hand, per image: conv 6@5x5 pad 2 on 1x28x28, pool 2, conv 16@5x5,
# pool 2, FC 400->120->84->10. MACs of a conv: F·OH·OW·C·KH·KW.
LENET_ROWS = [
    ("Conv2d", (6, 28, 28), 6 * (25 + 1), 6 * 28 * 28 * 1 * 25),
    ("ReLU", (6, 28, 28), 0, 0),
    ("MaxPool2d", (6, 14, 14), 0, 0),
    ("Conv2d", (16, 10, 10), 16 * (6 * 25 + 1), 16 * 10 * 10 * 6 * 25),
    ("ReLU", (16, 10, 10), 0, 0),
    ("MaxPool2d", (16, 5, 5), 0, 0),
    ("Flatten", (400,), 0, 0),
    ("Linear", (120,), 400 * 120 + 120, 400 * 120),
    ("ReLU", (120,), 0, 0),
    ("Linear", (84,), 120 * 84 + 84, 120 * 84),
    ("ReLU", (84,), 0, 0),
    ("Linear", (10,), 84 * 10 + 10, 84 * 10),
]


def test_lenet5_rows_and_totals():
    spec = resolve("lenet5")
    model = build(spec, rng=0)
    rows = summary_rows(model, input_shape(spec))
    assert [(r.layer, r.output_shape, r.params, r.macs) for r in rows] == LENET_ROWS
    totals = summary_totals(model, input_shape(spec))
    assert totals.params == totals.trainable == 61_706
    assert totals.buffers == 0
    assert totals.macs == 117_600 + 240_000 + 48_000 + 10_080 + 840 == 416_520
    # Input and every output, float32.
    elements = 784 + sum(int(np.prod(shape)) for _, shape, _, _ in LENET_ROWS)
    assert totals.activation_bytes == 4 * elements
    text = summary(model, input_shape(spec))
    assert "Total params: 61,706" in text
    assert "Multiply-adds per image: 416,520" in text
    assert "3: Conv2d" in text and "(16, 10, 10)" in text and "240,000" in text


def test_tutorial_preset_summary():
    spec = resolve("tutorial")
    rows = summary_rows(build(spec, rng=0), input_shape(spec))
    convs = [r for r in rows if r.layer == "Conv2d"]
    # CONV(3 filters) then CONV(5 filters), as in Figure 1.
    assert [r.output_shape[0] for r in convs] == [3, 5]
    assert convs[0].params == 3 * (5 * 5 + 1) and convs[1].params == 5 * (3 * 25 + 1)
    assert rows[-1].output_shape == (10,)
    assert [r.layer for r in rows].count("MaxPool2d") == 2


def test_buffers_counted_and_modes_left_alone():
    spec = "INPUT(1,6,6) -> CONV(4,3) -> BN -> DROPOUT(0.5) -> FC(3) -> BN -> FC(2)"
    model = build(spec, rng=0)
    bn = model[2]
    state = {name: array.copy() for name, array in model.state_dict().items()}
    dropout_state = model[3].rng.bit_generator.state
    model.layers[-1].training = False  # a mixed mode must come back as it was
    totals = summary_totals(model, input_shape(spec))
    assert totals.buffers == 2 * 4 + 2 * 3
    assert [m.training for m in model.modules()] == [True] * len(model) + [False]
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(array, state[name])
    assert model[3].rng.bit_generator.state == dropout_state
    assert bn.training


def test_summary_of_a_hand_built_model_of_vectors():
    model = Sequential(Linear(5, 4, rng=0), ReLU(), Linear(4, 2, rng=0))
    rows = summary_rows(model, (5,))
    assert [(r.output_shape, r.params, r.macs) for r in rows] == [
        ((4,), 24, 20), ((4,), 0, 0), ((2,), 10, 8)]


def test_summary_bad_input():
    model = Sequential(Conv2d(3, 2, 3, rng=0))
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2d\) does not fit input shape "
                                         r"\(1, 8, 8\)"):
        summary(model, (1, 8, 8))
    with pytest.raises(ValueError, match="input_shape must be positive"):
        summary(model, (3, 0, 8))
    with pytest.raises(TypeError, match="input_shape must be a tuple of sizes"):
        summary(model, "3x8x8")
