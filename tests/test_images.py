"""Preparing the user's pictures the way the training images look."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinyconv.data.images import prepare_image, require_pillow
from tinyconv.data.idx import read_idx


def save(tmp_path: Path, pixels: np.ndarray, name: str = "picture.png") -> Path:
    path = tmp_path / name
    Image.fromarray(pixels).save(path)
    return path


def framed(height: int, width: int, background: int, inside: int) -> np.ndarray:
    """A picture of ``inside`` with a 2-pixel frame of ``background``."""
    pixels = np.full((height, width), background, np.uint8)
    pixels[2:-2, 2:-2] = inside
    return pixels


def bright_span(mask_1d: np.ndarray) -> tuple[int, int]:
    where = np.flatnonzero(mask_1d)
    return int(where[0]), int(where[-1])


def test_dark_background_is_kept_and_tall_aspect_is_kept(tmp_path):
    # 40 high, 20 wide: fitted into 28x28 it becomes 28x14, centred at columns 7..20.
    image, inverted = prepare_image(save(tmp_path, framed(40, 20, 0, 220)))
    assert not inverted
    assert image.shape == (1, 28, 28) and image.dtype == np.uint8
    bright = image[0] > 110
    left, right = bright_span(bright.any(axis=0))
    top, bottom = bright_span(bright.any(axis=1))
    assert 7 <= left and right <= 20 and right - left + 1 >= 11
    assert bottom - top + 1 >= 24
    assert image[0, :, :7].max() == 0 and image[0, :, 21:].max() == 0
    assert image[0, 14, 14] == 220


def test_light_background_is_inverted_and_wide_aspect_is_kept(tmp_path):
    # 30 high, 60 wide, black object on white: becomes 14x28, white object on black.
    image, inverted = prepare_image(save(tmp_path, framed(30, 60, 255, 0)))
    assert inverted
    bright = image[0] > 128
    top, bottom = bright_span(bright.any(axis=1))
    assert 7 <= top and bottom <= 20
    assert image[0, :7].max() == 0 and image[0, 21:].max() == 0
    assert image[0, 14, 14] == 255


def test_background_colour_fills_the_canvas(tmp_path):
    # A mid-dark grey border (60) is the background; the padding takes its colour.
    image, inverted = prepare_image(save(tmp_path, framed(10, 30, 60, 200)))
    assert not inverted
    assert np.all(image[0, :5] == 60) and np.all(image[0, -5:] == 60)


def test_rgb_and_sizes(tmp_path):
    pixels = np.full((12, 12, 3), 255, np.uint8)
    pixels[3:9, 3:9] = (255, 0, 0)  # a red square on white
    path = save(tmp_path, pixels)
    image, inverted = prepare_image(path, size=(6, 6), channels=3)
    assert inverted and image.shape == (3, 6, 6)
    np.testing.assert_array_equal(image[:, 3, 3], [0, 255, 255])  # red, inverted: cyan
    np.testing.assert_array_equal(image[:, 0, 0], [0, 0, 0])
    gray, _ = prepare_image(path, size=16)
    assert gray.shape == (1, 16, 16)
    with pytest.raises(ValueError, match="channels must be 1"):
        prepare_image(path, channels=2)
    with pytest.raises(ValueError, match="size must be positive"):
        prepare_image(path, size=(0, 28))


def test_transparent_drawing_reads_as_ink_on_paper(tmp_path):
    pixels = np.zeros((20, 20, 4), np.uint8)  # fully transparent black
    pixels[5:15, 9:11] = (0, 0, 0, 255)  # an opaque black stroke
    image, inverted = prepare_image(save(tmp_path, pixels))
    assert inverted
    assert image[0, 14, 14] > 200 and image[0, 0, 0] == 0


def test_a_fashion_mnist_image_comes_back_unchanged(tmp_path, fashion_mnist_dir):
    original = read_idx(fashion_mnist_dir / "t10k-images-idx3-ubyte.gz")[0]
    image, inverted = prepare_image(save(tmp_path, original))
    assert not inverted
    np.testing.assert_array_equal(image[0], original)
    # The same picture as dark ink on white paper is inverted back to the original.
    image, inverted = prepare_image(save(tmp_path, 255 - original, "negative.png"))
    assert inverted
    np.testing.assert_array_equal(image[0], original)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="image file not found: .*nothing.png"):
        prepare_image(tmp_path / "nothing.png")
    (tmp_path / "notes.png").write_text("this is text")
    with pytest.raises(ValueError, match="notes.png is not an image Pillow can read"):
        prepare_image(tmp_path / "notes.png")


def test_missing_pillow_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `import PIL` fail
    with pytest.raises(ImportError, match=r'pip install "tinyconv\[images\]"'):
        require_pillow()
