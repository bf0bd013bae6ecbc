"""Pictures: each file opens, has its size and panels, and shows the right numbers.

The fixture is a real run directory: the ``tutorial`` preset trained for one
epoch on 600 Fashion-MNIST images (a few seconds), saved as ``tinyconv
train`` saves it. Panel contents are checked against independent numbers:
the weights as stored, feature maps from the tutorial's loops
(:mod:`tinyconv.tutorial.reference`), and the dataset's own pixels.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TEST_IMAGES
from tinyconv import reference
from tinyconv.data.datasets import load_dataset
from tinyconv.nn.layers import Conv2d
from tinyconv.models.serialize import load_model
from tinyconv.training.evaluation import evaluate, predict_proba
from tinyconv.training.history import History
from tinyconv.app.visualize import (Picture, confusion_picture, curves_picture, feature_pictures,
                                filter_pictures, mistakes_picture, model_mistakes)



@pytest.fixture(scope="module")
def run_dir(tutorial_run):
    return tutorial_run


@pytest.fixture(scope="module")
def loaded(run_dir):
    return load_model(run_dir / "model.npz")


@pytest.fixture(scope="module")
def test_set():
    return load_dataset("fashion-mnist", "test").subset(np.arange(TEST_IMAGES))


def opened(picture: Picture) -> np.ndarray:
    """The picture's PNG decoded by Pillow as RGB (H, W, 3), after checking its size."""
    image = Image.open(io.BytesIO(picture.png))
    assert image.format == "PNG"
    assert image.size == picture.size
    return np.asarray(image.convert("RGB")).astype(int)


def check_panels(picture: Picture, pixels: np.ndarray, count: int) -> None:
    """``count`` panels in the grid, inside the picture, apart from each other, not blank."""
    rows, cols = picture.grid
    assert len(picture.boxes) == count
    assert (rows - 1) * cols < count <= rows * cols
    height, width = pixels.shape[:2]
    for k, (left, top, right, bottom) in enumerate(picture.boxes):
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
        for other in picture.boxes[k + 1:]:
            apart = (right <= other[0] or other[2] <= left
                     or bottom <= other[1] or other[3] <= top)
            assert apart, f"panels {picture.boxes[k]} and {other} overlap"
    assert pixels.std() > 0


