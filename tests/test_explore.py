"""tinyconv explore: the page, checked number by number in a real browser.

Every value the page shows is clicked in headless Chromium (``browser.py``)
and the number that ends ``#detail`` is compared with two computations made
here: the tutorial's literal loops (:mod:`tinyconv.reference`, float64),
walked through the model layer by layer in this file, which is the
independent oracle; and the fast path (the model's own layers, float32, one
image at a time), which the page must show bit for bit, since it embeds
those very numbers.

Most checks run on a small randomly initialised model with every kind of
layer (convolution with stride and padding, tanh, sigmoid, ReLU right before
max pooling, batch norm on maps and on vectors, max and mean pooling,
flatten, dropout, fully connected), written with its page caps lowered so
that the capped paths are drawn too. One slow test runs the command on the
``default`` preset trained briefly on Fashion-MNIST.
"""

from __future__ import annotations

import re
import time
from importlib import resources

import numpy as np
import pytest
from PIL import Image

from browser import WebDriver, require_browser
from tinyconv import reference as R
from tinyconv.app import explore
from tinyconv.app.explore import ExploreImage, explore_data, explore_html, pick_test_images
from tinyconv.checks import conv_output_size
from tinyconv.cli import main
from tinyconv.data.datasets import DataNotFound, Dataset, load_dataset
from tinyconv.data.loader import Normalization
from tinyconv.models.presets import PRESETS
from tinyconv.models.serialize import load_model, save_model
from tinyconv.models.spec import build
from tinyconv.nn import functional as F
from tinyconv.nn.summary import summary_rows
from tinyconv.nn.layers import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear,
                                MaxPool2d, ReLU, Sigmoid, Tanh)
from tinyconv.training import optim
from tinyconv.training.loop import fit

# Every kind of layer the page explains: overlapping, padded max pooling
# (layer 3) and tiled (layer 9), mean pooling tiled (the Kronecker form), a
# stride-2 convolution; layer 8 (ReLU) runs after the max pooling that
# follows it inside a Sequential, which the page must not show.
KINDS_SPEC = ("INPUT(1,12,12) -> CONV(4,3,pad=1,act=tanh) -> BN -> MAXPOOL(3,stride=2,pad=1) -> "
              "CONV(6,2,stride=2,pad=1,act=sigmoid) -> AVGPOOL(2) -> CONV(6,1) -> MAXPOOL(2) -> "
              "FC(8) -> BN -> DROPOUT(0.3) -> FC(5)")
