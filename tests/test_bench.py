"""The benchmark runs and reports every figure it promises (no timing is asserted)."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinyconv.app import bench
from tinyconv.models.presets import PRESETS
from tinyconv.models.spec import build


@pytest.fixture
def no_pause(monkeypatch):
    """The pause between timed blocks only matters for real timings."""
    monkeypatch.setattr(bench, "SETTLE_S", 0.0)


def test_each_timed_block_starts_after_a_pause(monkeypatch):
    events = []
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: events.append(seconds))
    bench.time_interleaved({"a": lambda: events.append("a"), "b": lambda: events.append("b")},
                           rounds=3, budget=1e-9)
    timed = events[events.index(bench.SETTLE_S):]  # after both calibrations
    switches = [k for k in range(1, len(timed)) if timed[k] != timed[k - 1]
                and bench.SETTLE_S not in (timed[k], timed[k - 1])]
    assert timed.count(bench.SETTLE_S) == 6 and switches == []


def test_benchmark_reports_every_figure(torch, tmp_path, no_pause):
    lines = []
    results = bench.run(batches=(2,), rounds=1, budget=1e-4, memory=False, out=lines.append)
    names = [row["name"] for row in results["layers"]]
    assert len(names) == 10  # 5 LeNet-5 layers x (forward, forward+backward)
    assert all(row["ratio"] > 0 for row in results["layers"] + results["steps"])
    assert {(row["model"], row["kind"]) for row in results["steps"]} == {
        (m, k) for m in ("lenet5", "default") for k in ("training step", "inference")}
    assert results["reference"]["speedup"] > 1
    assert "blas" in results["machine"]
    assert any("ratio = PyTorch time / tinyconv time" in line for line in lines)
    json.dumps(results)  # every figure is plain data


@pytest.mark.parametrize("preset", ["lenet5", "default", "strong", "tutorial"])
def test_to_torch_gives_the_same_network(torch, preset):
    model = build(PRESETS[preset].spec, rng=0).eval()
    x = np.random.default_rng(1).standard_normal((2, 1, 28, 28)).astype(np.float32)
    theirs = bench.to_torch(model).eval()
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-4, atol=1e-4)


def test_without_pytorch_the_benchmark_says_so_and_reports_tinyconv_alone(monkeypatch, no_pause):
    monkeypatch.setattr(bench, "torch_available", lambda: False)
    lines = []
    results = bench.run(batches=(2,), rounds=1, budget=1e-4, memory=False, out=lines.append)
    assert any("PyTorch is not installed" in line for line in lines)
    assert all("pytorch" not in row and "ratio" not in row
               for row in results["layers"] + results["steps"])
    assert all(row["tinyconv"]["median"] > 0 for row in results["layers"])


def test_bench_command_rejects_bad_options():
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "tinyconv", "bench", "--rounds", "0"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--rounds" in result.stderr
    assert "Traceback" not in result.stderr


def test_peak_memory_is_the_childs_own(torch):
    # The parent holds PyTorch (hundreds of MiB); a child that only trains
    # lenet5 on a batch of 2 must report its own, much smaller, peak.
    parent = bench.peak_rss_kib() / 1024
    child = bench.peak_training_memory("lenet5", 2)
    assert 10 < child < parent


def test_results_tables_give_median_and_spread_of_the_runs(tmp_path, monkeypatch):
    """benchmarks/results.py turns bench JSON into RESULTS.md's tables, in place."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results.py"
    spec = importlib.util.spec_from_file_location("results", path)
    results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results)
    page = tmp_path / "RESULTS.md"
    page.write_text(f"# top\n{results.START}\nold\n{results.END}\nbottom\n")
    monkeypatch.setattr(results, "RESULTS", page)
    runs = []
    for k, ratio in enumerate((0.9, 1.2, 1.0)):
        run = {"machine": {"cpu": "test"}, "steps": [
            {"name": "lenet5 training step", "batch": 64, "ratio": ratio},
            {"name": "default training step, 2 workers", "batch": 64, "ratio": ratio,
             "model": "default", "workers": 2, "speedup": 1 / (0.6 + 0.1 * k),
             "one_process": {"median": 0.010}, "shares_alone": {"median": 0.005}}],
            "worker_epochs": {"command": "tinyconv train", "workers": 2, "ratio": ratio / 2,
                              "one_worker_s": [8.0 + k], "workers_s": [5.0]}}
        (tmp_path / f"b{k}.json").write_text(json.dumps(run))
        runs.append(str(tmp_path / f"b{k}.json"))
    assert results.main(runs) == 0
    text = page.read_text()
    assert text.startswith("# top\n") and text.endswith("\nbottom\n") and "old" not in text
    assert "| lenet5 training step | **1.00** (0.90-1.20) |" in text
    assert ("| default, global batch 64, K = 2 | **0.70** (0.60-0.80) | **0.50** (0.50-0.50) |"
            in text)
    assert ("with 2 workers takes **0.50** (0.45-0.60) of one worker's time" in text
            and "one worker 8.0 to 10.0 s, 2 workers 5.0 s" in text)