def block_centres(pixels: np.ndarray, box, shape) -> np.ndarray:
    """The colour at the centre of each of the (h, w) blocks a panel's data was
    enlarged into: (h, w, 3)."""
    left, top, right, bottom = box
    h, w = shape
    zoom_y, zoom_x = (bottom - top) / h, (right - left) / w
    assert zoom_y == zoom_x and zoom_y == int(zoom_y), "panels are whole-pixel blocks"
    ys = top + (np.arange(h) * zoom_y + zoom_y // 2).astype(int)
    xs = left + (np.arange(w) * zoom_x + zoom_x // 2).astype(int)
    return pixels[np.ix_(ys, xs)]


def expected_gray(values, low, high) -> np.ndarray:
    """The documented mapping: low -> black (0), high -> white (255)."""
    return np.round((np.asarray(values, np.float64) - low) / (high - low) * 255)


def test_filters_one_panel_per_filter_and_input_channel(loaded, tmp_path):
    convs = [(i, layer) for i, layer in enumerate(loaded.model) if isinstance(layer, Conv2d)]
    pictures = filter_pictures(loaded.model)
    assert [p.name for p in pictures] == [f"filters-layer{i}" for i, _ in convs]
    for picture, (_, layer) in zip(pictures, convs):
        weight = layer.weight.data
        filters, channels, kh, kw = weight.shape
        pixels = opened(picture)
        check_panels(picture, pixels, filters * channels)
        if channels > 1:
            assert picture.grid == (filters, channels)
        limit = np.abs(weight).max()
        for k, box in enumerate(picture.boxes):
            f, c = divmod(k, channels)
            centres = block_centres(pixels, box, (kh, kw))
            assert np.all(centres[..., 0] == centres[..., 2]), "filters are drawn in gray"
            assert np.abs(centres[..., 0] - expected_gray(weight[f, c], -limit, limit)).max() <= 1
        path = picture.save(tmp_path)
        with Image.open(path) as image:
            assert image.size == picture.size


def test_feature_maps_are_the_tutorial_layers_outputs(loaded, test_set):
    image = test_set.images[3]
    pictures = feature_pictures(loaded.model, image, loaded.normalization, "test image 3")
    assert [p.name for p in pictures] == ["features-input", "features-layer0",
                                          "features-layer2", "features-layer3",
                                          "features-layer5"]
    pixels = opened(pictures[0])
    check_panels(pictures[0], pixels, 1)
    assert np.array_equal(block_centres(pixels, pictures[0].boxes[0], (28, 28))[..., 0],
                          image[0])

    # The tutorial preset: CONV(3,5,pad=2) ReLU MAXPOOL(2) CONV(5,5,pad=2) ReLU MAXPOOL(2),
    # computed here with the tutorial's loops.
    conv1, conv2 = loaded.model[0], loaded.model[3]
    x = loaded.normalization(image[None])[0].astype(np.float64)
    a1 = reference.conv_forward(x, conv1.weight.data, conv1.bias.data, padding=2,
                                activation=reference.relu)
    p1 = reference.max_pool_forward(a1, 2)
    a2 = reference.conv_forward(p1, conv2.weight.data, conv2.bias.data, padding=2,
                                activation=reference.relu)
    p2 = reference.max_pool_forward(a2, 2)
    for picture, maps in zip(pictures[1:], (a1, p1, a2, p2)):
        pixels = opened(picture)
        check_panels(picture, pixels, len(maps))
        low, high = maps.min(), maps.max()
        for box, feature_map in zip(picture.boxes, maps):
            centres = block_centres(pixels, box, feature_map.shape)[..., 0]
            assert np.abs(centres - expected_gray(feature_map, low, high)).max() <= 1


def test_confusion_matrix_cells_darker_for_larger_shares(loaded, test_set):
    result = evaluate(loaded.model, test_set, loaded.normalization)
    picture = confusion_picture(result.confusion, loaded.classes)
    pixels = opened(picture)
    check_panels(picture, pixels, 100)
    assert picture.grid == (10, 10)
    shares = (result.confusion / result.confusion.sum(axis=1, keepdims=True)).ravel()
    # A cell's corner is clear of its number: its shade alone.
    brightness = np.array([pixels[top + 3, left + 3].sum() for left, top, _, _ in picture.boxes])
    for i in range(100):
        for j in range(100):
            if shares[i] > shares[j] + 0.05:
                assert brightness[i] < brightness[j]


def test_mistakes_show_the_misclassified_images_themselves(loaded, test_set):
    probabilities = predict_proba(loaded.model, loaded.normalization(test_set.images))
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != test_set.labels)
    assert len(wrong) > 0
    picture = model_mistakes(loaded.model, loaded.normalization, test_set, predicted,
                             loaded.classes, limit=10)
    pixels = opened(picture)
    check_panels(picture, pixels, min(10, len(wrong)))
    for box, index in zip(picture.boxes, wrong):
        centres = block_centres(pixels, box, (28, 28))[..., 0]
        assert np.array_equal(centres, test_set.images[index, 0])


def test_mistakes_picture_needs_a_mistake(test_set):
    labels = test_set.labels[:5]
    with pytest.raises(ValueError, match="no misclassified image"):
        mistakes_picture(test_set.images[:5], labels, labels, np.ones(5), ["a"] * 10)


def test_curves_two_panels_with_training_and_validation_lines(run_dir):
    history = History.load(run_dir)
    history.append(dict(history[0], epoch=2, train_loss=0.5, val_loss=0.6))
    picture = curves_picture(history)
    pixels = opened(picture)
    check_panels(picture, pixels, 2)
    for left, top, right, bottom in picture.boxes:
        panel = pixels[top:bottom, left:right]
        for colour in ((0x1f, 0x77, 0xb4), (0xd6, 0x27, 0x28)):
            assert np.any(np.all(panel == colour, axis=-1)), f"no line of colour {colour}"


def tinyconv(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tinyconv", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_draws_every_picture_of_a_run(run_dir, tmp_path):
    out = tmp_path / "pictures"
    done = tinyconv("visualize", run_dir, "--limit-test", TEST_IMAGES, "--index", 7,
                    "--out", out)
    assert done.returncode == 0, done.stderr
    written = done.stdout.split()
    names = sorted(path.rsplit("/", 1)[1] for path in written)
    assert names == sorted(["curves.png", "filters-layer0.png", "filters-layer3.png",
                            "features-input.png", "features-layer0.png",
                            "features-layer2.png", "features-layer3.png",
                            "features-layer5.png", "confusion.png", "mistakes.png"])
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert np.asarray(image.convert("L")).std() > 0
    assert sorted(p.name for p in out.iterdir()) == names, "no temporary files left behind"


def test_cli_feature_maps_of_the_users_picture(run_dir, tmp_path):
    drawing = np.full((60, 40), 255, np.uint8)
    drawing[10:50, 12:28] = 0  # a dark bar on white paper
    Image.fromarray(drawing).save(tmp_path / "bar.png")
    done = tinyconv("visualize", run_dir / "model.npz", "--what", "features", "--image",
                    tmp_path / "bar.png", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == 5
    with Image.open(tmp_path / "features-input.png") as image:
        assert np.asarray(image.convert("L")).std() > 0


@pytest.mark.parametrize("case", ["not a model", "index out of range", "unwritable",
                                  "refused by the file system", "no history"])
def test_cli_bad_input_one_line_exit_2(run_dir, tmp_path, case):
    model = run_dir / "model.npz"
    if case == "not a model":
        (tmp_path / "fake.npz").write_text("not a model")
        args = ["visualize", tmp_path / "fake.npz", "--what", "filters"]
        expected = "not a .npz file"
    elif case == "index out of range":
        args = ["visualize", model, "--what", "features", "--limit-test", 50,
                "--index", 50, "--out", tmp_path]
        expected = "index 50 is out of range"
    elif case == "unwritable":
        (tmp_path / "a_file").write_text("")
        args = ["visualize", model, "--what", "filters", "--out", tmp_path / "a_file" / "x"]
        expected = "cannot write to"
    elif case == "refused by the file system":
        # Its permission bits let root write, but /proc makes no files: only
        # trying to create one finds out. (Tests run as root, so chmod would not do.)
        if not Path("/proc/self").is_dir():
            pytest.skip("no /proc on this system")
        args = ["visualize", model, "--what", "filters", "--out", "/proc"]
        expected = "cannot write to /proc: a file cannot be created there"
    else:
        args = ["visualize", tmp_path, "--what", "curves"]
        expected = "no history"
    done = tinyconv(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinyconv: error: "), done.stderr
    assert expected in lines[0]
    assert not list(tmp_path.glob("*.png"))



def test_cli_filters_need_no_test_images(run_dir, tmp_path):
    done = tinyconv("visualize", run_dir, "--what", "filters", "--data", tmp_path / "nowhere",
                    "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["filters-layer0.png",
                                                              "filters-layer3.png"]