KINDS_CLASSES = [f"class {k}" for k in range(5)]
# Lowered so that the small model has capped layers: 3 of 4 and 3 of 6 maps,
# 6 of 8 units, and layer 4's 96 weights shown one filter at a time.
KINDS_CAPS = {"channels": 3, "units": 6, "weight_cells": 50}
NUMBER = re.compile(r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\s*$")
# The sum of the terms a detail shows, as the page computes it.
TERMS_SUM = re.compile(r"The terms add up to (-?\d+(?:\.\d+)?(?:e[-+]?\d+)?) here")


# ----------------------------------------------------------------------------
# The two computations the page is checked against
# ----------------------------------------------------------------------------

def _batch_norm(layer, x):
    """Evaluation-mode batch norm in float64, per channel (axis 0 of x)."""
    shape = (-1,) + (1,) * (x.ndim - 1)
    mean, var = (np.asarray(a, np.float64).reshape(shape) for a in (layer.running_mean,
                                                                    layer.running_var))
    gamma = layer.weight.data.astype(np.float64).reshape(shape)
    beta = layer.bias.data.astype(np.float64).reshape(shape)
    return (x - mean) / np.sqrt(var + layer.eps), gamma, beta, var


def reference_forward(layer, a):
    """One layer's output for one sample, by the tutorial's loops (float64)."""
    w = getattr(layer, "weight", None)
    if isinstance(layer, Conv2d):
        return R.conv_forward(a, w.data, layer.bias.data, layer.stride, layer.padding)
    if isinstance(layer, MaxPool2d):
        return R.max_pool_forward(a, layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, AvgPool2d):
        return R.mean_pool_forward(a, layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, Linear):
        return R.fc_forward(a, w.data, layer.bias.data)
    if isinstance(layer, BatchNorm2d):
        x_hat, gamma, beta, _ = _batch_norm(layer, a)
        return gamma * x_hat + beta
    activation = {ReLU: R.relu, Sigmoid: R.sigmoid, Tanh: R.tanh}.get(type(layer))
    if activation:
        return activation(a)
    if isinstance(layer, Flatten):
        return a.reshape(-1)
    assert isinstance(layer, Dropout)
    return a


def reference_backward(layer, a, delta):
    """δ of one layer's input from δ of its output, and its (weight, bias) gradients."""
    w = getattr(layer, "weight", None)
    if isinstance(layer, Conv2d):
        return (R.conv_backward_delta(delta, w.data, a.shape, layer.stride, layer.padding),
                (R.conv_weight_gradient(a, delta, layer.kernel_size, layer.stride,
                                        layer.padding), R.conv_bias_gradient(delta)))
    if isinstance(layer, MaxPool2d):
        return R.max_pool_backward(a, delta, layer.kernel_size, layer.stride, layer.padding), None
    if isinstance(layer, AvgPool2d):
        return R.mean_pool_backward(a, delta, layer.kernel_size, layer.stride,
                                    layer.padding), None
    if isinstance(layer, Linear):
        delta_in, grad_w, grad_b = R.fc_backward(a, w.data, delta)
        return delta_in, (grad_w, grad_b)
    if isinstance(layer, BatchNorm2d):
        x_hat, gamma, _, var = _batch_norm(layer, a)
        axes = tuple(range(1, a.ndim))
        return (delta * gamma / np.sqrt(var + layer.eps),
                ((delta * x_hat).sum(axis=axes), delta.sum(axis=axes)))
    derivative = {ReLU: R.relu_derivative, Sigmoid: R.sigmoid_derivative,
                  Tanh: R.tanh_derivative}.get(type(layer))
    if derivative:
        return delta * derivative(a), None
    if isinstance(layer, Flatten):
        return delta.reshape(a.shape), None
    return delta, None


def reference_run(loaded, pixels, target) -> dict:
    """Every value of the page for one image and target class, float64.

    Keys: ``forward`` and ``backward`` map "input", "0", "1", ..., "output"
    to arrays; ``weight`` and ``bias`` map a layer index to the gradients.
    """
    mean = np.asarray(loaded.normalization.mean).reshape(-1, 1, 1)
    std = np.asarray(loaded.normalization.std).reshape(-1, 1, 1)
    x = (pixels.astype(np.float64) / 255 - mean) / std
    layers = list(loaded.model)
    inputs, a = [], x
    for layer in layers:
        inputs.append(a)
        a = reference_forward(layer, a)
    outputs = inputs[1:] + [a]
    p = np.exp(a - a.max())
    p /= p.sum()
    delta = p - np.eye(len(p))[target]
    run = {"forward": {"input": x, "output": p}, "backward": {"output": delta},
           "weight": {}, "bias": {}}
    for index in reversed(range(len(layers))):
        run["forward"][str(index)] = outputs[index]
        run["backward"][str(index)] = delta
        delta, grads = reference_backward(layers[index], inputs[index], delta)
        if grads:
            run["weight"][str(index)], run["bias"][str(index)] = grads
    run["backward"]["input"] = delta
    return run


def fast_run(loaded, pixels, target) -> dict:
    """The same values by the fast path: the model's layers, float32, one image."""
    x = loaded.normalization(pixels[None])
    # The model as one Sequential (which may run a ReLU after a max pooling)
    # gives the logits that layer after layer in the listed order gives.
    logits = loaded.model.forward(x)
    layers = list(loaded.model)
    outputs = []
    for layer in layers:
        outputs.append(layer.forward(x if not outputs else outputs[-1]))
    assert np.array_equal(logits, outputs[-1])
    _, cache = F.cross_entropy_forward(outputs[-1], np.array([target]))
    delta = F.cross_entropy_backward(cache)
    run = {"forward": {"input": loaded.normalization(pixels[None])[0],
                       "output": F.softmax(outputs[-1])[0]},
           "backward": {"output": delta[0]}, "weight": {}, "bias": {}}
    loaded.model.zero_grad()
    for index in reversed(range(len(layers))):
        run["forward"][str(index)] = outputs[index][0]
        run["backward"][str(index)] = delta[0]
        delta = layers[index].backward(delta)
        if getattr(layers[index], "weight", None) is not None:
            run["weight"][str(index)] = layers[index].weight.grad.copy()
            run["bias"][str(index)] = layers[index].bias.grad.copy()
    run["backward"]["input"] = delta[0]
    return run


# ----------------------------------------------------------------------------
# Models and pages
# ----------------------------------------------------------------------------

def kinds_model(path):
    """The KINDS_SPEC model, random weights, batch norm statistics made up, saved at ``path``."""
    model = build(KINDS_SPEC, rng=0)
    rng = np.random.default_rng(1)
    for layer in model:
        if isinstance(layer, BatchNorm2d):
            n = layer.num_features
            layer.weight.data = rng.uniform(0.5, 1.5, n).astype(np.float32)
            layer.bias.data = rng.normal(0, 0.3, n).astype(np.float32)
            layer.running_mean[...] = rng.normal(0, 0.3, n)
            layer.running_var[...] = rng.uniform(0.2, 2.0, n)
    save_model(path, model, KINDS_SPEC, KINDS_CLASSES, Normalization((0.3,), (0.4,)),
               {"data": "none"})
    return load_model(path)


def kinds_images():
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, size=(2, 1, 12, 12), dtype=np.uint8)
    return [ExploreImage("random 0", pixels[0], 1), ExploreImage("random 1", pixels[1], 3)]


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    """(loaded model, images, page path) of the small model with every kind of layer."""
    folder = tmp_path_factory.mktemp("kinds")
    loaded = kinds_model(folder / "model.npz")
    images = kinds_images()
    saved = dict(explore.CAPS)
    explore.CAPS.update(KINDS_CAPS)
    try:
        page = explore_html(loaded, images, title="kinds")
    finally:
        explore.CAPS.update(saved)
    (folder / "page.html").write_text(page, encoding="utf-8")
    return loaded, images, folder / "page.html"


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """One headless Chromium for this module's browser tests."""
    require_browser()
    driver = WebDriver(tmp_path_factory.mktemp("profile"), width=1400, height=1000)
    yield driver
    driver.close()


