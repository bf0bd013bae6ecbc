"""The spec notation: parsing, errors with positions, round trip, building, presets."""

from __future__ import annotations

import numpy as np
import pytest

from tinyconv import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear,
                      MaxPool2d, ReLU, Sigmoid, Tanh)
from tinyconv.models.presets import PRESETS, resolve
from tinyconv.models.spec import (Element, Repeat, SpecError, build, format_spec, input_shape,
                                  parse)

ISSUE_EXAMPLE = ("INPUT(1,28,28) -> [[CONV(32,3,pad=1)]*2 -> MAXPOOL(2)]*2 -> "
                 "[FC(256)]*1 -> FC(10)")


def kinds(model) -> list[type]:
    return [type(layer) for layer in model]


def test_parse_the_issue_example_into_a_tree():
    spec = parse(ISSUE_EXAMPLE)
    assert input_shape(spec) == (1, 28, 28)
    conv = Element("CONV", (("filters", 32), ("kernel", 3), ("stride", 1), ("pad", 1),
                            ("act", None)))
    pool = Element("MAXPOOL", (("kernel", 2), ("stride", 2), ("pad", 0)))
    fc = Element("FC", (("units", 256), ("act", None)))
    assert spec.body == (Repeat((Repeat((conv,), 2), pool), 2), Repeat((fc,), 1),
                         Element("FC", (("units", 10), ("act", None))))
    assert [e.kind for e in spec.elements()] == ["CONV", "CONV", "MAXPOOL"] * 2 + ["FC", "FC"]


def test_whitespace_case_aliases_keywords_and_defaults():
    plain = parse("INPUT(3,32,32)->CONV(8,3,stride=1,pad=1)->MAXPOOL(2,stride=2)->FC(10)")
    loose = parse("  input ( 3 , 32 , 32 )\n  ->  conv(8, 3, 1, PAD = 1)\t-> Pool -> fc(10)  ")
    assert plain == loose
    spec = parse("INPUT(1,8,8) -> AVGPOOL(3,stride=1,pad=1) -> BN -> DROPOUT -> FLATTEN "
                 "-> FC(4,act=TANH) -> DROPOUT(.25) -> FC(2)")
    pool, bn, drop, flat, fc, drop2, _ = spec.elements()
    assert (pool["kernel"], pool["stride"], pool["pad"]) == (3, 1, 1)
    assert bn.kind == "BN" and flat.kind == "FLATTEN"
    assert drop["p"] == 0.5 and drop2["p"] == 0.25
    assert fc["act"] == "tanh"


def test_bare_brackets_group_once():
    assert parse("INPUT(1,4,4) -> [FC(3) -> FC(2)]").body == parse(
        "INPUT(1,4,4) -> [FC(3) -> FC(2)]*1").body


