"""Data-parallel training over MPI: K workers train the same model as one process.

The oracle is the one-process path, which the rest of the suite checks
against the tutorial, finite differences and PyTorch: the same runs are made
here in this process (world=None) and under ``mpiexec -n K`` with 2 and 3
workers (3 is more than this machine's cores, so Open MPI oversubscribes),
and the final weights must agree to 1e-10 in float64. Each run is a few
steps on synthetic images (tests/mpi_worker.py), with augmentation, batch
normalisation, dropout, an uneven last batch and empty shares.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mpi_worker
from tinyconv.data.loader import batches, shard_bounds
from tinyconv.training.distributed import (SingleProcess, mpi_available, mpiexec_command,
                                           mpiexec_path)

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(mpi_available() is not None or mpiexec_path() is None,
                                reason="MPI is not installed: pip install 'tinyconv[mpi]'")


def _env(tmp: Path, **extra) -> dict:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp / "cache"),
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]))
    env.pop("TINYCONV_WORKERS", None)
    env.update(extra)
    return env


def mpiexec(workers: int, *command: str, tmp: Path, timeout: float = 120):
    """Run ``python *command`` on ``workers`` MPI ranks, as tinyconv would start them."""
    line, env = mpiexec_command([], workers)
    line = line[:line.index(sys.executable)] + [sys.executable, *command]
    return subprocess.run(line, env={**env, **_env(tmp)}, capture_output=True, text=True,
                          timeout=timeout)


def tinyconv(*args, tmp: Path, timeout: float = 120, **env):
    return subprocess.run([sys.executable, "-m", "tinyconv", *map(str, args)], cwd=tmp,
                          env=_env(tmp, **env), capture_output=True, text=True, timeout=timeout)


def one_error_line(result) -> str:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tinyconv: error: "), lines[0]
    return lines[0]


# ---------------------------------------------------------------- pieces, in this process

def test_shards_cover_each_batch_in_order():
    for n in (1, 2, 7, 64):
        for size in (1, 2, 3, 5):
            bounds = [shard_bounds(n, rank, size) for rank in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


def test_sharded_batches_are_slices_of_the_whole_batch():
    """Each worker's images, augmentation included, are its slice of one process's batch."""
    images, labels = mpi_worker.synthetic_data(50)
    augment = mpi_worker.Augment(max_shift=2)
    whole = list(batches((images, labels), 16, shuffle=True, rng=np.random.default_rng(1),
                         augment=augment))
    for rank in range(3):
        ours = list(batches((images, labels), 16, shuffle=True, rng=np.random.default_rng(1),
                            augment=augment, shard=(rank, 3)))
        assert len(ours) == len(whole)
        for (x, y), (wx, wy) in zip(ours, whole):
            start, stop = shard_bounds(len(wy), rank, 3)
            np.testing.assert_array_equal(x, wx[start:stop])
            np.testing.assert_array_equal(y, wy[start:stop])


def test_one_worker_world_trains_exactly_as_no_world():
    """--workers 1 changes nothing: bit for bit the model of the one-process path."""
    alone = mpi_worker.train_case("default-float32")
    world = mpi_worker.train_case("default-float32", world=SingleProcess())
    for name in alone:
        np.testing.assert_array_equal(world[name], alone[name])


# ---------------------------------------------------------------- K workers

@pytest.fixture(scope="module")
def one_process():
    """Every case's final weights, trained by one process."""
    return {case: mpi_worker.train_case(case) for case in mpi_worker.CASES}