@pytest.fixture
def kinds_page(chromium, kinds):
    """The kinds page freshly opened; the console and network logs hold only its own."""
    open_page(chromium, kinds[2])
    return chromium


def open_page(driver, path) -> None:
    """Open the page at ``path`` with the logs emptied first, and wait until
    every value element exists (the page fills them in after it shows)."""
    driver.console(), driver.requests()
    driver.open(path)
    driver.wait_for("return document.documentElement.dataset.ready === 'true'")


def page_requests(driver, page) -> list[str]:
    """The URLs the page at ``page`` asked for, after checking that nothing at
    all went to the network."""
    sent = driver.requests()
    assert not [url for url, _ in sent if not url.startswith(("file:", "chrome:", "data:"))], sent
    return [url for url, document in sent if document == page.as_uri()]


def click(driver, selector: str) -> str:
    """Click the element that matches ``selector`` (from a script) and return #detail's text."""
    return driver.execute(
        "const e = document.querySelector(arguments[0]);"
        "if (!e) return null;"
        "e.click(); return document.getElementById('detail').textContent;", selector)


def shown_number(text: str) -> float:
    match = NUMBER.search(text or "")
    assert match, f"#detail does not end with a number: {text!r}"
    return float(match.group(1))


def selector(layer, pass_, pos) -> str:
    where = (f'[data-index="{pos}"]' if np.isscalar(pos)
             else f'[data-channel="{pos[0]}"][data-y="{pos[1]}"][data-x="{pos[2]}"]')
    return f'[data-layer="{layer}"][data-pass="{pass_}"]{where}'


def check_value(driver, layer, pass_, pos, reference, fast, scale, words=()) -> float:
    """Click one value; its shown number must be the fast path's float32 value
    exactly and the reference's to float32 precision."""
    css = selector(layer, pass_, pos)
    text = click(driver, css)
    assert text is not None, f"no element {css}"
    shown = shown_number(text)
    index = pos if np.isscalar(pos) else tuple(pos)
    fast_value, reference_value = np.asarray(fast)[index], np.asarray(reference)[index]
    assert np.float32(shown) == np.float32(fast_value), (css, shown, fast_value)
    assert abs(shown - reference_value) <= 1e-5 * scale + 1e-4 * abs(reference_value), \
        (css, shown, reference_value)
    for word in words:
        assert word in text, f"{css}: {word!r} not in {text!r}"
    # The terms the detail shows add up to the value (to the 5 digits shown).
    terms = TERMS_SUM.search(text)
    if terms:
        total = float(terms.group(1))
        assert abs(total - shown) <= 1e-4 * abs(shown) + 1e-5 * scale, (css, total, shown)
    return shown


def shown_positions(shape, shown, rng, count=3):
    """``count`` random positions of an array of ``shape`` inside what the page shows."""
    if len(shape) == 1:
        return [int(i) for i in rng.integers(0, shown, count)]
    return [(int(rng.integers(0, shown)), int(rng.integers(0, shape[1])),
             int(rng.integers(0, shape[2]))) for _ in range(count)]


