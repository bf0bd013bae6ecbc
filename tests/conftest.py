"""Shared test set-up: PyTorch as an independent oracle, and the real Fashion-MNIST.

A test that compares tinyconv with PyTorch takes the ``torch`` fixture::

    def test_relu_matches_torch(torch):
        ...

Inside such a test torch's default dtype is float64, so tensors built from
NumPy's float64 arrays and new torch layers agree with tinyconv to ~1e-12.
Code that cannot take a fixture (a helper, a module-level check) calls
:func:`require_torch` instead.

A test that reads the real Fashion-MNIST files of the Debian package
``dataset-fashion-mnist`` takes the ``fashion_mnist_dir`` fixture, or calls
:func:`require_fashion_mnist` where a fixture cannot reach.

A test that drives headless Chromium takes the ``browser`` fixture (see
``browser.py``).

When torch or the data set is missing, the test is skipped on a developer's
machine but FAILS under CI (``CI=true``): there a missing oracle or data set
must not pass quietly.

Data policy: no test downloads anything. ``TINYCONV_NO_DOWNLOAD=1`` is set
for the whole session, command-line subprocesses included; the tests of the
download code serve their files from 127.0.0.1 and lift it themselves.

One trained run is shared by every test that needs one: ``tutorial_run``, a
session-scoped directory with the model.npz, checkpoint.npz and history of
the tutorial preset after one epoch on 600 images.

Tests slower than a few seconds are marked ``slow``; ``python -m pytest -m
"not slow"`` runs the quick rest (README.md, Tests).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# The commands the tests run use one process unless a test asks for workers
# (tests/test_distributed.py): --workers defaults to every core otherwise.
os.environ.setdefault("TINYCONV_WORKERS", "1")

INSTALL_TORCH = "pip install torch==2.13.0 (the CPU build; `make test` does it)"
INSTALL_FASHION_MNIST = "apt-get install dataset-fashion-mnist (`.ci/run` does it)"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
TEST_IMAGES = 200

# Before any tinyconv import, and inherited by every subprocess.
os.environ["TINYCONV_NO_DOWNLOAD"] = "1"

FASHION_MNIST_FILES = tuple(f"{split}-{kind}-ubyte.gz" for split in ("train", "t10k")
                            for kind in ("images-idx3", "labels-idx1"))


def running_in_ci() -> bool:
    """True when the environment variable CI says so (``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def require_torch():
    """Import and return ``torch``; fail under CI, skip elsewhere, if it is missing."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None:
        _missing("PyTorch is the test oracle and is not installed; "
                 f"install it with: {INSTALL_TORCH}", "oracle")
    return torch


def require_fashion_mnist() -> Path:
    """The Debian package's Fashion-MNIST directory; fail under CI, skip elsewhere, if missing.

    All four files must be there (``train`` and ``t10k``, images and labels).
    """
    missing = [name for name in FASHION_MNIST_FILES
               if not (FASHION_MNIST_DIR / name).is_file()]
    if missing:
        _missing(f"the real Fashion-MNIST is not in {FASHION_MNIST_DIR} (missing "
                 f"{', '.join(missing)}); install it with: {INSTALL_FASHION_MNIST}", "data set")
    return FASHION_MNIST_DIR


def _missing(message: str, what: str):
    """Fail the test under CI, where nothing may be missing; skip it elsewhere."""
    if running_in_ci():
        pytest.fail(f"{message} (CI=true: a missing {what} fails the run)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def torch():
    """The ``torch`` module, with float64 as its default dtype for this test only."""
    torch = require_torch()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(previous)


@pytest.fixture
def fashion_mnist_dir() -> Path:
    """The directory of the real Fashion-MNIST files; see :func:`require_fashion_mnist`."""
    return require_fashion_mnist()


@pytest.fixture(scope="session")
def tutorial_run(tmp_path_factory) -> Path:
    """A training run directory shared by the whole session; see the module docstring."""
    require_fashion_mnist()
    return make_run(tmp_path_factory.mktemp("tutorial-run"))


def make_run(out_dir):
    """Train the tutorial preset for one epoch on 600 images into ``out_dir``
    (model.npz, checkpoint.npz, history.json) and return ``out_dir``."""
    from tinyconv import Adam, Normalization, build, evaluate, fit, load_dataset, resolve, save_model

    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test").subset(np.arange(TEST_IMAGES))
    spec = resolve("tutorial")
    model = build(spec, rng=0)
    data, val = train.subset(np.arange(600)), train.subset(np.arange(600, 800))
    normalization = Normalization.fit(data.images)
    history = fit(model, data, val, epochs=1, batch_size=50, seed=0,
                  optimizer=Adam(model.parameters(), lr=3e-3),
                  normalization=normalization, out_dir=out_dir, progress=False,
                  log=lambda line: None, spec=spec, classes=train.classes)
    result = evaluate(model, test, normalization)
    save_model(out_dir / "model.npz", model, spec, train.classes, normalization,
               {"data": "fashion-mnist", "epochs": len(history), "train_seconds": 1.5,
                "test_accuracy": result.accuracy, "test_loss": result.loss,
                "test_images": result.n})
    return out_dir


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium (:class:`browser.WebDriver`) with a fresh profile, for one test."""
    from browser import WebDriver, require_browser

    require_browser()
    driver = WebDriver(tmp_path / "profile")
    yield driver
    driver.close()
