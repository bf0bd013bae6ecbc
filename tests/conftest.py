"""Shared test set-up: PyTorch as an independent oracle.

A test that compares tinyconv with PyTorch takes the ``torch`` fixture::

    def test_relu_matches_torch(torch):
        ...

Inside such a test torch's default dtype is float64, so tensors built from
NumPy's float64 arrays and new torch layers agree with tinyconv to ~1e-12.
Code that cannot take a fixture (a helper, a module-level check) calls
:func:`require_torch` instead.

When torch is not installed the test is skipped on a developer's machine but
FAILS under CI (``CI=true``): there a missing oracle must not pass quietly.
"""

from __future__ import annotations

import os

import pytest

INSTALL_TORCH = "pip install torch==2.13.0 (the CPU build; `make test` does it)"


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
        message = ("PyTorch is the test oracle and is not installed; "
                   f"install it with: {INSTALL_TORCH}")
        if running_in_ci():
            pytest.fail(f"{message} (CI=true: a missing oracle fails the run)", pytrace=False)
        pytest.skip(message)
    return torch


@pytest.fixture
def torch():
    """The ``torch`` module, with float64 as its default dtype for this test only."""
    torch = require_torch()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(previous)