# Words each kind's detail must hold: the tutorial's equation or rule.
FORWARD_WORDS = {Conv2d: ("eq. 4.4", "eq. 4.2"), MaxPool2d: ("max",), AvgPool2d: ("mean",),
                 Linear: ("w·a",), BatchNorm2d: ("√(σ² + ε)",), ReLU: ("max(0",),
                 Sigmoid: ("1 / (1 + e",), Tanh: ("tanh",), Flatten: ("(c·H + y)·W + x",),
                 Dropout: ("evaluation",)}
# The words of δ at a layer's output depend on the layer after it.
BACKWARD_WORDS = {Conv2d: ("eq. 5.3", "expanded for the stride", "180°"),
                  MaxPool2d: ("maximum",), AvgPool2d: ("Kronecker",), Linear: ("Wᵀδ",),
                  BatchNorm2d: ("γ / √(σ² + ε)",),
                  ReLU: ("f′(net)",), Sigmoid: ("f′(net)", "a(1 − a)"),
                  Tanh: ("f′(net)", "1 − a²"), Flatten: ("reorders",), Dropout: ("unchanged",)}


def choose_unit(driver, layer: str, unit: int) -> None:
    """Pick ``unit`` in the chooser of a layer whose weights show one unit at a
    time (nothing happens for a layer that shows them all)."""
    driver.execute("const s = document.querySelector(`select.unit[data-layer='${arguments[0]}']`);"
                   "if (s) { s.value = String(arguments[1]);"
                   "s.dispatchEvent(new Event('change', {bubbles: true})); }", layer, unit)


def kind(layer) -> type:
    """The layer's class, BatchNorm1d counted as the BatchNorm2d it derives from."""
    return BatchNorm2d if isinstance(layer, BatchNorm2d) else type(layer)


def check_every_kind(driver, loaded, pixels, target, rng, layers_shown):
    """Random values of every stage, forward and backward, and random weights and
    biases of every layer with parameters, for the image and target on the page."""
    reference, fast = reference_run(loaded, pixels, target), fast_run(loaded, pixels, target)
    layers = list(loaded.model)
    stages = ["input"] + [str(i) for i in range(len(layers))] + ["output"]
    for pass_ in ("forward", "backward"):
        for key in stages:
            ref = reference[pass_][key]
            shown = layers_shown.get(key, ref.shape[0])
            for pos in shown_positions(ref.shape, shown, rng):
                if pass_ == "forward" and key not in ("input", "output"):
                    words = FORWARD_WORDS[kind(layers[int(key)])]
                elif pass_ == "backward" and key not in ("output", str(len(layers) - 1)):
                    words = BACKWARD_WORDS[kind(layers[0 if key == "input" else int(key) + 1])]
                else:
                    words = ("softmax",) if key == "output" and pass_ == "forward" else ()
                check_value(driver, key, pass_, pos, ref, fast[pass_][key],
                            np.abs(ref).max(), words)
    for index, layer in enumerate(layers):
        if getattr(layer, "weight", None) is None:
            continue
        key = str(index)
        grad = reference["weight"][key]
        shown = layers_shown.get(key, grad.shape[0])
        for _ in range(3):
            unit = int(rng.integers(0, shown))
            # A layer drawn one unit at a time shows the chosen unit's weights.
            choose_unit(driver, key, unit)
            rest = grad[unit].shape
            inner = tuple(int(rng.integers(0, n)) for n in rest)
            if isinstance(layer, Conv2d):
                inner = (int(rng.integers(0, min(rest[0], layers_shown.get(
                    "input" if index == 0 else str(index - 1), rest[0])))),) + inner[1:]
            if isinstance(layer, Linear):
                inner = (int(rng.integers(0, min(rest[0], layers_shown.get(str(index - 1),
                                                                           rest[0])))),)
            flat = int(np.ravel_multi_index((unit,) + inner, grad.shape))
            words = ("Σ",) if not isinstance(layer, Linear) else ("δ aᵀ",)
            check_value(driver, key, "weight", flat, grad.reshape(-1),
                        fast["weight"][key].reshape(-1), np.abs(grad).max(), words)
            check_value(driver, key, "bias", unit, reference["bias"][key],
                        fast["bias"][key], np.abs(reference["bias"][key]).max())
    return reference