def _assert_same(got: dict, want: dict, atol: float, case: str):
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=atol,
                                   err_msg=f"{case}: {name}")


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_train_the_same_model_as_one_process(workers, one_process, tmp_path):
    result = mpiexec(workers, str(ROOT / "tests" / "mpi_worker.py"), str(tmp_path),
                     tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    for case, want in one_process.items():
        got = dict(np.load(tmp_path / f"{case}.npz"))
        # float32: the sums of the whole batch are split differently among
        # the workers, a few ulps each, over 4 Adam steps of lr 0.01.
        tolerance = 1e-10 if "float64" in case or "tiny" in case else 2e-5
        _assert_same(got, want, tolerance, case)
        # Not vacuous: training moved the weights far beyond the tolerance.
        start = dict(mpi_worker.setup(case)[0].state_dict())
        assert max(np.max(np.abs(want[k] - start[k])) for k in want) > 1e-3


def test_dropout_masks_are_those_of_one_process(one_process, tmp_path):
    """Drawing each worker's own mask (not the whole batch's) would train another model."""
    from tinyconv.nn import functional as F
    shared = F.dropout_forward
    try:
        # What the guarantee rules out: a mask drawn for the worker's columns alone.
        F.dropout_forward = lambda x, p, rng, columns=None: shared(x, p, rng)
        own_masks = mpi_worker.train_case("dropout-float64")
    finally:
        F.dropout_forward = shared
    # In one process the columns are the whole batch, so the two are the same...
    _assert_same(own_masks, one_process["dropout-float64"], 0, "dropout")
    # ...while with 2 workers only the whole batch's mask keeps the model.
    result = mpiexec(2, str(ROOT / "tests" / "mpi_worker.py"), str(tmp_path),
                     "dropout-float64", tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    _assert_same(dict(np.load(tmp_path / "dropout-float64.npz")),
                 one_process["dropout-float64"], 1e-10, "dropout")


@pytest.mark.slow
def test_resume_with_another_number_of_workers_equals_the_whole_run(tmp_path):
    """Epoch 1 on 2 workers, epochs 2-3 resumed on 3: the model of 3 epochs on one process."""
    case = "default-float64"
    want = mpi_worker.train_case(case, epochs=3)
    script = ("import sys, mpi_worker; from tinyconv.training.distributed import mpi_world; "
              "mpi_worker.train_case(sys.argv[1], mpi_world(), epochs=int(sys.argv[2]), "
              "out_dir=sys.argv[3], resume=sys.argv[4] == 'resume')")
    for workers, epochs, resume in ((2, 1, "fresh"), (3, 3, "resume")):
        result = mpiexec(workers, "-c", script, case, str(epochs), str(tmp_path / "run"),
                         resume, tmp=tmp_path)
        assert result.returncode == 0, result.stderr
    from tinyconv.models.serialize import read_npz
    saved = read_npz(tmp_path / "run" / "checkpoint.npz", what="checkpoint")
    assert int(saved["epoch"]) == 3
    _assert_same({k: saved[f"model/{k}"] for k in want}, want, 1e-10, case)


# ---------------------------------------------------------------- the command line

@pytest.mark.parametrize("args, fragment", [
    (["--workers", "0"], "at least 1, got 0"),
    (["--workers", "-2"], "at least 1, got -2"),
    (["--workers", "1.5"], "whole number, got '1.5'"),
    (["--workers", "9", "--batch-size", "8"], "--workers 9 and --batch-size 8"),
])
def test_bad_worker_counts_are_one_line_and_status_2(args, fragment, tmp_path):
    result = tinyconv("train", "--limit-train", "100", "--no-download", *args, tmp=tmp_path)
    assert result.returncode == 2
    assert fragment in one_error_line(result)
    assert not (tmp_path / "runs").exists()  # refused before anything started


def test_missing_mpi_is_one_line_and_status_2(tmp_path):
    """An mpi4py that does not load: --workers 2 is refused; the default falls back to 1."""
    fake = tmp_path / "fake" / "mpi4py"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('libmpi.so.40: cannot open')\n")
    path = os.pathsep.join([str(ROOT / "src"), str(fake.parent)])
    result = tinyconv("evaluate", "absent.npz", "--workers", "2", tmp=tmp_path,
                      PYTHONPATH=path)
    assert result.returncode == 2
    line = one_error_line(result)
    assert "needs MPI" in line and 'pip install "tinyconv[mpi]"' in line
    # No --workers: one worker, and a line saying how to have more (then the
    # missing model file is the error).
    result = tinyconv("evaluate", "absent.npz", tmp=tmp_path, PYTHONPATH=path)
    if len(os.sched_getaffinity(0)) > 1:
        assert 'using 1 worker; to use all' in result.stdout
    assert "absent.npz" in one_error_line(result)


@pytest.mark.slow
def test_train_and_evaluate_with_workers_match_one_worker(fashion_mnist_dir, tmp_path):
    """The command line end to end: 2 workers (started by tinyconv) and 1 give the same run."""
    common = ["--arch", "default", "--limit-train", "1200", "--limit-test", "300", "--epochs",
              "1", "--batch-size", "64", "--data-dir", fashion_mnist_dir, "--no-download"]
    runs = {}
    for workers in (1, 2):
        result = tinyconv("train", *common, "--workers", workers, "--out", f"w{workers}",
                          tmp=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"workers: {workers}" in result.stdout
        runs[workers] = np.load(tmp_path / f"w{workers}" / "model.npz")
        evaluated = tinyconv("evaluate", f"w{workers}/model.npz", "--limit-test", "300",
                             "--data-dir", fashion_mnist_dir, "--no-download", "--json",
                             "--workers", 3 - workers, tmp=tmp_path)
        assert evaluated.returncode == 0, evaluated.stderr
        assert len(evaluated.stdout.splitlines()) == 1  # rank 0 alone prints
    # float32 over 17 Adam steps. Adam's step has the size of the learning
    # rate (1e-3) whatever the gradient's, so where a gradient is near zero
    # (a unit that hardly fires) a rounding-sized difference in it can move
    # a weight by up to ~lr per step; everywhere else they agree closely.
    for name in runs[1].files:
        if runs[1][name].dtype.kind == "f":
            differences = np.abs(runs[2][name] - runs[1][name])
            assert np.all(differences <= 2e-2 * (1 + np.abs(runs[1][name]))), name
            assert np.median(differences / (1 + np.abs(runs[1][name]))) < 1e-3, name
    for workers in (1, 2):
        runs[workers] = json.loads((tmp_path / f"w{workers}" / "history.json").read_text())
    for key in ("train_loss", "val_loss"):
        assert abs(runs[2][0][key] - runs[1][0][key]) < 5e-3


def test_a_failing_worker_ends_the_job_with_its_line(fashion_mnist_dir, tmp_path):
    """Bad input on one host: rank 1 cannot find the data while rank 0 can."""
    args = ["-m", "tinyconv", "train", "--arch", "lenet5", "--limit-train", "500", "--epochs",
            "1", "--out", str(tmp_path / "run"), "--data-dir", str(fashion_mnist_dir),
            "--no-download"]
    line, env = mpiexec_command([], 2)
    launcher = line[:line.index(sys.executable)]
    command = (launcher[:-2] + ["-n", "1", sys.executable, *args, ":", "-n", "1",
                                sys.executable, *args, "--data", str(tmp_path / "absent")])
    start = time.monotonic()
    result = subprocess.run(command, env={**env, **_env(tmp_path)}, capture_output=True,
                            text=True, timeout=60)
    assert time.monotonic() - start < 30
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("tinyconv:")]
    assert len(errors) == 1 and "worker 1 of 2" in errors[0] and "absent" in errors[0], errors


def _rank_pids(marker: str, rank: int) -> list[int]:
    """The processes whose command line holds ``marker`` and that MPI made rank ``rank``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if marker not in (entry / "cmdline").read_bytes().decode(errors="replace"):
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"OMPI_COMM_WORLD_RANK={rank}".encode() in environ:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_killing_a_worker_mid_epoch_ends_the_job_and_keeps_the_checkpoint(fashion_mnist_dir,
                                                                          tmp_path):
    out = tmp_path / "killed-run"
    process = subprocess.Popen(
        [sys.executable, "-m", "tinyconv", "train", "--arch", "lenet5", "--limit-train", "6000",
         "--limit-test", "100", "--epochs", "6", "--workers", "2", "--out", out, "--data-dir",
         fashion_mnist_dir, "--no-download"], cwd=tmp_path, env=_env(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.npz").exists():
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.1)
        time.sleep(0.3)  # into the next epoch
        pids = _rank_pids(str(out), 1)
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = process.communicate(timeout=30)
        assert time.monotonic() - killed < 10
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    errors = [line for line in stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "signal 9" in errors[0], stderr
    from tinyconv.models.serialize import read_npz
    saved = read_npz(out / "checkpoint.npz", what="checkpoint")
    assert int(saved["epoch"]) >= 1
    assert not (out / "model.npz").exists()


@pytest.mark.slow
def test_bench_times_workers_against_pytorch_threads(torch, tmp_path):
    figures = tmp_path / "workers.json"
    result = tinyconv("bench", "--workers", "2", "--batch", "4", "--rounds", "1", "--budget",
                      "1e-4", "--json", figures, tmp=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    results = json.loads(figures.read_text())
    assert results["workers"] == 2 and results["machine"]["torch_threads"] == 2
    assert {(row["model"], row["batch"]) for row in results["steps"]} == {
        ("lenet5", 4), ("default", 4)}
    assert all(row["ratio"] > 0 for row in results["steps"])
    # One process with 2 BLAS threads and the shares without sums, timed in the same rounds.
    assert all(row["speedup"] > 0 and row["one_process"]["rounds"] == 1
               and row["shares_alone"]["median"] > 0 for row in results["steps"])
    assert "2 workers" in result.stdout and "one process, 2 BLAS threads" in result.stdout


@pytest.mark.slow
def test_a_broken_mpi_is_one_line_and_status_2(tmp_path):
    """An MPI whose workers cannot start (here: a transport that does not exist)."""
    start = time.monotonic()
    result = tinyconv("evaluate", "absent.npz", "--workers", "2", tmp=tmp_path, timeout=90,
                      OMPI_MCA_pml="no-such-transport")
    assert time.monotonic() - start < 60
    assert result.returncode == 2
    assert "MPI could not start 2 workers" in one_error_line(result)
