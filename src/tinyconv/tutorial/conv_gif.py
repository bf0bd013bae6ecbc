"""The conv layer's forward pass as an animated GIF, like the tutorial's Figure 2.

Every number drawn is computed by :mod:`tinyconv.tutorial.reference`; the
arrays are read as :mod:`tinyconv.tutorial.explain` reads them. Needs Pillow
(``tinyconv[images]``).
"""

from __future__ import annotations

import io

import numpy as np

from . import reference as R
from ..data.images import require_pillow
from ..fileio import atomic_write_bytes
from .explain import TUTORIAL_FILTER, TUTORIAL_IMAGE, conv_example, fmt, index_text

__all__ = ["conv_gif"]


CELL = 40          # pixels per grid cell (at least; wider for long numbers)
MARGIN = 20        # pixels around the panels and between them
FRAME_MS = 700     # how long each frame shows

_WHITE, _INK, _GRID = (255, 255, 255), (30, 30, 30), (170, 170, 170)
_PADDING, _WINDOW, _EDGE = (225, 225, 225), (255, 224, 150), (220, 60, 30)
_FILTER, _DONE, _NEW, _EMPTY = (205, 225, 250), (215, 240, 215), (120, 210, 120), (245, 245, 245)


def conv_gif(path, x=TUTORIAL_IMAGE, filters=TUTORIAL_FILTER, biases=0.0, stride=1,
             padding=0, activation: str = "relu") -> int:
    """Draw the forward pass as an animated GIF at ``path``, like the tutorial's Figure 2.

    One frame per output value, N·H2·W2 frames in all, filter after filter:
    the window the filter covers is highlighted over the (zero-padded) input,
    the filter is drawn beside it, and the feature map fills in cell by cell
    with the value just computed marked. Channels are stacked top to bottom.
    The file is written atomically. Needs Pillow (``tinyconv[images]``).

    Arguments as :func:`explain_conv`. Returns the number of frames.
    """
    x, filters, biases, f, feature_maps, (sh, sw), (ph, pw), x_padded = conv_example(
        x, filters, biases, stride, padding, activation)
    try:
        Image = require_pillow()
    except ImportError:
        raise ImportError('--gif needs Pillow, which is not installed; install it with: '
                          'pip install "tinyconv[images]"') from None
    from PIL import ImageDraw

    font = _font(16)
    numbers = [fmt(v) for v in np.concatenate([x_padded.ravel(), filters.ravel(),
                                               feature_maps.ravel()])]
    cell = max(CELL, max(font.getbbox(text)[2] for text in numbers) + 10)
    depth, hp, wp = x_padded.shape
    n_filters, _, kh, kw = filters.shape
    _, h2, w2 = feature_maps.shape
    column_x = [MARGIN, 2 * MARGIN + wp * cell, 3 * MARGIN + (wp + kw) * cell]
    title_height, caption_height = 28, 36
    stack = depth * hp * cell + (depth - 1) * MARGIN
    width = column_x[2] + w2 * cell + MARGIN
    height = MARGIN + title_height + max(stack, h2 * cell) + caption_height + MARGIN

    frames = []
    for k in range(n_filters):
        for i in range(h2):
            for j in range(w2):
                image = Image.new("RGB", (width, height), _WHITE)
                draw = ImageDraw.Draw(image)
                top = MARGIN + title_height
                titles = ["input" + (" (zero-padded)" if ph or pw else ""),
                          f"filter {k}" if n_filters > 1 else "filter",
                          f"feature map {k}" if n_filters > 1 else "feature map"]
                for left, title in zip(column_x, titles):
                    draw.text((left, MARGIN), title, fill=_INK, font=font)
                for d in range(depth):
                    y = top + d * (hp * cell + MARGIN)
                    _draw_input(draw, font, x_padded[d], (column_x[0], y), cell, (ph, pw),
                                (i * sh, j * sw, kh, kw))
                    _draw_grid(draw, font, filters[k, d], (column_x[1], y), cell,
                               lambda r, c: _FILTER)
                done = i * w2 + j

                def colour(r, c):
                    return _NEW if r * w2 + c == done else _DONE if r * w2 + c < done else _EMPTY

                _draw_grid(draw, font, feature_maps[k], (column_x[2], top), cell, colour,
                           show=lambda r, c: r * w2 + c <= done)
                label = index_text(k, i, j) if n_filters > 1 else index_text(i, j)
                net = R.conv_at(x_padded, filters[k], biases[k], i, j, (sh, sw))
                caption = f"a[{label}] = " + (f"{activation}({fmt(net)}) = " if f else "") \
                    + fmt(feature_maps[k, i, j])
                draw.text((MARGIN, height - MARGIN - caption_height + 8), caption, fill=_INK,
                          font=font)
                frames.append(image)

    # One palette for every frame, from the first and the last (between them they hold
    # every colour drawn): mapping onto it is ~50x faster than quantising each frame.
    both = Image.new("RGB", (2 * width, height))
    both.paste(frames[0], (0, 0))
    both.paste(frames[-1], (width, 0))
    palette = both.quantize(colors=256)
    frames = [frame.quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:],
                   duration=FRAME_MS, loop=0)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as error:
        raise OSError(error.errno, f"cannot write the GIF: {error.strerror}",
                      str(path)) from None
    return len(frames)


def _font(size: int):
    """Pillow's built-in font at ``size`` pixels (a fixed small bitmap before Pillow 10.1)."""
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def _draw_grid(draw, font, array, origin, cell, colour, show=lambda r, c: True) -> None:
    """A 2-D array as a grid of cells, each filled with ``colour(r, c)`` and its number."""
    left, top = origin
    for r, row in enumerate(array):
        for c, value in enumerate(row):
            box = (left + c * cell, top + r * cell, left + (c + 1) * cell, top + (r + 1) * cell)
            draw.rectangle(box, fill=colour(r, c), outline=_GRID)
            if show(r, c):
                text = fmt(value)
                x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
                draw.text(((box[0] + box[2] - x1 - x0) / 2, (box[1] + box[3] - y1 - y0) / 2),
                          text, fill=_INK, font=font)


def _draw_input(draw, font, channel, origin, cell, padding, window) -> None:
    """One padded input channel, its padding shaded, the filter's window outlined."""
    (ph, pw), (row, col, kh, kw) = padding, window
    height, width = channel.shape

    def colour(r, c):
        if row <= r < row + kh and col <= c < col + kw:
            return _WINDOW
        inside = ph <= r < height - ph and pw <= c < width - pw
        return _WHITE if inside else _PADDING

    _draw_grid(draw, font, channel, origin, cell, colour)
    left, top = origin
    draw.rectangle((left + col * cell, top + row * cell, left + (col + kw) * cell,
                    top + (row + kh) * cell), outline=_EDGE, width=3)
