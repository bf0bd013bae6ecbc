"""Small training runs that tests/test_distributed.py makes with one process and with K workers.

Run by the tests under ``mpiexec -n K python tests/mpi_worker.py OUT [CASE...]``:
every rank trains each case with the MPI world, and rank 0 writes the final
weights to ``OUT/<case>.npz``. The tests make the same runs in their own
process with ``world=None``, the one-process path, and compare.

The data are synthetic 1x12x12 images of 3 classes (each class a bright
square in its own place, plus noise), so the runs take a fraction of a second
and the file needs no data set.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tinyconv.data.loader import Augment, Normalization
from tinyconv.models.spec import build
from tinyconv.nn.layers import Module, Sequential
from tinyconv.training import optim
from tinyconv.training.loop import fit

SPECS = {
    "lenet5": "INPUT(1,12,12) -> CONV(6,3,pad=1) -> MAXPOOL(2) -> CONV(8,3) -> MAXPOOL(2) "
              "-> FC(16) -> FC(3)",
    "default": "INPUT(1,12,12) -> [CONV(4,3,pad=1) -> BN -> MAXPOOL(2)] -> "
               "[CONV(8,3,pad=1) -> BN -> MAXPOOL(2)] -> FC(16) -> FC(3)",
    "dropout": "INPUT(1,12,12) -> CONV(4,3,pad=1) -> BN -> MAXPOOL(2) -> FC(16) -> BN "
               "-> DROPOUT(0.3) -> FC(3)",
}

# name: (spec, dtype, images, batch size, epochs, augment)
CASES = {
    "lenet5-float64": ("lenet5", np.float64, 200, 64, 1, True),
    "default-float64": ("default", np.float64, 200, 64, 1, True),
    "dropout-float64": ("dropout", np.float64, 200, 64, 1, True),
    "default-float32": ("default", np.float32, 200, 64, 1, True),
    # 193 = 3·64 + 1: the last batch has one image, so some workers have none.
    "lenet5-tiny-last-batch": ("lenet5", np.float64, 193, 64, 1, False),
    "default-tiny-last-batch": ("default", np.float64, 193, 64, 1, False),
}


class AsDtype(Module):
    """Casts the model's input to ``dtype``: the loader's images are float32,
    and a float64 model must compute in float64 from its first layer."""

    def __init__(self, dtype):
        self.dtype = dtype

    def forward_batch_last(self, x):
        return np.asarray(x, self.dtype)

    def backward_batch_last(self, grad_output, input_grad=True):
        return np.asarray(grad_output, np.float32) if input_grad else None


def synthetic_data(n: int, seed: int = 7):
    """``n`` uint8 images (n, 1, 12, 12) of 3 classes, and their labels (n,)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 90, (n, 1, 12, 12))
    for k in range(3):
        images[labels == k, 0, 2 + 3 * k:6 + 3 * k, 3:9] += 150
    return images.astype(np.uint8), labels


def setup(case: str):
    """(model, optimizer, data, fit's keyword arguments) for ``case``, the same on every rank."""
    spec, dtype, n, batch_size, epochs, augment = CASES[case]
    model = Sequential(AsDtype(dtype), *build(SPECS[spec], rng=3, dtype=dtype).layers)
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    data = synthetic_data(n)
    kwargs = dict(epochs=epochs, batch_size=batch_size, seed=5,
                  normalization=Normalization.fit(data[0]),
                  augment=Augment(max_shift=1) if augment else None, progress=False,
                  log=lambda *_: None)
    return model, optimizer, data, kwargs


def train_case(case: str, world=None, **overrides) -> dict[str, np.ndarray]:
    """Train ``case`` (on ``world``, or one process); return the final weights and statistics."""
    model, optimizer, data, kwargs = setup(case)
    fit(model, data, None, optimizer=optimizer, world=world, **{**kwargs, **overrides})
    return {name: np.array(value) for name, value in model.state_dict().items()}


def main(out: str, cases: list[str]) -> None:
    from tinyconv.training.distributed import mpi_world
    world = mpi_world()
    for case in cases or CASES:
        state = train_case(case, world)
        if world.rank == 0:
            np.savez(Path(out) / f"{case}.npz", **state)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
