"""Preparing the user's pictures the way the training images look."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinyconv.data.datasets import load_image_folder
from tinyconv.data.idx import read_idx
from tinyconv.data.images import MAX_PIXELS, prepare_image, require_pillow
from tinyconv.data.loader import Normalization
from tinyconv.models.serialize import save_model
from tinyconv.models.spec import build


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
    with pytest.raises(ValueError, match=r"notes.png is not a picture tinyconv reads \(PNG, JPEG"):
        prepare_image(tmp_path / "notes.png")


def test_missing_pillow_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `import PIL` fail
    with pytest.raises(ImportError, match=r'pip install "tinyconv\[images\]"'):
        require_pillow()


# -- pictures that cannot be read safely ---------------------------------------------------

def png(width: int, height: int, rows: bytes | None = None, *, bit_depth: int = 1) -> bytes:
    """A grayscale PNG written from the format's definition: every chunk with its CRC;
    ``rows`` is the unpacked image data (None: all zero rows at ``bit_depth``)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))

    if rows is None:
        packer, row = zlib.compressobj(9), bytes(1 + (width * bit_depth + 7) // 8)
        data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    else:
        data = zlib.compress(rows)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))


def read_quietly(path, **kwargs):
    """prepare_image, failing the test if Pillow warns: a warning is a second line on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return prepare_image(path, **kwargs)


def test_a_huge_picture_is_refused_in_one_line(tmp_path):
    """The issue's case: 20000x20000 pixels, 400 million, in a small file."""
    path = tmp_path / "big.png"
    path.write_bytes(png(20000, 20000))
    assert path.stat().st_size < 400_000
    with pytest.raises(ValueError) as caught:
        read_quietly(path)
    message = str(caught.value)
    assert message.startswith(f"{path} is too large to read safely (")
    assert message.endswith(f"tinyconv reads pictures of 1 to {MAX_PIXELS:,} pixels")
    assert "\n" not in message


@pytest.mark.parametrize("width, height", [(9000, 9000), (1, MAX_PIXELS + 1)])
def test_a_picture_of_too_many_pixels_is_refused_before_it_is_decoded(tmp_path, width, height):
    # Over tinyconv's limit but under Pillow's own: Pillow would only warn, and decode it.
    path = tmp_path / "large.png"
    path.write_bytes(png(width, height, b""))
    with pytest.raises(ValueError, match=rf"large.png is {width}x{height} pixels; tinyconv reads "
                                         rf"pictures of 1 to {MAX_PIXELS:,} pixels"):
        read_quietly(path)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_an_animated_picture_is_refused(tmp_path, fmt):
    frames = [Image.fromarray(framed(16, 16, 0, value)) for value in (100, 200)]
    path = tmp_path / f"moving.{fmt.lower()}"
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match=r"moving\.\w+ is animated; tinyconv reads a single "
                                         r"picture"):
        read_quietly(path)


def test_16_bit_pixels_are_scaled_to_8_bits(tmp_path):
    # 16-bit gray is v / 257 in 8 bits (65535 -> 255); Pillow's own conversion clips at 255.
    pixels = np.array([[0, 257, 40000, 65535]] * 4, np.uint16)
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    path = tmp_path / "deep.png"
    path.write_bytes(png(4, 4, rows, bit_depth=16))
    image, inverted = read_quietly(path, size=4)
    assert not inverted  # the border's mean is (0 + 1 + 156 + 255) / 4 = 103 < 127.5
    np.testing.assert_array_equal(image[0], [[0, 1, 156, 255]] * 4)


@pytest.mark.parametrize("content, message", [
    (lambda good: good[:len(good) // 2], "is damaged: Pillow could not read it"),
    (lambda good: good[:-20] + bytes(8) + good[-12:], "is damaged: Pillow could not read it"),
    (lambda good: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
     r"is not a picture tinyconv reads \(PNG, JPEG, BMP, GIF or WebP\)"),
    (lambda good: b"", "is not a picture tinyconv reads"),
])
def test_damaged_and_foreign_files_name_the_file_in_one_line(tmp_path, content, message):
    good = (tmp_path / "good.png")
    Image.fromarray(framed(30, 30, 0, 200)).save(good)
    path = tmp_path / "bad.png"
    path.write_bytes(content(good.read_bytes()))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} {message}") as caught:
        read_quietly(path)
    assert "\n" not in str(caught.value)


def test_an_image_folder_names_the_picture_it_cannot_read(tmp_path):
    for name in ("boots", "shirts"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.fromarray(framed(28, 28, 0, 200)).save(tmp_path / "data" / name / "a.png")
    (tmp_path / "data" / "shirts" / "b.png").write_bytes(png(20000, 20000))
    with pytest.raises(ValueError, match=r"shirts/b.png is too large to read safely"):
        load_image_folder(tmp_path / "data")


def _tinyconv(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "tinyconv", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_predict_and_evaluate_report_a_huge_picture_in_one_line(tmp_path):
    spec = "INPUT(1,28,28) -> MAXPOOL(4) -> FC(2)"
    model = tmp_path / "model.npz"
    save_model(model, build(spec, rng=0), spec, ["boots", "shirts"],
               Normalization((0.5,), (0.25,)))
    (tmp_path / "big.png").write_bytes(png(20000, 20000))
    result = _tinyconv("predict", model, "big.png", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.startswith("tinyconv: error: big.png is too large to read safely")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr

    for name in ("boots", "shirts"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.fromarray(framed(28, 28, 0, 200)).save(tmp_path / "data" / name / "a.png")
    (tmp_path / "data" / "shirts" / "b.png").write_bytes(png(20000, 20000))
    result = _tinyconv("evaluate", model, "--data", "data", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("tinyconv: error: data/shirts/b.png is too large to read "
                                    "safely")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
