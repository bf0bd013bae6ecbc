"""The benchmark: tinyconv side by side with PyTorch on this machine's CPU.

Both frameworks run in one process, on the same inputs and weights, with the
same number of threads, and their timings are *interleaved*: every round
times tinyconv and PyTorch back to back (alternating which goes first), so a
machine that slows down or speeds up mid-run affects both alike. Each figure
is the median over the rounds, with the spread (lowest to highest round).

The ratio printed is **PyTorch's time divided by tinyconv's**: 1.0 means as
fast as PyTorch, 2.0 twice as fast, 0.5 half as fast.

Single layers are timed as a model runs them, each framework in its own
layout: tinyconv batch last (C, H, W, N), PyTorch NCHW. Whole training steps
and inference take NCHW images in both, conversions included.

Run it as ``tinyconv bench`` or ``python benchmarks/bench.py``. Without
PyTorch it prints tinyconv's figures alone and says so. ``--epoch`` adds
whole epochs through ``tinyconv train``: lenet5's, and default's with one
worker and with every core, in pairs (:func:`worker_epochs`).
``tinyconv bench --workers K`` times training steps of K workers instead,
against one process with K BLAS threads, the workers' shares without any
sums, and PyTorch with K threads (:func:`run_workers`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

from ..nn import functional as F
from ..tutorial import reference
from ..nn.layers import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Identity, Linear,
                     MaxPool2d, ReLU, Sequential, Sigmoid, Tanh)
from ..nn.losses import CrossEntropyLoss
from ..data.loader import shard_bounds
from ..training.distributed import DataParallel, available_cores, mpi_available
from ..training.loop import train_step
from ..training.optim import SGD
from ..models.presets import PRESETS
from ..models.spec import build


def torch_available() -> bool:
    """Whether PyTorch is installed; it is imported only when the benchmark runs,
    so that every other ``tinyconv`` command starts without it."""
    return importlib.util.find_spec("torch") is not None


# ----------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------

def _seconds_per_call(fn, reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def _calibrate(fn, budget: float) -> int:
    """How many calls fit in ``budget`` seconds (at least 1), after a warm-up."""
    fn()
    once = _seconds_per_call(fn, 1)
    return max(1, int(budget / max(once, 1e-6)))


#: Seconds to wait before each timed block. A framework's idle threads keep
#: spinning on the cores for a while after its last call (OpenBLAS's for 2^28
#: processor cycles by default), so without this pause the next framework's
#: first timed calls would share the cores with them.
SETTLE_S = 0.2

#: Pairs of default epochs (one worker, then every core) that ``--epoch`` times.
EPOCH_ROUNDS = 3


def time_interleaved(candidates: dict, rounds: int, budget: float) -> dict:
    """Median and spread of seconds per call for each named function.

    Each round times every candidate once, in an order that rotates from
    round to round. Before each timed block come a pause (:data:`SETTLE_S`),
    so that the threads of the framework that ran before have gone to sleep,
    and one untimed call.
    """
    names = list(candidates)
    reps = {name: _calibrate(candidates[name], budget) for name in names}
    samples = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            time.sleep(SETTLE_S)
            candidates[name]()
            samples[name].append(_seconds_per_call(candidates[name], reps[name]))
    return {name: {"median": statistics.median(s), "min": min(s), "max": max(s),
                   "rounds": rounds, "reps": reps[name]} for name, s in samples.items()}


# ----------------------------------------------------------------------------
# The same network in PyTorch
# ----------------------------------------------------------------------------

def to_torch(model):
    """A float32 ``torch.nn.Sequential`` equal to a tinyconv model, weights copied."""
    import torch
    nn = torch.nn
    layers = []
    for layer in model:
        if isinstance(layer, Conv2d):
            t = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                          layer.stride, layer.padding, bias=layer.bias is not None)
        elif isinstance(layer, Linear):
            t = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        elif isinstance(layer, MaxPool2d):
            t = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, AvgPool2d):
            t = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, BatchNorm2d):
            t = nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
        elif isinstance(layer, Dropout):
            t = nn.Dropout(layer.p)
        else:
            simple = {Flatten: nn.Flatten, ReLU: nn.ReLU, Sigmoid: nn.Sigmoid,
                      Tanh: nn.Tanh, Identity: nn.Identity}
            if type(layer) not in simple:
                raise TypeError(f"no PyTorch equivalent for {type(layer).__name__}")
            t = simple[type(layer)]()
        own = layer.state_dict()
        if own:
            t.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in own.items()},
                              strict=False)
        layers.append(t)
    return nn.Sequential(*layers).to(torch.float32)


# ----------------------------------------------------------------------------
# What is timed
# ----------------------------------------------------------------------------

def lenet5_layers(batch: int):
    """(name, tinyconv layer, input shape) for each layer of the lenet5 preset,
    and a mean pooling of the same size as its first pooling."""
    layers = list(build(PRESETS["lenet5"].spec, rng=0))
    conv1, conv2 = [layer for layer in layers if isinstance(layer, Conv2d)]
    flatten = next(i for i, layer in enumerate(layers) if isinstance(layer, Flatten))
    return [
        ("conv 1->6 5x5 pad 2, 28x28", conv1, (batch, 1, 28, 28)),
        ("conv 6->16 5x5, 14x14", conv2, (batch, 6, 14, 14)),
        ("max pool 2x2, 6x28x28", MaxPool2d(2), (batch, 6, 28, 28)),
        ("avg pool 2x2, 6x28x28", AvgPool2d(2), (batch, 6, 28, 28)),
        ("fc 400-120-84-10", Sequential(*layers[flatten:]), (batch, 16, 5, 5)),
    ]


def _layer_candidates(layer, shape, with_torch: bool):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    grad = rng.standard_normal(layer.forward(x).shape).astype(np.float32)
    # Batch last, as activations pass between the layers of a model.
    xb, gb = F.batch_last(x), F.batch_last(grad)
    forward = {"tinyconv": lambda: layer.forward_batch_last(xb)}
    both = {"tinyconv": lambda: (layer.forward_batch_last(xb), layer.backward_batch_last(gb))}
    if with_torch:
        import torch
        t = to_torch(layer if isinstance(layer, Sequential) else Sequential(layer))
        xt = torch.from_numpy(x).requires_grad_(True)
        gt = torch.from_numpy(grad)

        def torch_forward():
            with torch.no_grad():
                t(xt)

        def torch_both():
            xt.grad = None
            t(xt).backward(gt)
        forward["pytorch"] = torch_forward
        both["pytorch"] = torch_both
    return forward, both


def step_setup(spec: str, batch: int):
    """(model, images, labels, criterion, optimizer) for timing training steps of ``spec``."""
    model = build(spec, rng=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    return model, x, y, CrossEntropyLoss(), SGD(model.parameters(), lr=0.01, momentum=0.9)


def _step_candidates(spec: str, batch: int, with_torch: bool):
    """Training step (forward, loss, backward, SGD) and inference, both frameworks."""
    model, x, y, criterion, optimizer = step_setup(spec, batch)

    def step():
        model.train()
        train_step(model, criterion, optimizer, x, y)

    def infer():
        model.eval()
        model.forward(x)

    train, inference = {"tinyconv": step}, {"tinyconv": infer}
    if with_torch:
        import torch
        t, torch_step = _torch_training_step(model, x, y)
        xt = torch.from_numpy(x)

        def torch_infer():
            t.eval()
            with torch.no_grad():
                t(xt)
        train["pytorch"], inference["pytorch"] = torch_step, torch_infer
    return train, inference


def _torch_training_step(model, x, y):
    """(PyTorch twin of ``model``, its training step on ``x``, ``y``): the same
    weights, loss and SGD with momentum as :func:`step_setup`'s."""
    import torch
    t = to_torch(model)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.SGD(t.parameters(), lr=0.01, momentum=0.9)

    def torch_step():
        t.train()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(t(xt), yt).backward()
        opt.step()
    return t, torch_step


