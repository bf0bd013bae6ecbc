"""Turning a picture file into an input the way Fashion-MNIST's images look.

Fashion-MNIST's (and MNIST's) images are light objects on a black
background, 28x28, with the object filling the frame. A photo of a shoe on a
white table is the opposite, and any size. :func:`prepare_image` brings a
picture to the dataset's look, in this order:

1. open it with Pillow, turn it upright by its EXIF orientation, and lay a
   transparent picture on white (a drawing with no background reads as ink
   on paper); 16-bit pixels are scaled to 8 bits (v -> v / 257);
2. convert it to grayscale (``channels=1``) or RGB (``channels=3``);
3. decide whether the background is light: the mean of the grayscale
   picture's border pixels (its outermost rows and columns) is above 127.5,
   the middle of 0..255. If so, invert every pixel (v -> 255 - v), so the
   object becomes light on dark like the training images;
4. shrink or enlarge it to fit inside ``size``, keeping its aspect ratio;
5. centre it on a canvas of ``size`` filled with the background colour (the
   border's mean colour after step 3), so the padding looks like the border.

The same function prepares a folder of the user's own images for training
(:func:`tinyconv.data.datasets.load_dataset`) and each picture given to
``tinyconv predict``, so a model sees its inputs the way it was trained.

Only pictures that can be read safely are read: a PNG, JPEG, BMP, GIF or
WebP file of at most :data:`MAX_PIXELS` pixels (a 388 KB PNG can declare
20000x20000 pixels, 400 million, and would fill the memory), one frame, in
a pixel mode with a known range. Anything else, and any file Pillow cannot
decode (truncated, damaged, not a picture), gives a ``ValueError`` of one
line that names the file.

Pillow is an optional dependency (``pip install "tinyconv[images]"``); it is
imported only here, when an image is opened.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from ..checks import pair

__all__ = ["prepare_image", "require_pillow", "IMAGE_SUFFIXES", "READ_FORMATS", "MAX_PIXELS"]

# File name endings read as images in an image folder dataset.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: The picture formats read, by Pillow's names; others are refused unopened
#: (Pillow's EPS reader, for one, runs Ghostscript on the file).
READ_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
#: The most pixels a picture may have: 64 megapixels, 256 MB as RGBA.
MAX_PIXELS = 1 << 26


def require_pillow():
    """Import and return ``PIL.Image``, or raise an ImportError that says how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError('reading image files needs Pillow, which is not installed; '
                          'install it with: pip install "tinyconv[images]"') from None
    return Image


def prepare_image(path, size=(28, 28), channels: int = 1) -> tuple[np.ndarray, bool]:
    """Read the picture at ``path`` and prepare it like a dataset image (steps above).

    ``size`` is an int or an (H, W) pair; ``channels`` is 1 (grayscale) or 3 (RGB).

    Returns ``(image, inverted)``: ``image`` is uint8 of shape (C, H, W) and
    ``inverted`` says whether the picture had a light background and was
    inverted. Raises ``FileNotFoundError`` if there is no such file and a
    one-line ``ValueError`` naming the file if it cannot be read safely (see
    the module docstring).
    """
    height, width = pair(size, "size", 1)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    Image = require_pillow()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    picture = _read_picture(path, "L" if channels == 1 else "RGB", Image)

    pixels = np.asarray(picture, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    # Only the border is taken to float: a whole picture in float64 is 8 bytes a pixel.
    gray = np.asarray(picture.convert("L"), dtype=np.uint8)
    inverted = bool(_border(gray).astype(np.float64).mean() > 127.5)
    if inverted:
        pixels = 255 - pixels
    background = tuple(int(round(v)) for v in _border(pixels).astype(np.float64).mean(axis=0))

    # Step 4: the largest size inside (height, width) with the picture's aspect ratio.
    h, w = pixels.shape[:2]
    scale = min(height / h, width / w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    mode = "L" if channels == 1 else "RGB"
    fitted = Image.fromarray(np.ascontiguousarray(pixels[:, :, 0] if channels == 1 else pixels))
    fitted = fitted.resize((new_w, new_h), Image.Resampling.LANCZOS)

    canvas = Image.new(mode, (width, height), background[0] if channels == 1 else background)
    canvas.paste(fitted, ((width - new_w) // 2, (height - new_h) // 2))
    image = np.asarray(canvas, dtype=np.uint8).reshape(height, width, channels)
    return np.ascontiguousarray(image.transpose(2, 0, 1)), inverted


class _Unsafe(Exception):
    """A picture refused before it is decoded; the message completes "<path> ..."."""


def _read_picture(path: Path, mode: str, Image):
    """The picture at ``path``, upright, in ``mode`` ("L" or "RGB") (step 1 and 2).

    A ValueError naming ``path`` if it cannot be read safely.
    """
    from PIL import ImageOps, UnidentifiedImageError

    file_size = path.stat().st_size
    if file_size > 4 * MAX_PIXELS + (1 << 20):  # an uncompressed RGBA picture, and its header
        raise ValueError(f"{path} is {file_size:,} bytes, larger than any picture tinyconv "
                         f"reads ({MAX_PIXELS:,} pixels at most)")
    try:
        with warnings.catch_warnings():
            # Pillow warns on stderr of oddities it reads past and of large
            # pictures, which the size check below refuses itself.
            warnings.simplefilter("ignore")
            # From memory: a damaged length field then makes Pillow read what
            # is there, where a file's read(n) first allocates all n bytes.
            with Image.open(io.BytesIO(path.read_bytes()), formats=READ_FORMATS) as opened:
                width, height = opened.size
                if width * height > MAX_PIXELS or not width or not height:
                    raise _Unsafe(f"is {width}x{height} pixels; tinyconv reads pictures of 1 to "
                                  f"{MAX_PIXELS:,} pixels: shrink it first")
                if getattr(opened, "is_animated", False):
                    raise _Unsafe("is animated; tinyconv reads a single picture: save the "
                                  "frame you mean as a PNG")
                picture = ImageOps.exif_transpose(opened)
                picture.load()
            if picture.mode.startswith("I;16") or picture.mode == "I":
                # 16-bit pixels (older Pillow opens a 16-bit PNG as "I"): v -> round(v / 257),
                # 65535 -> 255, in integers ((v + 128) // 257 rounds the same).
                values = np.asarray(picture).astype(np.uint32)
                picture = Image.fromarray(((values + 128) // 257).astype(np.uint8))
            if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
                rgba = picture.convert("RGBA")
                picture = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                picture.alpha_composite(rgba)
            return picture.convert(mode)
    except _Unsafe as error:
        raise ValueError(f"{path} {error}") from None
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not a picture tinyconv reads (PNG, JPEG, BMP, GIF or "
                         "WebP)") from None
    except Image.DecompressionBombError as error:  # more pixels than Pillow opens at all
        raise ValueError(f"{path} is too large to read safely ({_one_line(error)}); tinyconv "
                         f"reads pictures of 1 to {MAX_PIXELS:,} pixels") from None
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow's decoders raise many kinds on bad data
        raise ValueError(f"{path} is damaged: Pillow could not read it "
                         f"({type(error).__name__}: {_one_line(error)})") from None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _border(pixels: np.ndarray) -> np.ndarray:
    """The outermost rows and columns of an (H, W) or (H, W, C) array, as (K,) or (K, C)."""
    rest = pixels.shape[2:]
    return np.concatenate([pixels[0].reshape(-1, *rest), pixels[-1].reshape(-1, *rest),
                           pixels[:, 0].reshape(-1, *rest), pixels[:, -1].reshape(-1, *rest)])