def kinds_shown(loaded) -> dict:
    """How many channels or units of each stage the kinds page shows (KINDS_CAPS)."""
    shown = {"input": 1}
    for row in summary_rows(loaded.model, loaded.input_shape):
        cap = KINDS_CAPS["channels"] if len(row.output_shape) == 3 else KINDS_CAPS["units"]
        shown[str(row.index)] = min(row.output_shape[0], cap)
    return shown


# ----------------------------------------------------------------------------
# The page as a file
# ----------------------------------------------------------------------------

def test_page_is_one_self_contained_file(kinds):
    page = kinds[2].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc\s*=", page)
    assert "<link" not in page
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", page)
    assert "@DATA@" not in page and "/*@SCRIPT@*/" not in page
    # The page's own files came in whole.
    for name in ("page.css", "page.js"):
        text = (resources.files("tinyconv.app") / "explore_page" / name).read_text()
        assert text.replace("</", "<\\/") in page


def test_numbers_are_stored_once_as_masks_and_factors(kinds):
    loaded, images, _ = kinds
    description, numbers = explore_data(loaded, images)
    refs = []

    def walk(value):
        if isinstance(value, dict):
            if "s" in value:
                refs.append(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
    walk(description)
    assert any("m" in ref for ref in refs), "no sensitivity map stored with a mask"
    assert any("outer" in ref for ref in refs), "no FC gradient stored as its factors"
    # Every target class of both images fits this small model.
    assert description["stored_targets"] == len(KINDS_CLASSES)
    for entry, image in zip(description["images"], images):
        assert entry["targets"][0] == image.label
        assert sorted(entry["targets"]) == list(range(len(KINDS_CLASSES)))


def test_a_small_budget_keeps_the_first_targets(kinds, monkeypatch):
    loaded, images, _ = kinds
    monkeypatch.setitem(explore.CAPS, "data_bytes", 1000)
    description, _ = explore_data(loaded, images)
    assert description["stored_targets"] == 1
    assert [entry["targets"] for entry in description["images"]] == [[1], [3]]


def test_test_images_are_some_right_some_wrong(kinds):
    loaded = kinds[0]
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(40, 1, 12, 12), dtype=np.uint8)
    predicted = np.argmax(loaded.model.forward(loaded.normalization(pixels)), axis=1)
    labels = np.where(np.arange(40) % 3 == 0, (predicted + 1) % 5, predicted)
    chosen = pick_test_images(loaded, Dataset(pixels, labels, KINDS_CLASSES, "made up"), 5)
    assert len(chosen) == 5
    indices = [int(image.name.split()[-1]) for image in chosen]
    right = [i for i in indices if labels[i] == predicted[i]]
    assert len(right) == 3 and len(indices) - len(right) == 2
    # Right ones of distinct classes where the model gets several classes right.
    assert len({labels[i] for i in right}) == min(3, len(set(labels[labels == predicted])))
    for image, index in zip(chosen, indices):
        assert image.label == labels[index] and np.array_equal(image.pixels, pixels[index])


# ----------------------------------------------------------------------------
# The page in Chromium
# ----------------------------------------------------------------------------

def test_page_loads_without_errors_or_requests(kinds_page, kinds):
    driver = kinds_page
    assert driver.console() == []
    assert page_requests(driver, kinds[2]) == [kinds[2].as_uri()]
    assert driver.execute("return performance.getEntriesByType('resource').length") == 0
    counts = driver.execute("return [document.querySelectorAll('#image option').length,"
                            "document.querySelectorAll('#target option').length,"
                            "document.querySelectorAll('[data-pass]').length]")
    assert counts[:2] == [2, 5] and counts[2] > 1000
    # Each stage names its kind, shapes, parameters and equations; caps are stated.
    text = driver.execute("return document.body.innerText")
    assert "0: Conv2d" in text and "1×12×12 → 4×12×12" in text and "40 parameters" in text
    assert "eq. 4.4" in text and "showing 3 of 4 maps (page cap)" in text
    assert "at most 3 feature maps" in text


def test_every_kind_of_value_matches_the_reference(kinds_page, kinds):
    driver = kinds_page
    loaded, images, _ = kinds
    rng = np.random.default_rng(7)
    check_every_kind(driver, loaded, images[0].pixels, images[0].label, rng, kinds_shown(loaded))
    assert driver.console() == []