def _reference_speedup(budget: float) -> dict:
    """The literal reference against the fast path on LeNet-5's second conv layer."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 6, 14, 14))
    w = rng.standard_normal((16, 6, 5, 5))
    b = rng.standard_normal(16)
    literal = _seconds_per_call(lambda: reference.conv_forward(x[0], w, b), 1)
    fast_batch = 64
    xb = F.batch_last(np.repeat(x, fast_batch, axis=0))
    reps = _calibrate(lambda: F.conv2d_forward(xb, w, b), budget)
    fast = _seconds_per_call(lambda: F.conv2d_forward(xb, w, b), reps) / fast_batch
    return {"layer": "conv 6->16 5x5, 14x14, forward, float64, per image",
            "reference_s": literal, "fast_s": fast, "speedup": literal / fast}


# ----------------------------------------------------------------------------
# K workers against PyTorch with K threads
# ----------------------------------------------------------------------------

def _wait_for_all(world) -> None:
    """A barrier that sleeps while it waits: a worker waiting for rank 0 to
    time PyTorch must not spin on a core that PyTorch's threads need (MPI's
    own blocking calls poll the network and keep a core busy)."""
    if world.size == 1:
        return
    request = world.comm.Ibarrier()
    while not request.Test():
        time.sleep(0.005)


@contextmanager
def _every_core(blas_threads: int | None = None):
    """Let this process run on every core (mpiexec binds each worker to one),
    with ``blas_threads`` BLAS threads if given; afterwards, as before."""
    bound = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
    if bound is not None:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    try:
        if blas_threads is None:
            yield
        else:
            from threadpoolctl import threadpool_limits
            with threadpool_limits(limits=blas_threads, user_api="blas"):
                yield
    finally:
        if bound is not None:
            os.sched_setaffinity(0, bound)


def _worker_candidates(spec: str, batch: int, world, one_process: bool) -> tuple[dict, dict]:
    """The training steps timed for one row: (every worker's, rank 0's alone).

    Every worker runs ``"workers"``, its step on its share of the global
    batch with the sums (what ``--workers K`` trains with), and ``"shares
    alone"``, the same share without any sum: the floor that K busy cores
    allow. Rank 0 alone, the others sleeping, runs ``"one process"``, the
    whole batch with K BLAS threads (``--workers 1``; when ``one_process``),
    and ``"pytorch"``, PyTorch's step with K threads (needs PyTorch).
    """
    model, x, y, criterion, optimizer = step_setup(spec, batch)
    start, stop = shard_bounds(batch, world.rank, world.size)
    parallel = DataParallel(model, world) if world.size > 1 else None
    xs, ys = x[start:stop], y[start:stop]

    def step():
        with parallel or nullcontext():
            train_step(model, criterion, optimizer, xs, ys, parallel=parallel,
                       columns=(start, stop, batch))

    def share_alone():
        train_step(model, criterion, optimizer, xs, ys)

    together, alone = {"workers": step, "shares alone": share_alone}, {}
    if world.rank == 0 and one_process:
        one, x1, y1, criterion1, optimizer1 = step_setup(spec, batch)
        alone["one process"] = lambda: train_step(one, criterion1, optimizer1, x1, y1)
    if world.rank == 0 and torch_available():
        alone["pytorch"] = _torch_training_step(build(spec, rng=0), x, y)[1]
    return together, alone


def _time_workers(world, together: dict, alone: dict, contexts: dict, rounds: int,
                  budget: float) -> dict:
    """Like :func:`time_interleaved`, for the candidates of :func:`_worker_candidates`.

    Every worker runs each of ``together`` at once (rank 0 times it); rank 0
    runs each of ``alone`` while the others sleep, inside ``contexts[name]()``
    when given. Each round runs every candidate, in an order that turns
    round by round. The figures are rank 0's; others get an empty dict.
    """
    # Every worker must agree on the order: the other ranks know only how many
    # candidates rank 0 times alone.
    count = np.array([len(alone)])
    count = int(world.broadcast(count)[0]) if world.size > 1 else len(alone)
    slots = list(together) + [("alone", i) for i in range(count)]
    alone_names = list(alone)
    reps = {}
    for slot in slots:
        _wait_for_all(world)
        if slot in together:
            together[slot]()
            _wait_for_all(world)
            begin = time.perf_counter()
            together[slot]()
            n = np.array([max(1, int(budget / max(time.perf_counter() - begin, 1e-6)))])
            reps[slot] = int(world.broadcast(n)[0]) if world.size > 1 else int(n[0])
        elif world.rank == 0:
            name = alone_names[slot[1]]
            with contexts.get(name, nullcontext)():
                reps[slot] = _calibrate(alone[name], budget)
    samples = {slot: [] for slot in slots}
    for r in range(rounds):
        shift = r % len(slots)
        for slot in slots[shift:] + slots[:shift]:
            _wait_for_all(world)
            time.sleep(SETTLE_S)
            if slot in together:
                together[slot]()
                samples[slot].append(_seconds_per_call(together[slot], reps[slot]))
            elif world.rank == 0:
                name = alone_names[slot[1]]
                with contexts.get(name, nullcontext)():
                    alone[name]()
                    samples[slot].append(_seconds_per_call(alone[name], reps[slot]))
    if world.rank != 0:
        return {}
    return {(slot if slot in together else alone_names[slot[1]]):
            {"median": statistics.median(s), "min": min(s), "max": max(s), "rounds": rounds,
             "reps": reps[slot]} for slot, s in samples.items()}


def run_workers(world, batches=(64, 256), rounds: int = 7, budget: float = 0.15,
                out=print) -> dict:
    """Training steps of lenet5 and default with ``world.size`` workers (one
    thread each) against one process with as many BLAS threads, and against
    PyTorch with as many threads, at the same global batch.

    Every worker of ``world`` calls this; rank 0 prints through ``out`` and
    returns the figures (the others return an empty dict).
    """
    k = world.size
    # The K threads of one process, which run in worker 0 while the others
    # sleep, must have every core, or they would share worker 0's.
    contexts = {"pytorch": _every_core}
    if importlib.util.find_spec("threadpoolctl") is not None:
        contexts["one process"] = lambda: _every_core(blas_threads=k)
    if world.rank != 0:
        def out(*_):  # only rank 0 prints
            pass
    elif torch_available():
        # PyTorch's threads keep the cores that the process had when PyTorch
        # loaded (bound to one, they ran at half speed): load it on every core.
        with _every_core():
            import torch
            torch.set_num_threads(k)
    info = machine()
    info.update(workers=k, torch_threads=k if torch_available() else None)
    results = {"machine": info, "workers": k, "steps": [],
               "ratio": "pytorch time / tinyconv time"}
    out("tinyconv benchmark with workers: " + ", ".join(f"{a} {b}" for a, b in info.items()))
    out(f"ratio = PyTorch ({k} threads) time / tinyconv ({k} workers, 1 thread each) time; "
        f"median (lowest-highest) of {rounds} interleaved rounds; float32")
    if world.rank == 0 and "one process" not in contexts:
        out("threadpoolctl is not installed: no figures for one process with "
            f"{k} BLAS threads (pip install threadpoolctl)")
    header = f"{'':42} {'tinyconv':>26} {'pytorch':>26} {'ratio':>6}"
    for preset in ("lenet5", "default"):
        for batch in batches:
            together, alone = _worker_candidates(PRESETS[preset].spec, batch, world,
                                                 one_process="one process" in contexts)
            figures = _time_workers(world, together, alone, contexts, rounds, budget)
            if world.rank != 0:
                continue
            row = _row(f"{preset} training step, {k} workers",
                       {"tinyconv": figures["workers"],
                        **({"pytorch": figures["pytorch"]} if "pytorch" in figures else {})})
            row.update(batch=batch, model=preset, kind="training step", workers=k,
                       shares_alone=figures["shares alone"])
            out(f"\n{preset}, global batch {batch}\n{header}")
            out(f"{row['name'][:42]:42} {_format_rate(row['tinyconv'], batch):>26} "
                + (f"{_format_rate(row['pytorch'], batch):>26} {row['ratio']:6.2f}"
                   if "pytorch" in row else ""))
            out(f"{'  each worker on its share, no sums':42} "
                f"{_format_rate(row['shares_alone'], batch):>26}")
            if "one process" in figures:
                row["one_process"] = figures["one process"]
                row["speedup"] = figures["one process"]["median"] / row["tinyconv"]["median"]
                out(f"{f'  one process, {k} BLAS threads':42} "
                    f"{_format_rate(row['one_process'], batch):>26}")
                floor = row["shares_alone"]["median"] / row["one_process"]["median"]
                out(f"  {k} workers take {1 / row['speedup']:.2f}x the time of one process; "
                    f"without the sums {floor:.2f}x")
            results["steps"].append(row)
    return results if world.rank == 0 else {}


# ----------------------------------------------------------------------------
# Memory and a real epoch, each in a fresh process
# ----------------------------------------------------------------------------

def peak_rss_kib() -> int:
    """This process's peak resident set in KiB.

    Linux's VmHWM belongs to the process's own memory map, which ``exec``
    makes anew; ``ru_maxrss`` would also carry the parent's peak at fork time
    (the whole benchmark, PyTorch included) into a child. Elsewhere
    ``ru_maxrss`` is the best there is.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


