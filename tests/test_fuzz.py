"""The quick fuzz budget: 2,000 mutated inputs over every reader of outside input,
each ending in a clean result or a one-line clean error (see tests/fuzz.py).

The long run is the same harness with a larger budget::

    PYTHONPATH=src python tests/fuzz.py --cases 100000
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import fuzz  # noqa: E402  (tests/ is no package: the harness is imported from beside this file)


@pytest.mark.slow
def test_quick_budget_every_case_ends_cleanly(tmp_path):
    """Run in a child process: the harness caps its address space, and a hang
    there cannot stop the test suite."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(HERE / "fuzz.py"), "--cases", "2000", "--json",
                             "--save-failures", str(tmp_path / "failures")],
                            capture_output=True, text=True, env=env, timeout=300)
    seconds = time.perf_counter() - started
    assert result.stdout, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    total = report.pop("total")
    assert total["failures"] == 0, (total, {name: row for name, row in report.items()
                                            if row["failures"]}, result.stdout[:4000])
    assert result.returncode == 0, result.stderr
    assert total["cases"] == 2000 == total["clean_results"] + total["clean_errors"]
    assert sorted(report) == sorted(fuzz.DEFAULT_TARGETS)
    for name, row in report.items():
        # Every reader saw both: inputs it accepts and inputs it refuses.
        assert row["clean_results"] > 0 and row["clean_errors"] > 0, (name, row)
    print(f"quick fuzz: {total} in {seconds:.1f} s")


def _raises(kind):
    def read(path):
        raise kind("one\ntwo" if kind is ValueError else "a bug")
    return read


def _sleeps(path):
    while True:
        time.sleep(0.01)


def _warns(path):
    warnings.warn("a second line on stderr")


def _allocates(path):
    return np.ones(1 << 62, np.uint8)


@pytest.mark.parametrize("read, outcome", [
    (lambda path: None, "result"),
    (lambda path: Path(path).read_bytes(), "error"),  # the file does not exist: an OSError
    (_raises(ValueError), "traceback"),  # a clean type, but two lines
    (_raises(TypeError), "traceback"),
    (_raises(KeyError), "traceback"),
    (_sleeps, "hang"),
    (_warns, "warning"),
    (_allocates, "memory"),
])
def test_the_harness_tells_each_outcome(tmp_path, read, outcome):
    assert fuzz.run_case(read, tmp_path / "missing", case_seconds=0.3)[0] == outcome


def test_cases_are_reproducible(tmp_path):
    """Case N of a target is drawn from its own seed: --replay repeats it exactly."""
    made = []
    for run in range(2):
        directory = tmp_path / f"run{run}"
        (directory / "case").mkdir(parents=True)
        target = fuzz.IdxTarget(directory)
        made.append([target.case(fuzz.random.Random(f"0:idx:{index}"),
                                 directory / "case").read_bytes() for index in range(20)])
    assert made[0] == made[1]
