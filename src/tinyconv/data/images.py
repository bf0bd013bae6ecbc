"""Turning a picture file into an input the way Fashion-MNIST's images look.

Fashion-MNIST's (and MNIST's) images are light objects on a black
background, 28x28, with the object filling the frame. A photo of a shoe on a
white table is the opposite, and any size. :func:`prepare_image` brings a
picture to the dataset's look, in this order:

1. open it with Pillow, turn it upright by its EXIF orientation, and lay a
   transparent picture on white (a drawing with no background reads as ink
   on paper);
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

Pillow is an optional dependency (``pip install "tinyconv[images]"``); it is
imported only here, when an image is opened.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..checks import pair

__all__ = ["prepare_image", "require_pillow", "IMAGE_SUFFIXES"]

# File name endings read as images in an image folder dataset.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


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
    inverted. Raises ``FileNotFoundError`` if there is no such file and
    ``ValueError`` if the file is not an image Pillow can read.
    """
    height, width = pair(size, "size", 1)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    Image = require_pillow()
    from PIL import ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as opened:
            picture = ImageOps.exif_transpose(opened)
            picture.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{path} is not an image Pillow can read ({error})") from None

    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        rgba = picture.convert("RGBA")
        picture = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        picture.alpha_composite(rgba)
    picture = picture.convert("L" if channels == 1 else "RGB")

    pixels = np.asarray(picture, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    gray = np.asarray(picture.convert("L"), dtype=np.float64)
    inverted = bool(_border(gray).mean() > 127.5)
    if inverted:
        pixels = 255 - pixels
    background = tuple(int(round(v)) for v in _border(pixels.astype(np.float64)).mean(axis=0))

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


def _border(pixels: np.ndarray) -> np.ndarray:
    """The outermost rows and columns of an (H, W) or (H, W, C) array, as (K,) or (K, C)."""
    rest = pixels.shape[2:]
    return np.concatenate([pixels[0].reshape(-1, *rest), pixels[-1].reshape(-1, *rest),
                           pixels[:, 0].reshape(-1, *rest), pixels[:, -1].reshape(-1, *rest)])