_PEAK_SCRIPT = """
import sys
from tinyconv.app.bench import peak_rss_kib, step_setup
from tinyconv.models.presets import PRESETS
from tinyconv.training.loop import train_step
model, x, y, criterion, optimizer = step_setup(PRESETS[sys.argv[1]].spec, int(sys.argv[2]))
for _ in range(5):
    train_step(model, criterion, optimizer, x, y)
print(peak_rss_kib())
"""


def peak_training_memory(preset: str, batch: int) -> float:
    """Peak resident set (MiB) of a process that takes training steps of ``preset``."""
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, preset, str(batch)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


# Runs ``tinyconv`` with the given arguments, then reports its own peak
# resident set on stderr's last line.
_MEASURED_CLI = """
import sys
from tinyconv.app.bench import peak_rss_kib
from tinyconv.cli import main
status = main(sys.argv[1:])
print(peak_rss_kib(), file=sys.stderr)
sys.exit(status)
"""


def lenet5_epoch(data_dir: str | None) -> dict:
    """A whole Fashion-MNIST epoch of lenet5 through ``tinyconv train``:
    loading, shuffling, training, validation and test evaluation included."""
    command = ["train", "--arch", "lenet5", "--epochs", "1"]
    if data_dir:
        command += ["--data-dir", data_dir]
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", _MEASURED_CLI, *command, "--out", out],
                                capture_output=True, text=True)
        seconds = time.perf_counter() - start
    lines = result.stderr.strip().splitlines() or ["failed"]
    if result.returncode != 0:
        return {"error": lines[-2] if len(lines) > 1 else lines[-1]}
    return {"seconds": seconds, "peak_rss_mib": int(lines[-1]) / 1024,
            "command": "tinyconv " + " ".join(command)}


