"""A progress bar for one pass over the training images.

On a terminal the bar redraws itself in place (``\\r``) with the images done,
the running metrics, images per second, the time elapsed and the time left::

    epoch 2/10 [#########...........]  45%  24576/54000  loss 0.4123  acc 85.1%  2210 img/s  00:11<00:13

When the output is not a terminal (a log file, CI) redrawing would fill the
file with partial lines, so the bar stays silent until :meth:`ProgressBar.close`
and then writes one plain line::

    epoch 2/10: 54000 images  loss 0.4123  acc 85.1%  2210 img/s  24.4 s
"""

from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar"]

#: Redraw at most this often (seconds): redrawing per batch would cost time.
REDRAW_INTERVAL = 0.1
BAR_WIDTH = 20


def _clock(seconds: float) -> str:
    """``mm:ss`` (or ``h:mm:ss`` past an hour)."""
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def _format_metric(name: str, value) -> str:
    """``acc``-like metrics (fractions) as percentages, others with 4 decimals."""
    if isinstance(value, float):
        return f"{name} {value:.1%}" if name.startswith("acc") else f"{name} {value:.4f}"
    return f"{name} {value}"


class ProgressBar:
    """Progress over ``total`` items (images), described by ``desc``.

    Args:
        total: how many items the pass has (a positive int).
        desc: the label in front, e.g. ``"epoch 2/10"``.
        stream: where to write; a terminal (``stream.isatty()``) gets the
            redrawn bar, anything else one line at :meth:`close`.

    ``update(n, **metrics)`` records ``n`` more items done and the current
    metrics (``loss=0.41, acc=0.85``: floats named ``acc...`` print as
    percentages). ``close()`` ends the bar; it is also a context manager.
    """

    def __init__(self, total: int, desc: str = "", stream=None):
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"total must be a positive int, got {total!r}")
        self.total = total
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.interactive = bool(isatty and isatty())
        self.done = 0
        self.metrics: dict = {}
        self._start = time.perf_counter()
        self._last_draw = -REDRAW_INTERVAL
        self._closed = False

    def update(self, n: int, **metrics) -> None:
        """Count ``n`` more items and remember the latest ``metrics``."""
        self.done += n
        self.metrics.update(metrics)
        if self.interactive:
            now = time.perf_counter() - self._start
            if now - self._last_draw >= REDRAW_INTERVAL or self.done >= self.total:
                self._draw(now)
                self._last_draw = now

    def _rate(self, elapsed: float) -> float:
        return self.done / elapsed if elapsed > 0 else 0.0

    def _metrics_text(self) -> str:
        return "  ".join(_format_metric(name, value) for name, value in self.metrics.items())

    def _draw(self, elapsed: float) -> None:
        fraction = min(self.done / self.total, 1.0)
        filled = int(round(fraction * BAR_WIDTH))
        rate = self._rate(elapsed)
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        parts = [f"{self.desc} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}]",
                 f"{fraction:4.0%}", f"{self.done}/{self.total}", self._metrics_text(),
                 f"{rate:.0f} img/s", f"{_clock(elapsed)}<{_clock(left)}"]
        # \x1b[K clears what a longer previous line left on the right.
        self.stream.write("\r" + "  ".join(p for p in parts if p) + "\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        """Finish: a final redraw and a newline, or the one plain log line."""
        if self._closed:
            return
        self._closed = True
        elapsed = time.perf_counter() - self._start
        if self.interactive:
            self._draw(elapsed)
            self.stream.write("\n")
        else:
            parts = [f"{self.desc}: {self.done} images", self._metrics_text(),
                     f"{self._rate(elapsed):.0f} img/s", f"{elapsed:.1f} s"]
            self.stream.write("  ".join(p for p in parts if p) + "\n")
        self.stream.flush()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