def test_a_real_click_and_the_highlighted_receptive_field(kinds_page, kinds):
    driver = kinds_page
    loaded, images, _ = kinds
    driver.click(driver.find(selector("4", "forward", (1, 1, 2))))
    text = driver.execute("return document.getElementById('detail').textContent")
    fast = fast_run(loaded, images[0].pixels, images[0].label)
    assert np.float32(shown_number(text)) == fast["forward"]["4"][1, 1, 2]
    # Output (1, 2) of a 2x2 kernel with stride 2 and padding 1 reads rows 2..3
    # and columns 4..5 of the padded input: rows 1..2, columns 3..4 of layer 3,
    # in the 3 channels the page shows.
    marked = driver.execute(
        "return [...document.querySelectorAll('.hl')].map(e => [e.dataset.layer, e.dataset.pass,"
        " +e.dataset.channel, +e.dataset.y, +e.dataset.x])")
    assert sorted(marked) == sorted(["3", "forward", c, y, x] for c in range(3)
                                    for y in (1, 2) for x in (3, 4))
    selected = driver.execute(
        "return [...document.querySelectorAll('.sel')].map(e => e.dataset.layer)")
    assert selected == ["4"]


def test_changing_target_and_image_changes_the_values(kinds_page, kinds):
    driver = kinds_page
    loaded, images, _ = kinds
    rng = np.random.default_rng(11)
    first = reference_run(loaded, images[0].pixels, images[0].label)
    css = selector("3", "backward", (0, 2, 2))
    before = shown_number(click(driver, css))
    for target in (0, 4):
        click(driver, css)
        driver.execute("const t = document.getElementById('target'); t.value = arguments[0];"
                       "t.dispatchEvent(new Event('change'))", str(target))
        # The open detail follows the target.
        now = shown_number(driver.execute("return document.getElementById('detail').textContent"))
        reference = reference_run(loaded, images[0].pixels, target)
        assert abs(now - reference["backward"]["3"][0, 2, 2]) <= 1e-5 * np.abs(
            reference["backward"]["3"]).max()
        for key, pos in (("0", (1, 5, 5)), ("8", (0, 0, 0)), ("12", 2), ("output", 1),
                         ("input", (0, 3, 4))):
            fast = fast_run(loaded, images[0].pixels, target)
            check_value(driver, key, "backward", pos, reference["backward"][key],
                        fast["backward"][key], np.abs(reference["backward"][key]).max())
        loss = shown_number(driver.execute("return document.getElementById('loss').textContent"))
        assert loss == pytest.approx(-np.log(reference["forward"]["output"][target]), rel=1e-4)
    assert now != before and not np.allclose(first["backward"]["3"], reference["backward"]["3"])
    driver.execute("const s = document.getElementById('image'); s.value = '1';"
                   "s.dispatchEvent(new Event('change'))")
    assert driver.execute("return document.getElementById('target').value") == "3"
    check_every_kind(driver, loaded, images[1].pixels, 3, rng, kinds_shown(loaded))


def test_playground_output_sizes_follow_eq_4_2(kinds_page):
    driver = kinds_page
    settings = [(w1, f, s, p) for w1 in (1, 5, 7, 12, 28) for f in (1, 2, 3, 5)
                for s in (1, 2, 3) for p in (0, 1, 2)]
    results = driver.execute("""
        const out = [];
        for (const [w1, f, s, p] of arguments[0]) {
          const values = {'pg-input': w1, 'pg-kernel': f, 'pg-stride': s, 'pg-padding': p};
          for (const [id, v] of Object.entries(values)) {
            const e = document.getElementById(id); e.value = String(v);
            e.dispatchEvent(new Event('input'));
          }
          out.push([document.getElementById('pg-output').textContent,
                    document.getElementById('pg-formula').textContent,
                    document.querySelectorAll('#pg-out-grid span').length]);
        }
        return out;""", settings)
    for (w1, f, s, p), (output, formula, cells) in zip(settings, results):
        if f > w1 + 2 * p:
            assert output == "none" and "does not fit" in formula
            continue
        w2 = conv_output_size(w1, f, s, p)
        assert output == str(w2), (w1, f, s, p, output)
        assert f"({w1} − {f} + 2·{p})/{s} + 1" in formula and formula.count(str(w2))
        assert cells == w2 * w2
    assert driver.console() == []


def active(driver):
    """What has the keyboard focus: an id, a block, or a tag."""
    return driver.execute("""
        const e = document.activeElement;
        const block = e.closest && e.closest('[data-block]');
        if (block && e.dataset.pass) return 'block ' + block.dataset.block;
        if (e.matches('select.unit')) return 'unit ' + e.dataset.layer;
        return e.id ? '#' + e.id : e.tagName.toLowerCase();""")