def worker_epochs(workers: int, rounds: int, data_dir: str | None) -> dict:
    """One Fashion-MNIST epoch of default through ``tinyconv train``, with one
    worker and with ``workers``, in ``rounds`` alternating pairs.

    Each figure is the epoch's own time as ``train`` reports it (training
    and validation; not loading or the test); the ratio is the median of
    the rounds' ratios (K workers' time / one worker's), each pair run back
    to back, so that the machine's drift from minute to minute cancels.
    """
    command = ["train", "--arch", "default", "--epochs", "1"]
    if data_dir:
        command += ["--data-dir", data_dir]
    seconds = {1: [], workers: []}
    for r in range(rounds):
        for k in (1, workers) if r % 2 == 0 else (workers, 1):
            with tempfile.TemporaryDirectory() as out:
                result = subprocess.run([sys.executable, "-m", "tinyconv", *command,
                                         "--workers", str(k), "--out", out],
                                        capture_output=True, text=True)
                if result.returncode != 0:
                    lines = result.stderr.strip().splitlines() or ["failed"]
                    return {"error": lines[-1]}
                history = json.loads((Path(out) / "history.json").read_text())
            seconds[k].append(history[-1]["seconds"])
    ratios = [many / one for many, one in zip(seconds[workers], seconds[1])]
    return {"command": "tinyconv " + " ".join(command), "workers": workers,
            "one_worker_s": seconds[1], "workers_s": seconds[workers],
            "ratio": statistics.median(ratios), "ratios": ratios}


