"""The run report: one self-contained HTML page that a real browser shows whole.

The browser test drives headless Chromium (``browser.py``, through the
``browser`` fixture): it opens the page from disk, checks every image decoded
and the console stayed clean, and takes a screenshot. Under CI (``CI=true``)
a missing Chromium fails the test; on a developer's machine it is skipped.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from test_visualize import TEST_IMAGES, tinyconv
from tinyconv.data.datasets import load_dataset
from tinyconv.app.report import load_run, report_html
from tinyconv.training.evaluation import predict_proba


@pytest.fixture(scope="module")
def run_dir(tutorial_run):
    return tutorial_run


@pytest.fixture(scope="module")
def test_set():
    return load_dataset("fashion-mnist", "test").subset(np.arange(TEST_IMAGES))


@pytest.fixture(scope="module")
def page(run_dir, test_set) -> str:
    return report_html(load_run(run_dir), test_set)


class _Tags(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(page: str, name: str) -> list[dict]:
    parser = _Tags()
    parser.feed(page)
    return [attrs for tag, attrs in parser.tags if tag == name]


def test_page_is_self_contained(page):
    assert not tags(page, "script")
    assert not tags(page, "link")
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", page)
    assert "url(" not in page
    images = tags(page, "img")
    # curves, confusion, 2 filter layers, input + 4 feature layers, mistakes
    assert len(images) == 10
    for attrs in images:
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix)
        with Image.open(io.BytesIO(base64.b64decode(attrs["src"][len(prefix):]))) as image:
            assert image.size == (int(attrs["width"]), int(attrs["height"]))
            assert np.asarray(image.convert("L")).std() > 0


def test_page_has_every_section_and_the_final_figures(page, run_dir, test_set):
    for heading in ("Final figures", "Settings", "Layers", "Learning curves",
                    "Confusion matrix", "Filters", "Feature maps", "Mistakes"):
        assert f"<h2>{heading}</h2>" in page
    run = load_run(run_dir)
    probabilities = predict_proba(run.loaded.model, run.loaded.normalization(test_set.images))
    accuracy = np.mean(probabilities.argmax(axis=1) == test_set.labels)
    assert f"{accuracy:.2%}</div><div class=\"label\">test accuracy on {TEST_IMAGES} images" \
        in page
    assert "1.5 s</div><div class=\"label\">training time" in page
    assert ">1</div><div class=\"label\">epochs trained" in page
    # The layer table: the tutorial preset's first conv has 3·(5·5·1 + 1) = 78 parameters.
    assert "<td>0: Conv2d</td><td>(3, 28, 28)</td><td class=\"number\">78</td>" in page


def test_cli_writes_the_report_into_the_run(run_dir, tmp_path):
    done = tinyconv("report", run_dir, "--limit-test", TEST_IMAGES)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(run_dir / "report.html")
    assert (run_dir / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    done = tinyconv("report", run_dir, "--limit-test", 50, "--out", tmp_path / "r.html")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


@pytest.mark.parametrize("case", ["no model", "not a model", "unwritable", "index"])
def test_cli_bad_input_one_line_exit_2(run_dir, tmp_path, case):
    if case == "no model":
        target, extra, expected = tmp_path, [], "has no model.npz"
    elif case == "not a model":
        shutil.copy(run_dir / "history.json", tmp_path)
        (tmp_path / "model.npz").write_bytes(b"PK\x03\x04 cut short")
        target, extra, expected = tmp_path, [], "truncated"
    elif case == "unwritable":
        (tmp_path / "a_file").write_text("")
        target, extra = run_dir, ["--out", tmp_path / "a_file" / "report.html"]
        expected = "cannot write to"
    else:
        target, extra = run_dir, ["--limit-test", 20, "--index", 20, "--out", tmp_path / "r.html"]
        expected = "index 20 is out of range"
    done = tinyconv("report", target, *extra)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinyconv: error: "), done.stderr
    assert expected in lines[0]
    assert not (tmp_path / "r.html").exists()


# ------------------------------------------------------------------ Chromium

def test_report_loads_in_headless_chromium(browser, run_dir, page, tmp_path):
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    browser.command("POST", "/url", {"url": path.as_uri()})
    assert browser.command("POST", "/execute/sync",
                           {"script": "return document.readyState", "args": []}) == "complete"
    images = browser.command("POST", "/execute/sync", {"script": (
        "return Array.from(document.images).map("
        "i => [i.complete, i.naturalWidth, i.naturalHeight])"), "args": []})
    assert len(images) == len(tags(page, "img")) == 10
    for complete, width, height in images:
        assert complete and width > 0 and height > 0
    log = browser.command("POST", "/se/log", {"type": "browser"})
    assert log == [], f"the browser console reported: {log}"
    shot = base64.b64decode(browser.command("GET", "/screenshot"))
    with Image.open(io.BytesIO(shot)) as screenshot:
        assert screenshot.format == "PNG"
        assert screenshot.width >= 800 and screenshot.height >= 500
        pixels = np.asarray(screenshot.convert("L"))
    assert pixels.std() > 0
    # The page's own title is drawn: dark text pixels in the top left.
    assert pixels[:120, :700].min() < 80
