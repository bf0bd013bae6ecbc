"""Draw the two pictures of ``tinyconv explore`` that the README shows.

    .venv/bin/python docs/make_explore_screenshots.py runs/default/model.npz

(``make explore-screenshots`` after ``make train``.) Writes the page for the
model and five test images, opens it in headless Chromium (the tests' driver,
tests/browser.py) and saves, next to this file:

- explore-overview.png: the page as it opens, with a value of the first
  convolution clicked (eq. 4.4 in the detail panel);
- explore-backward.png: a sensitivity map value passed back through the
  second convolution clicked (eq. 5.3: the window of the expanded δ, the
  rotated filter, their products).

Each is reduced to 256 colours, which keeps it under 300 KB.
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from browser import WebDriver, require_browser  # noqa: E402
from tinyconv.app.explore import explore_html, pick_test_images  # noqa: E402
from tinyconv.data.splits import test_set  # noqa: E402
from tinyconv.models.serialize import load_model  # noqa: E402


def save(png: bytes, path: Path) -> None:
    with Image.open(io.BytesIO(png)) as shot:
        shot.convert("RGB").quantize(256).save(path, optimize=True)
    print(f"{path} ({path.stat().st_size // 1024} KB)")


def show(driver, css: str) -> None:
    """Click the value ``css`` and scroll so that its layer's column starts at the
    left, its heading just under the control bar."""
    driver.execute("""
        const e = document.querySelector(arguments[0]);
        e.click();
        const stage = e.closest('.stage'), network = document.getElementById('network');
        network.scrollLeft = stage.offsetLeft - network.offsetLeft;
        window.scrollTo(0, stage.getBoundingClientRect().top + window.scrollY
                        - document.getElementById('controls').offsetHeight - 8);""", css)


def main(model_file: str) -> None:
    loaded = load_model(model_file)
    page = explore_html(loaded, pick_test_images(loaded, test_set(loaded, limit=1000,
                                                                  download=False)),
                        title=Path(model_file).name)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "explore.html"
        path.write_text(page, encoding="utf-8")
        require_browser()
        driver = WebDriver(Path(folder) / "profile", width=1400, height=900)
        try:
            driver.open(path)
            driver.wait_for("return document.documentElement.dataset.ready === 'true'")
            driver.execute("document.querySelector('[data-layer=\"0\"][data-pass=\"forward\"]"
                           "[data-channel=\"2\"][data-y=\"14\"][data-x=\"12\"]').click()")
            save(driver.screenshot(), ROOT / "docs" / "explore-overview.png")
            show(driver, '[data-layer="3"][data-pass="backward"][data-channel="1"]'
                         '[data-y="7"][data-x="6"]')
            # The detail panel scrolled down to the largest filter's window and rotated filter.
            driver.execute("const panel = document.getElementById('detail-panel');"
                           "const open = panel.querySelector('details[open]');"
                           "panel.scrollTop += open.getBoundingClientRect().bottom"
                           " - panel.getBoundingClientRect().bottom + 60;")
            save(driver.screenshot(), ROOT / "docs" / "explore-backward.png")
        finally:
            driver.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
