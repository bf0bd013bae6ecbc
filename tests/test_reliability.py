"""A training run's directory under the worst a user's machine does to it:
a second run into the same folder, a lock left by a dead run, and kill -9 at
random moments, each resumed to the very model of a run never interrupted.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_cli import _env, assert_bad_input, tinyconv
from tinyconv.models.serialize import load_model, read_npz
from tinyconv.training.run import LOCK_FILE

# Epochs of a fraction of a second each, so that kills land in every phase:
# training, validation, writing the checkpoint and the history.
RUN = ["train", "--arch", "INPUT(1,28,28) -> CONV(4,5) -> MAXPOOL(4) -> FC(10)",
       "--limit-train", "400", "--limit-test", "100", "--batch-size", "50", "--out", "run"]
EPOCHS = 12


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tinyconv", *args], cwd=cwd,
                            env=_env(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _state(model_file: Path) -> dict:
    arrays = np.load(model_file, allow_pickle=False)
    return {key: arrays[key] for key in arrays.files
            if key.startswith(("param/", "buffer/", "normalization/"))}


def test_a_second_run_into_a_busy_folder_is_refused(tmp_path, fashion_mnist_dir):
    first = _start(tmp_path, *RUN, "--epochs", "400")
    try:
        while not (tmp_path / "run" / "checkpoint.npz").exists():
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        second = tinyconv(*RUN, "--epochs", "1", cwd=tmp_path)
        assert_bad_input(second, "run is in use by another training run",
                         f"process {first.pid}", "--out")
    finally:
        first.kill()
        first.communicate()


def test_a_lock_left_by_a_dead_run_blocks_nobody(tmp_path, fashion_mnist_dir):
    killed = _start(tmp_path, *RUN, "--epochs", "400")
    while not (tmp_path / "run" / "checkpoint.npz").exists():
        assert killed.poll() is None, killed.communicate()
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert (tmp_path / "run" / LOCK_FILE).read_text() == str(killed.pid)
    again = tinyconv(*RUN, "--epochs", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def _files(run: Path) -> list[Path]:
    return list(run.iterdir()) if run.exists() else []


def _check_no_partial_file(run: Path) -> None:
    """Every file of the run is whole; a killed writer's temporary file is hidden."""
    for path in _files(run):
        if path.name.startswith("."):
            assert path.name == LOCK_FILE or path.name.endswith(".tmp"), path.name
        elif path.name == "model.npz":
            load_model(path)
        elif path.name == "checkpoint.npz":
            read_npz(path, what="checkpoint")
        elif path.name == "history.json":
            assert isinstance(json.loads(path.read_text()), list)
        elif path.name == "history.csv":
            list(csv.DictReader(path.read_text().splitlines()))
        else:
            raise AssertionError(f"unexpected file {path}")


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_gives_the_uninterrupted_model(
        tmp_path, fashion_mnist_dir):
    """Runs are killed at random moments and resumed until they finish; every
    finished run must hold the uninterrupted run's weights, and after every
    kill every file in --out must be whole."""
    whole = tmp_path / "whole"
    whole.mkdir()
    began = time.perf_counter()
    done = tinyconv(*RUN, "--epochs", str(EPOCHS), cwd=whole)
    duration = time.perf_counter() - began
    assert done.returncode == 0, done.stderr
    expected = _state(whole / "run" / "model.npz")

    rng = np.random.default_rng(9)
    kills = finished = mid_write = 0
    while kills < 24:
        work = tmp_path / f"killed-{finished}"
        work.mkdir()
        run = work / "run"
        while True:  # kill this run until it finishes, resuming each time
            resume = ["--resume"] if (run / "checkpoint.npz").exists() else []
            process = _start(work, *RUN, "--epochs", str(EPOCHS), *resume)
            time.sleep(rng.uniform(0.2, duration))
            if process.poll() is not None:
                break
            process.send_signal(signal.SIGKILL)
            process.communicate()
            kills += 1
            mid_write += any(path.name.endswith(".tmp") for path in _files(run))
            _check_no_partial_file(run)
        assert process.wait() == 0, process.communicate()
        _check_no_partial_file(run)
        assert not any(path.name.endswith(".tmp") for path in _files(run))
        got = _state(run / "model.npz")
        assert got.keys() == expected.keys()
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
        finished += 1
    print(f"kill -9: {kills} kills over {finished} runs, each resumed to the uninterrupted "
          f"model; {mid_write} kills left a temporary file from a write in progress")