def test_worker_epochs_pair_the_runs_and_take_the_median_ratio(monkeypatch):
    """Rounds alternate which run goes first; the ratio is the median of the pairs'."""
    epochs = iter([8.0, 4.0, 6.0, 9.0, 10.0, 7.0])  # (1, 2), (2, 1), (1, 2)
    order = []

    def fake_train(command, **_):
        workers, out = command[command.index("--workers") + 1], command[-1]
        order.append(int(workers))
        (Path(out) / "history.json").write_text(json.dumps([{"seconds": next(epochs)}]))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(bench.subprocess, "run", fake_train)
    result = bench.worker_epochs(2, 3, None)
    assert order == [1, 2, 2, 1, 1, 2]
    assert result["one_worker_s"] == [8.0, 9.0, 10.0] and result["workers_s"] == [4.0, 6.0, 7.0]
    assert result["ratios"] == [0.5, 6.0 / 9.0, 0.7] and result["ratio"] == 6.0 / 9.0


def test_worker_epochs_report_a_failed_run(tmp_path):
    """A run that fails (here: damaged data files) ends the benchmark with its line."""
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / f"{name}.gz").write_bytes(b"not a dataset")
    result = bench.worker_epochs(2, 1, str(tmp_path))
    assert result["error"].startswith("tinyconv: error: ") and "not an IDX file" in result["error"]


def test_epoch_figures_are_kept_and_printed(monkeypatch, no_pause):
    """--epoch's two measurements, faked here (each takes a minute), reach the
    figures and the printout; a failed one is reported as failed."""
    monkeypatch.setattr(bench, "lenet5_epoch", lambda data_dir: {"error": "no data"})
    monkeypatch.setattr(bench, "available_cores", lambda: 2)
    monkeypatch.setattr(bench, "mpi_available", lambda: None)
    monkeypatch.setattr(bench, "worker_epochs", lambda k, rounds, data_dir: {
        "command": "tinyconv train", "workers": k, "one_worker_s": [8.0, 9.0],
        "workers_s": [5.0, 6.0], "ratio": 0.65, "ratios": [0.625, 0.667]})
    monkeypatch.setattr(bench, "torch_available", lambda: False)
    lines = []
    results = bench.run(batches=(2,), rounds=1, budget=1e-4, memory=False, epoch=True,
                        out=lines.append)
    assert results["lenet5_epoch"] == {"error": "no data"}
    assert results["worker_epochs"]["ratio"] == 0.65
    assert "lenet5 Fashion-MNIST epoch: failed: no data" in lines
    assert any("1 worker 8.0-9.0 s, 2 workers 5.0-6.0 s; 2 workers / 1: median 0.65 "
               "(0.62-0.67)" in line for line in lines)