# ----------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------

def machine() -> dict:
    """CPU, thread counts and which BLAS (and which of its kernels) NumPy uses."""
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info
        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if blas:
            info["blas"] = (f"{blas[0].get('internal_api')} {blas[0].get('version')}, "
                            f"kernel {blas[0].get('architecture')}, "
                            f"{blas[0].get('num_threads')} threads")
            info["blas_threads"] = blas[0].get("num_threads")
    except ImportError:
        info["blas"] = "unknown (install threadpoolctl to see)"
    info["OPENBLAS_CORETYPE"] = os.environ.get("OPENBLAS_CORETYPE", "(not set)")
    info["load_average"] = round(os.getloadavg()[0], 2)
    if torch_available():
        import torch
        info["torch"] = torch.__version__
    return info


def _row(name: str, figures: dict) -> dict:
    ours = figures["tinyconv"]
    row = {"name": name, "tinyconv": ours}
    if "pytorch" in figures:
        row["pytorch"] = figures["pytorch"]
        row["ratio"] = figures["pytorch"]["median"] / ours["median"]
    return row


def _format_time(figure: dict) -> str:
    return (f"{figure['median'] * 1e3:8.2f} ms "
            f"({figure['min'] * 1e3:.2f}-{figure['max'] * 1e3:.2f})")


def _format_rate(figure: dict, batch: int) -> str:
    return (f"{batch / figure['median']:8.0f} img/s "
            f"({batch / figure['max']:.0f}-{batch / figure['min']:.0f})")