def test_optional_pooling_is_skipped_where_the_map_is_too_small():
    spec = "INPUT(1,28,28) -> [CONV(4,3,pad=1) -> MAXPOOL(2)?]*6 -> FC(10)"
    model = build(spec, rng=0)
    assert kinds(model).count(MaxPool2d) == 4  # 28 -> 14 -> 7 -> 3 -> 1
    assert kinds(model).count(Conv2d) == 6
    assert model.forward(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
    # Without '?' the fifth pool is an error that points at the pool.
    with pytest.raises(SpecError, match="MAXPOOL kernel 2x2 does not fit the 1x1 map") as error:
        build(spec.replace("?", ""))
    assert error.value.column == spec.index("MAXPOOL") + 1


def test_optional_pool_that_fits_is_applied():
    with_q = build("INPUT(1,8,8) -> AVGPOOL(2)? -> FC(3)", rng=0)
    without = build("INPUT(1,8,8) -> AVGPOOL(2) -> FC(3)", rng=0)
    assert kinds(with_q) == kinds(without) == [AvgPool2d, Flatten, Linear]


# Each malformed spec, the message it must give, and the column (1-based) it points at.
MALFORMED = [
    ("INPUT(1,28,28 -> FC(10)", "expected ',' or ')', got '->'", 15),
    ("CONV(3,3) -> FC(10)", "expected INPUT(channels, height, width), got 'CONV'", 1),
    ("INPUT(1,28,28) -> CONVV(3,3)", "unknown layer 'CONVV'", 19),
    ("INPUT(1,28,28) -> CONV(3,3,padding=1)", "CONV has no argument 'padding'", 28),
    ("INPUT(1,28,28) -> [CONV(3,3) -> FC(10)", "expected '->' or ']', got the end", 39),
    ("INPUT(1,28,28) -> FC(10)*2", "expected '->' or the end of the spec, got '*'", 25),
    ("INPUT(1,28,28) -> CONV(3)", "CONV needs its argument 'kernel'", 19),
    ("INPUT(1,28,28) -> FC(10) % 3", "unexpected character '%'", 26),
    ("INPUT(1,28,28) -> FC(10,act=softmax)", "expected an activation for FC act", 29),
    ("INPUT(1,28,28) -> DROPOUT(1.5)", "expected a probability in [0, 1) for DROPOUT p", 27),
    ("INPUT(1,28,28) -> FC(1.5)", "expected a positive integer for FC units, got 1.5", 22),
    ("INPUT(1,28,28) -> CONV(0,3)", "expected a positive integer for CONV filters, got 0", 24),
    ("INPUT(1,28,28) -> CONV(8,3)? -> FC(2)", "'?' (optional) applies to pooling only", 28),
    ("INPUT(1,28,28) ->", "expected a layer", 18),
    ("INPUT(1,28,28)", "expected '->' and the first layer, got the end", 15),
    ("INPUT(1,28,28) -> FC(act=relu, 3)", "positional argument after a keyword", 32),
    ("INPUT(1,28,28) -> FC(3, relu, 5)", "too many arguments for FC(units, act)", 31),
    ("INPUT(1,28,28) -> FC(3, units=4)", "FC argument 'units' given twice", 25),
    ("INPUT(1,28,28) -> FC(3) -> INPUT(1,2,2)", "INPUT may only come first", 28),
    ("INPUT(1,28,28) -> [FC(3)]*0", "expected a positive integer for the repeat count", 27),
    ("INPUT(1,28,28) -> [FC(10)]*99999999", "repeat count 99999999 is too large: a model may "
                                            "have at most 1000 layers", 28),
    ("INPUT(1,28,28) -> [[FC(3)]*100]*11", "repeat count 11 is too large (11 x 100 layers)", 33),
    ("INPUT(1,28,28) -> [FC(3)]*600 -> [FC(2)]*401", "1001 layers up to here: a model may "
                                                     "have at most 1000 layers", 34),
]


@pytest.mark.parametrize("text, message, column", MALFORMED)
def test_malformed_specs_say_what_and_where(text, message, column):
    with pytest.raises(SpecError) as error:
        parse(text)
    assert message in error.value.message
    assert error.value.column == column
    # The message ends with the line and a caret under the column.
    lines = str(error.value).splitlines()
    assert lines[0].endswith(f"at column {column}")
    assert lines[1] == "  " + text
    assert lines[2] == "  " + " " * (column - 1) + "^"


def test_multi_line_spec_errors_name_the_line():
    with pytest.raises(SpecError) as error:
        parse("INPUT(1,28,28)\n  -> CONV(8,3\n  -> FC(10)")
    assert (error.value.line, error.value.column) == (3, 3)
    assert "at line 3, column 3" in str(error.value)


def test_parse_refuses_non_text():
    with pytest.raises(TypeError, match="a spec is text, got bytes"):
        parse(b"INPUT(1,2,2) -> FC(1)")


BUILD_ERRORS = [
    ("INPUT(1,28,28) -> CONV(8,30)", "CONV kernel 30x30 does not fit the 28x28 map"),
    ("INPUT(1,28,28) -> FC(10) -> CONV(3,3)", "CONV needs image maps (C, H, W), but vectors "
                                              "of 10 features reach it"),
    ("INPUT(1,28,28) -> FLATTEN -> FLATTEN", "FLATTEN needs image maps"),
    ("INPUT(1,28,28) -> MAXPOOL(2,pad=2)", "MAXPOOL pad 2 is more than half its kernel 2"),
    ("INPUT(1,5,5) -> CONV(2,3,stride=2) -> CONV(2,3)", "CONV kernel 3x3 does not fit the "
                                                        "2x2 map"),
]


@pytest.mark.parametrize("text, message", BUILD_ERRORS)
def test_layers_that_do_not_fit_are_spec_errors_at_the_layer(text, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        build(text)
    assert error.value.column == text.rindex(message.split()[0]) + 1


def test_a_thousand_layers_are_allowed():
    assert len(parse("INPUT(1,28,28) -> [[FC(3)]*10]*100").elements()) == 1000


def test_deep_brackets_are_a_spec_error_not_a_recursion_error():
    """Each level of brackets is a level of the parser's recursion: 50 at most."""
    nested = "INPUT(1,4,4) -> " + "[" * 50 + "FC(2)" + "]" * 50
    assert len(parse(nested).elements()) == 1
    too_deep = "INPUT(1,4,4) -> " + "[" * 51 + "FC(2)" + "]" * 51
    with pytest.raises(SpecError, match="brackets nested more than 50 deep at column 67"):
        parse(too_deep)
    with pytest.raises(SpecError, match="brackets nested more than 50 deep"):
        parse("INPUT(1,4,4) -> " + "[" * 5000 + "FC(2)" + "]" * 5000)


# Each too large model, the layer that takes it past the limit and the numbers,
# counted by hand: an FC layer has (inputs + 1) x units parameters, a CONV
# layer F x (C x K x K + 1), so 785 x 100,000 = 78,500,000 before FC(1000).
TOO_LARGE = [
    ("INPUT(1,28,28) -> FC(100000) -> FC(1000)", "FC(1000)",
     "FC(1000) has 100,001,000 parameters, which brings the model to 178,501,000: "
     "a model may have at most 100,000,000"),
    ("INPUT(1,9999,9999) -> FC(10)", "FC(10)", "FC(10) has 999,800,020 parameters"),
    ("INPUT(512,28,28) -> CONV(4096,7) -> FC(10)", "CONV(4096,7)",
     "CONV(4096,7) has 102,764,544 parameters"),
    ("INPUT(1,99999,99999) -> FC(10)", "INPUT",
     "INPUT 1 x 99999 x 99999 = 9,999,800,001 numbers per image: at most 100,000,000"),
    ("INPUT(1,2000,2000) -> CONV(64,3,pad=1) -> FC(10)", "CONV",
     "CONV(64,3,pad=1) outputs 64 x 2000 x 2000 = 256,000,000 numbers per image"),
]


@pytest.mark.parametrize("text, layer, message", TOO_LARGE)
def test_too_large_models_are_refused_before_allocating(text, layer, message):
    with pytest.raises(SpecError) as error:
        build(text)
    assert message in error.value.message
    assert error.value.column == text.index(layer) + 1


@pytest.mark.parametrize("text", [ISSUE_EXAMPLE, *(p.spec for p in PRESETS.values()),
                                  "input(1,8,8) -> [conv(4,3,PAD=1,act=tanh) -> pool(2,2)?]*2"
                                  " -> Dropout(0.25) -> fc(5, act=none) -> FC(3, act=relu)",
                                  "INPUT(3,9,9,act=sigmoid) -> AVGPOOL(3,stride=2,pad=1) -> "
                                  "BN -> FLATTEN -> FC(4) -> BN -> [FC(2)]*3",
                                  "INPUT(1,12,12) -> CONV(6,2,stride=2,pad=1) -> FC(3)"])
def test_round_trip(text):
    canonical = format_spec(parse(text))
    assert format_spec(parse(canonical)) == canonical
    assert parse(canonical) == parse(text)
    first, second = build(text, rng=3), build(canonical, rng=3)
    assert repr(first) == repr(second)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_canonical_text():
    assert format_spec("input(1, 28, 28) -> pool -> conv(8,3,1,0) -> [fc(8)]*1 -> fc(2)") == \
        "INPUT(1,28,28) -> MAXPOOL(2) -> CONV(8,3) -> [FC(8)] -> FC(2)"
    assert format_spec("INPUT(1,8,8,act=relu) -> MAXPOOL(3, stride=1)? -> DROPOUT -> FC(2)") == \
        "INPUT(1,8,8) -> MAXPOOL(3,stride=1)? -> DROPOUT(0.5) -> FC(2)"


def flow(text: str) -> list[tuple[int, ...]]:
    """Each layer's output shape (batch of 2) computed independently of build():
    eq. 4.2 written out here for every CONV and POOL of a flat spec."""
    shapes = []
    c, h, w = input_shape(text)
    for element in parse(text).elements():
        if element.kind in ("CONV", "MAXPOOL", "AVGPOOL"):
            k, s, p = element["kernel"], element["stride"], element["pad"]
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            c = element["filters"] if element.kind == "CONV" else c
            shapes.append((2, c, h, w))
        elif element.kind == "FC":
            shapes.append((2, element["units"]))
    return shapes


@pytest.mark.parametrize("text", [PRESETS["lenet5"].spec, PRESETS["tutorial"].spec,
                                  "INPUT(2,17,13) -> CONV(3,4,stride=2,pad=1) -> "
                                  "AVGPOOL(3,stride=2,pad=1) -> CONV(5,2) -> FC(7) -> FC(3)"])
def test_built_shapes_follow_the_declared_flow(text):
    model = build(text, rng=0)
    x = np.zeros((2,) + input_shape(text), np.float32)
    seen = []
    for layer in model:
        x = layer.forward(x)
        if isinstance(layer, (Conv2d, MaxPool2d, AvgPool2d, Linear)):
            seen.append(x.shape)
    assert seen == flow(text)


def test_activations_default_override_and_logits():
    model = build("INPUT(1,6,6) -> CONV(2,3) -> CONV(2,3,act=tanh) -> FC(4) -> FC(3)", rng=0)
    assert kinds(model) == [Conv2d, ReLU, Conv2d, Tanh, Flatten, Linear, ReLU, Linear]
    model = build("INPUT(1,6,6,act=sigmoid) -> CONV(2,3) -> FC(4) -> FC(3,act=relu) -> "
                  "DROPOUT(0.1)", rng=0)
    assert kinds(model) == [Conv2d, Sigmoid, Flatten, Linear, Sigmoid, Linear, ReLU, Dropout]
    # The last FC inside a repetition is the last copy.
    model = build("INPUT(1,2,2) -> [FC(3)]*2", rng=0)
    assert kinds(model) == [Flatten, Linear, ReLU, Linear]


def test_batch_norm_follows_the_data():
    model = build("INPUT(1,4,4) -> CONV(2,3) -> BN -> FC(3) -> BN -> FC(2)", rng=0)
    norms = [layer for layer in model if isinstance(layer, (BatchNorm1d, BatchNorm2d))]
    assert [(type(n), n.num_features) for n in norms] == [(BatchNorm2d, 2), (BatchNorm1d, 3)]


def test_build_is_deterministic_with_a_seed_and_keeps_the_dtype():
    a, b, c = (build(PRESETS["strong"].spec, rng=seed) for seed in (7, 7, 8))
    for name, array in a.state_dict().items():
        np.testing.assert_array_equal(array, b.state_dict()[name])
    assert not np.array_equal(a[0].weight.data, c[0].weight.data)
    assert a[0].weight.data.dtype == np.float32
    assert build(PRESETS["lenet5"].spec, rng=0, dtype=np.float64)[0].weight.data.dtype == np.float64
    # One Generator for everything: dropout draws from it too.
    dropout = next(layer for layer in a if isinstance(layer, Dropout))
    dropout_b = next(layer for layer in b if isinstance(layer, Dropout))
    np.testing.assert_array_equal(dropout.forward(np.ones((4, 8))),
                                  dropout_b.forward(np.ones((4, 8))))


def test_init_rule_follows_the_activation():
    model = build("INPUT(1,1,1) -> FC(400) -> FC(300,act=tanh) -> FC(200)", rng=0)
    relu_fc, tanh_fc, logits_fc = (layer for layer in model if isinstance(layer, Linear))
    # He for ReLU: normal with std sqrt(2 / fan_in), fan_in = 1 here.
    assert relu_fc.weight.data.std() == pytest.approx(np.sqrt(2 / 1), rel=0.1)
    # Xavier for tanh (and for the logits, no activation): uniform on
    # ±sqrt(6 / (fan_in + fan_out)), whose std is the bound / sqrt(3).
    for layer in (tanh_fc, logits_fc):
        fan_out, fan_in = layer.weight.shape
        bound = np.sqrt(6 / (fan_in + fan_out))
        assert np.abs(layer.weight.data).max() <= bound
        assert np.abs(layer.weight.data).max() > 0.99 * bound
        assert layer.weight.data.std() == pytest.approx(bound / np.sqrt(3), rel=0.02)
    conv = build("INPUT(8,6,6) -> CONV(64,3)", rng=0)[0]
    assert conv.weight.data.std() == pytest.approx(np.sqrt(2 / (8 * 9)), rel=0.05)


def test_presets():
    assert set(PRESETS) >= {"tutorial", "lenet5", "default", "strong"}
    for name, preset in PRESETS.items():
        assert preset.name == name and preset.promise and preset.recipe.epochs >= 1
        assert resolve(name) == format_spec(preset.spec)
        assert resolve(name.upper()) == resolve(name)
        model = build(resolve(name), rng=0)
        assert model.forward(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
    lenet = build(resolve("lenet5"), rng=0)
    assert sum(p.size for p in lenet.parameters()) == 61_706
    # Figure 1: CONV(3 filters) -> POOL -> CONV(5 filters) -> POOL -> FC -> FC.
    tutorial = build(resolve("tutorial"), rng=0)
    convs = [layer.out_channels for layer in tutorial if isinstance(layer, Conv2d)]
    assert convs == [3, 5]
    assert kinds(tutorial).count(MaxPool2d) == 2 and kinds(tutorial).count(Linear) == 2


def test_resolve_spec_text_and_unknown_names():
    assert resolve(" input(1,4,4)->fc(2) ") == "INPUT(1,4,4) -> FC(2)"
    with pytest.raises(ValueError, match="unknown preset 'lenet'; presets: tutorial, lenet5"):
        resolve("lenet")
    with pytest.raises(SpecError):
        resolve("INPUT(1,4,4) -> FC(")
    with pytest.raises(TypeError, match="preset name or spec text"):
        resolve(None)