def test_keyboard_reaches_every_control(kinds_page):
    driver = kinds_page
    expected = set(driver.execute("""
        return [...document.querySelectorAll('[data-block]')].map(b => 'block ' + b.dataset.block)
          .concat([...document.querySelectorAll('select.unit')].map(s => 'unit ' + s.dataset.layer))
          .concat([...document.querySelectorAll('select, input, button')].filter(e => e.id)
                  .map(e => '#' + e.id));"""))
    assert {"#image", "#target", "#zoom", "#pg-input", "#pg-next", "block 4:weight",
            "unit 4", "block output:forward", "block input:backward"} <= expected
    reached = []
    for _ in range(len(expected) + 20):
        driver.press("Tab")
        reached.append(active(driver))
    assert expected <= set(reached), sorted(expected - set(reached))
    # Arrow keys move inside a map, Enter opens the value.
    driver.execute("document.querySelector('[data-block=\"1:forward\"] [tabindex=\"0\"]').focus()")
    driver.press("ArrowRight", "ArrowRight", "ArrowDown", "PageDown", "Enter")
    focused = driver.execute("const d = document.activeElement.dataset;"
                             "return [d.layer, d.pass, +d.channel, +d.y, +d.x]")
    assert focused == ["1", "forward", 1, 1, 2]
    assert "Layer 1 (Tanh), forward: channel 1, row 1, column 2" in driver.execute(
        "return document.getElementById('detail').textContent")
    # Space opens a weight's gradient.
    driver.execute("document.querySelector('[data-block=\"0:weight\"] [tabindex=\"0\"]').focus()")
    driver.press("ArrowRight", "Space")
    assert "∂E/∂w0,0,0,1" in driver.execute(
        "return document.getElementById('detail').textContent")
    # The playground takes typed numbers and steps with Enter.
    driver.execute("const e = document.getElementById('pg-input'); e.focus(); e.select()")
    driver.press("1", "0")
    assert driver.execute("return document.getElementById('pg-output').textContent") == \
        str(conv_output_size(10, 3, 2, 1))
    driver.execute("document.getElementById('pg-next').focus()")
    driver.press("Enter", "Enter")
    assert driver.execute("return document.getElementById('pg-step-text').textContent") \
        .startswith("step 3 of 25")
    # The target select answers the arrow keys.
    driver.execute("document.getElementById('target').focus()")
    before = driver.execute("return document.getElementById('loss').textContent")
    driver.press("ArrowDown")
    assert driver.execute("return document.getElementById('loss').textContent") != before
    assert driver.console() == []


# ----------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------

def write_png(path, size=(20, 30), colour=200):
    Image.new("L", size, colour).save(path)
    return path


def test_cli_writes_the_page_next_to_the_model(kinds, tmp_path, capsys):
    loaded, _, _ = kinds
    model = tmp_path / "run" / "model.npz"
    model.parent.mkdir()
    model.write_bytes((kinds[2].parent / "model.npz").read_bytes())
    picture = write_png(tmp_path / "shirt.png")
    assert main(["explore", str(model.parent), str(picture)]) == 0
    out = model.parent / "explore.html"
    assert capsys.readouterr().out.strip() == str(out)
    page = out.read_text(encoding="utf-8")
    # The picture prepared as predict prepares it: light background, inverted.
    assert "shirt.png (inverted)" in page
    assert sorted(p.name for p in model.parent.iterdir()) == ["explore.html", "model.npz"]


@pytest.mark.parametrize("case", ["not a model", "unreadable image", "channels",
                                  "missing folder", "no test images"])
def test_cli_bad_input_one_line_exit_2(kinds, tmp_path, capsys, case):
    good = kinds[2].parent / "model.npz"
    out = tmp_path / "page.html"
    args = [str(good), str(write_png(tmp_path / "a.png")), "--out", str(out)]
    if case == "not a model":
        (tmp_path / "bad.npz").write_bytes(b"not a zip at all")
        args[0], expected = str(tmp_path / "bad.npz"), "is not a .npz file"
    elif case == "unreadable image":
        (tmp_path / "b.png").write_text("not a picture")
        args[1], expected = str(tmp_path / "b.png"), "is not a picture tinyconv reads"
    elif case == "channels":
        spec = "INPUT(2,8,8) -> FC(3)"
        save_model(tmp_path / "two.npz", build(spec, rng=0), spec, ["a", "b", "c"],
                   Normalization((0.5, 0.5), (0.2, 0.2)))
        args[0], expected = str(tmp_path / "two.npz"), "takes images of 2 channels"
    elif case == "missing folder":
        out = tmp_path / "nowhere" / "page.html"
        args[3], expected = str(out), "does not exist"
    else:
        save_model(tmp_path / "m.npz", kinds[0].model, KINDS_SPEC, KINDS_CLASSES,
                   kinds[0].normalization, {"data": "mnist"})
        args = [str(tmp_path / "m.npz"), "--data-dir", str(tmp_path), "--out", str(out)]
        expected = "no IMAGE was given"
    if case == "no test images" and load_dataset_found("mnist"):
        pytest.skip("MNIST is installed here, so its test images are found")
    assert main(["explore", *args]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinyconv: error: "), err
    assert expected in lines[0]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".page.html")]