def run(batches=(64, 256), rounds: int = 7, budget: float = 0.15, epoch: bool = False,
        memory: bool = True, data_dir: str | None = None, out=print) -> dict:
    """Run every measurement, print the table through ``out``, return the figures."""
    with_torch = torch_available()
    info = machine()
    if with_torch:
        import torch
        torch.set_num_threads(info.get("blas_threads") or os.cpu_count() or 1)
        info["torch_threads"] = torch.get_num_threads()
    results = {"machine": info, "layers": [], "steps": [], "ratio": "pytorch time / tinyconv time"}
    out("tinyconv benchmark: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    if info["load_average"] > 0.5:
        # With more runnable threads than cores, OpenBLAS's threads wait for
        # one another and a step can take ten times longer.
        out(f"warning: the machine is busy (load average {info['load_average']}): "
            "other programs skew these figures")
    if not with_torch:
        out("PyTorch is not installed: tinyconv's figures only, no ratios "
            "(pip install torch==2.13.0 to compare).")
    out("ratio = PyTorch time / tinyconv time (above 1.0: tinyconv is faster); "
        f"median (lowest-highest) of {rounds} interleaved rounds; float32")

    header = f"{'':42} {'tinyconv':>26} {'pytorch':>26} {'ratio':>6}"
    for batch in batches:
        out(f"\nLeNet-5 layers, batch {batch} (tinyconv batch last, PyTorch NCHW)\n{header}")
        for name, layer, shape in lenet5_layers(batch):
            forward, both = _layer_candidates(layer, shape, with_torch)
            for what, candidates in (("forward", forward), ("forward+backward", both)):
                row = _row(f"{name}, {what}", time_interleaved(candidates, rounds, budget))
                row["batch"] = batch
                results["layers"].append(row)
                out(f"{row['name'][:42]:42} {_format_time(row['tinyconv']):>26} "
                    + (f"{_format_time(row['pytorch']):>26} {row['ratio']:6.2f}"
                       if with_torch else ""))

    for preset in ("lenet5", "default"):
        for batch in batches:
            train, inference = _step_candidates(PRESETS[preset].spec, batch, with_torch)
            out(f"\n{preset}, batch {batch}\n{header}")
            for what, candidates in (("training step", train), ("inference", inference)):
                row = _row(f"{preset} {what}", time_interleaved(candidates, rounds, budget))
                row.update(batch=batch, model=preset, kind=what)
                results["steps"].append(row)
                out(f"{row['name'][:42]:42} {_format_rate(row['tinyconv'], batch):>26} "
                    + (f"{_format_rate(row['pytorch'], batch):>26} {row['ratio']:6.2f}"
                       if with_torch else ""))

    ref = _reference_speedup(budget)
    results["reference"] = ref
    out(f"\nliteral reference vs fast path ({ref['layer']}): "
        f"{ref['reference_s'] * 1e3:.1f} ms vs {ref['fast_s'] * 1e3:.3f} ms, "
        f"{ref['speedup']:.0f}x faster")

    if memory:
        results["peak_memory_mib"] = {}
        for preset in ("lenet5", "default"):
            for batch in batches:
                mib = peak_training_memory(preset, batch)
                results["peak_memory_mib"][f"{preset}@{batch}"] = mib
                out(f"peak resident memory, {preset} training at batch {batch}: {mib:.0f} MiB")
    if epoch:
        _keep(results, "lenet5_epoch", lenet5_epoch(data_dir), out, "lenet5 Fashion-MNIST epoch",
              lambda r: f"lenet5 Fashion-MNIST epoch end to end ({r['command']}): "
                        f"{r['seconds']:.1f} s, peak resident memory {r['peak_rss_mib']:.0f} MiB")
        cores = available_cores()
        if cores > 1 and mpi_available() is None:
            _keep(results, "worker_epochs", worker_epochs(cores, EPOCH_ROUNDS, data_dir), out,
                  f"default epochs with 1 and {cores} workers",
                  lambda r: f"default Fashion-MNIST epoch ({r['command']}), {EPOCH_ROUNDS} pairs: "
                            f"1 worker {_range_s(r['one_worker_s'])}, {cores} workers "
                            f"{_range_s(r['workers_s'])}; {cores} workers / 1: median "
                            f"{r['ratio']:.2f} ({min(r['ratios']):.2f}-{max(r['ratios']):.2f})")
    return results


def _keep(results: dict, key: str, result: dict, out, what: str, line) -> None:
    """Store ``result`` under ``key`` and print ``line(result)``, or that ``what`` failed."""
    results[key] = result
    out(f"{what}: failed: {result['error']}" if "error" in result else line(result))


def _range_s(seconds: list[float]) -> str:
    return f"{min(seconds):.1f}-{max(seconds):.1f} s"
