"""Rewrite the benchmark tables of benchmarks/RESULTS.md from `tinyconv bench --json` runs.

    python benchmarks/results.py bench-1.json [bench-2.json ...]

Each ratio (PyTorch's time / tinyconv's) is given as the median of the runs,
then the lowest and highest; the machine line comes from the first run. Only
the part of RESULTS.md between the ``bench`` markers is replaced, atomically.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from tinyconv.fileio import atomic_write_text

RESULTS = Path(__file__).resolve().with_name("RESULTS.md")
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"**{statistics.median(values):.2f}** ({min(values):.2f}-{max(values):.2f})"


def _range(values: list[float], spec: str) -> str:
    low, high = format(min(values), spec), format(max(values), spec)
    return low if low == high else f"{low} to {high}"


def tables(runs: list[dict]) -> str:
    """The markdown for ``runs`` (each a `tinyconv bench --json` document)."""
    machine = runs[0]["machine"]
    lines = [f"{len(runs)} run(s) of `tinyconv bench`; machine: "
             + ", ".join(f"{key} {value}" for key, value in machine.items()) + ".", ""]
    rows = {}
    for run in runs:
        for row in run.get("steps", []) + run.get("layers", []):
            if "ratio" in row:
                rows.setdefault(row["name"], {}).setdefault(row["batch"], []).append(row["ratio"])
    batches = sorted({batch for by_batch in rows.values() for batch in by_batch})
    if rows:
        lines += ["| PyTorch time / tinyconv time | " + " | ".join(f"batch {b}" for b in batches)
                  + " |", "|---" * (len(batches) + 1) + "|"]
        for name, by_batch in rows.items():
            lines.append(f"| {name} | " + " | ".join(
                _spread(by_batch[b]) if b in by_batch else "" for b in batches) + " |")
        lines.append("")
    workers = {}
    for run in runs:
        for row in run.get("steps", []):
            if "one_process" in row:
                key = (row["model"], row["batch"], row["workers"])
                workers.setdefault(key, {"with": [], "without": []})
                workers[key]["with"].append(1 / row["speedup"])
                workers[key]["without"].append(row["shares_alone"]["median"]
                                               / row["one_process"]["median"])
    if workers:
        lines += ["| training step: K workers' time / one process's (K BLAS threads) "
                  "| with the sums | each worker on its share, no sums |", "|---|---|---|"]
        for (model, batch, k), ratios in workers.items():
            lines.append(f"| {model}, global batch {batch}, K = {k} | "
                         f"{_spread(ratios['with'])} | {_spread(ratios['without'])} |")
        lines.append("")
    speedups = [run["reference"]["speedup"] for run in runs if "reference" in run]
    if speedups:
        lines.append(f"The literal reference is {_range(speedups, ',.0f')} times slower than "
                     f"the fast path ({runs[0]['reference']['layer']}).")
    memory = [run["peak_memory_mib"] for run in runs if "peak_memory_mib" in run]
    if memory:
        lines.append("Peak resident memory of a training process: " + ", ".join(
            f"{key} {statistics.median(m[key] for m in memory):.0f} MiB" for key in memory[0])
            + ".")
    epochs = [run["lenet5_epoch"] for run in runs if "seconds" in run.get("lenet5_epoch", {})]
    if epochs:
        lines.append(f"A lenet5 Fashion-MNIST epoch end to end: "
                     f"{_range([e['seconds'] for e in epochs], '.1f')} s.")
    pairs = [run["worker_epochs"] for run in runs if "ratio" in run.get("worker_epochs", {})]
    if pairs:
        k = pairs[0]["workers"]
        one = [s for p in pairs for s in p["one_worker_s"]]
        many = [s for p in pairs for s in p["workers_s"]]
        lines.append(f"A default Fashion-MNIST epoch (`{pairs[0]['command']}`, validation "
                     f"included) with {k} workers takes {_spread([p['ratio'] for p in pairs])} "
                     f"of one worker's time (each run's median of its pairs of epochs; one "
                     f"worker {_range(one, '.1f')} s, {k} workers {_range(many, '.1f')} s).")
    return "\n".join(lines)


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    runs = [json.loads(Path(path).read_text(encoding="utf-8")) for path in paths]
    text = RESULTS.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    atomic_write_text(RESULTS, f"{head}{START}\n{tables(runs)}\n{END}{tail}")
    print(f"{RESULTS}: tables from {len(runs)} run(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