def load_dataset_found(name: str) -> bool:
    try:
        load_dataset(name, "test", download=False)
    except DataNotFound:
        return False
    return True


# ----------------------------------------------------------------------------
# The default preset, trained briefly, through the command line
# ----------------------------------------------------------------------------

@pytest.mark.slow
def test_trained_default_model(fashion_mnist_dir, tmp_path, chromium, capsys):
    train = load_dataset("fashion-mnist", "train", data_dir=fashion_mnist_dir, download=False)
    data, val = train.subset(np.arange(400)), train.subset(np.arange(400, 500))
    spec = PRESETS["default"].spec
    model = build(spec, rng=0)
    normalization = Normalization.fit(data.images)
    fit(model, data, val, epochs=1, batch_size=50, seed=0,
        optimizer=optim.Adam(model.parameters(), lr=2e-3), normalization=normalization,
        out_dir=None, progress=False, log=lambda line: None, spec=spec,
        classes=train.classes)
    save_model(tmp_path / "model.npz", model, spec, train.classes, normalization,
               {"data": "fashion-mnist"})
    out = tmp_path / "explore.html"
    start = time.perf_counter()
    assert main(["explore", str(tmp_path), "--data-dir", str(fashion_mnist_dir)]) == 0
    seconds = time.perf_counter() - start
    assert capsys.readouterr().out.strip() == str(out)
    size = out.stat().st_size
    print(f"default model, 5 test images: {size / 1e6:.2f} MB in {seconds:.2f} s")
    assert size < 15_000_000

    loaded = load_model(tmp_path / "model.npz")
    open_page(chromium, out)
    assert chromium.console() == [] and page_requests(chromium, out) == [out.as_uri()]
    options = chromium.execute("return [...document.querySelectorAll('#image option')]"
                               ".map(o => o.textContent)")
    assert len(options) == 5
    assert any("✓ right" in o for o in options) and any("✗ wrong" in o for o in options)
    assert all("true " in o for o in options)
    # The first test image, its true class: values in the deep layers.
    index = int(options[0].split(":")[0].split()[-1])
    test = load_dataset("fashion-mnist", "test", data_dir=fashion_mnist_dir, download=False)
    pixels, label = test.images[index], int(test.labels[index])
    reference, fast = reference_run(loaded, pixels, label), fast_run(loaded, pixels, label)
    rng = np.random.default_rng(3)
    # δ passed back through the second convolution where it is largest, so
    # that its detail has filters with non-zero windows to rotate.
    largest = tuple(int(i) for i in np.unravel_index(np.abs(reference["backward"]["3"]).argmax(),
                                                     reference["backward"]["3"].shape))
    check_value(chromium, "3", "backward", largest, reference["backward"]["3"],
                fast["backward"]["3"], np.abs(reference["backward"]["3"]).max(),
                ("eq. 5.3", "rot180", "expanded for the stride"))
    for key, pass_, pos in [("3", "backward", (5, 4, 7)), ("0", "backward", (2, 10, 11)),
                            ("6", "forward", (30, 3, 3)), ("9", "forward", 17),
                            ("8", "backward", 100), ("output", "forward", label)]:
        check_value(chromium, key, pass_, pos, reference[pass_][key], fast[pass_][key],
                    np.abs(reference[pass_][key]).max())
    # Layer 9 (1568 -> 128) shows one unit's weights at a time; its gradient
    # is δ aᵀ, stored as its two factors.
    for unit in rng.integers(0, 128, 2):
        choose_unit(chromium, "9", int(unit))
        flat = int(unit) * 1568 + int(rng.integers(0, 1568))
        check_value(chromium, "9", "weight", flat, reference["weight"]["9"].reshape(-1),
                    fast["weight"]["9"].reshape(-1), np.abs(reference["weight"]["9"]).max())
    check_value(chromium, "4", "weight", 1000, reference["weight"]["4"].reshape(-1),
                fast["weight"]["4"].reshape(-1), np.abs(reference["weight"]["4"]).max())
    assert chromium.console() == []
