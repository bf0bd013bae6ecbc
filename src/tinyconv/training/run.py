"""A whole training run, as ``tinyconv train`` does it, callable from Python.

:func:`train` resolves the model (a preset or a spec), takes the preset's
recipe with any setting given in its place, loads the data and its test
split, holds out validation images, fits the normalisation on the training
images, trains with :func:`~tinyconv.training.loop.fit`, evaluates on the test
set and saves ``model.npz`` next to the checkpoint and history. The command
line only parses its options into these arguments and prints what comes back.
"""

from __future__ import annotations

import fcntl
import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.datasets import KNOWN, image_folder_channels
from ..data.loader import Augment, Normalization, train_val_split
from ..data.splits import training_splits
from ..models.presets import CUSTOM_RECIPE, PRESETS, fit_to_data, preset_name, resolve
from ..models.serialize import MODEL_FILE, check_outputs, save_model
from ..models.spec import build, input_shape
from ..nn.layers import Module
from . import optim
from .evaluation import Evaluation, evaluate
from .history import History
from .loop import fit

__all__ = ["train", "TrainingRun", "make_optimizer", "RunDirectoryBusy", "LOCK_FILE"]

#: Held in a run's directory while a training run writes into it.
LOCK_FILE = ".tinyconv.lock"


class RunDirectoryBusy(ValueError):
    """Another live training run is writing into the same directory."""


@contextmanager
def claimed(out: Path):
    """Hold ``out`` for one training run at a time, while the block runs.

    The claim is an exclusive ``flock`` on ``out/.tinyconv.lock``: the kernel
    drops it when its process ends, even by ``kill -9``, so the file a dead
    run leaves behind blocks nobody. Once held, the temporary files a killed
    run may have left mid-write (``.NAME.*.tmp``, see :mod:`tinyconv.fileio`)
    are removed: no writer is alive to finish them.
    """
    out.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 64, 0).decode(errors="replace").strip() or "?"
            raise RunDirectoryBusy(f"{out} is in use by another training run (process "
                                   f"{holder}); wait for it to end, or give another "
                                   f"--out") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        for leftover in out.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        yield out
    finally:
        os.close(descriptor)  # closing it releases the flock


@dataclass
class TrainingRun:
    """What :func:`train` returns.

    ``test`` is the final evaluation on the test set; ``test_flip_average``
    the same with each image averaged with its flip (only for a model trained
    with augmentation, else None). ``out`` is the run's directory, or None
    when nothing was written.
    """

    model: Module
    spec: str
    classes: list[str]
    normalization: Normalization
    history: History
    test: Evaluation
    test_flip_average: Evaluation | None
    metadata: dict
    out: Path | None


def make_optimizer(model: Module, settings: dict, momentum: float = 0.9):
    """(optimizer, schedule or None) for ``model`` from a recipe's ``settings``."""
    params = model.parameters()
    if settings["optimizer"] == "adam":
        optimizer = optim.Adam(params, lr=settings["lr"], weight_decay=settings["weight_decay"])
    elif settings["optimizer"] == "sgd":
        optimizer = optim.SGD(params, lr=settings["lr"], momentum=momentum,
                              weight_decay=settings["weight_decay"])
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {settings['optimizer']!r}")
    if settings["schedule"] == "step":
        return optimizer, optim.StepLR(optimizer, step_size=math.ceil(settings["epochs"] / 3))
    if settings["schedule"] == "cosine":
        return optimizer, optim.CosineLR(optimizer, total_epochs=settings["epochs"])
    if settings["schedule"] != "none":
        raise ValueError(f"schedule must be 'none', 'step' or 'cosine', "
                         f"got {settings['schedule']!r}")
    return optimizer, None


def _fit_input(spec: str, preset: str | None, data: str, image_size: int | None) -> str:
    """A preset's input fitted to an image folder's pictures; refuses an
    ``image_size`` that cannot apply."""
    if image_size is not None and not preset:
        raise ValueError(f"--image-size fits a preset to your pictures; a spec gives its "
                         f"own size in INPUT(channels, height, width), got {image_size}")
    if data in KNOWN:
        if image_size is not None and (image_size, image_size) != input_shape(spec)[1:]:
            raise ValueError(f"{data}'s images are {input_shape(spec)[1]}x"
                             f"{input_shape(spec)[2]}; --image-size is for a folder of "
                             f"your own pictures, got {image_size}")
        return spec
    if not preset or not Path(data).is_dir():
        return spec
    size = None if image_size is None else (image_size, image_size)
    return fit_to_data(spec, channels=image_folder_channels(data), size=size)


def train(arch: str = "default", data: str = "fashion-mnist", *, out=None,
          epochs: int | None = None, batch_size: int = 64, optimizer: str | None = None,
          lr: float | None = None, momentum: float = 0.9, weight_decay: float | None = None,
          schedule: str | None = None, val_fraction: float | None = None,
          augment: bool | None = None, max_shift: int | None = None,
          patience: int | None = None, seed: int = 0, resume: bool = False,
          image_size: int | None = None, limit_train: int | None = None, limit_test: int | None = None, data_dir=None,
          download: bool = True, mirror: str | None = None, progress: bool = True,
          log=print, world=None) -> TrainingRun:
    """Train a model on ``data`` and evaluate it on the test set; return the run.

    A preset fits itself to the data, as torchvision's ``num_classes`` does:
    its last layer gets one unit per class, and for an image folder its input
    takes the pictures' channels (3 if any is in colour, else 1) and
    ``image_size`` (default the preset's 28). A spec given as text is taken
    as written, and refused before training when it does not fit the data.

    Args:
        arch: a preset name (``tinyconv.PRESETS``) or a spec.
        data: "fashion-mnist", "mnist" or a folder of images, one subfolder per
            class (with train/ and test/ subfolders, or without: then a sixth
            is held out as the test set, see :mod:`tinyconv.data.splits`).
        out: the run's directory: checkpoint, history and ``model.npz`` go
            there. None writes nothing.
        epochs, optimizer, lr, weight_decay, schedule, val_fraction, augment,
            max_shift: None takes the preset's recipe (:class:`Recipe`).
        batch_size, momentum, patience, seed, resume: as :func:`fit` takes them.
        image_size: the side of a preset's square input, for an image folder.
        limit_train, limit_test: use only the first N images (quick trials).
        data_dir, download, mirror: where the dataset files are found
            (:func:`tinyconv.data.datasets.load_dataset`).
        progress: a progress bar per epoch on stderr; ``log`` gets each line
            of news (``print`` by default).
        world: None for one process, or the workers that share every batch
            (:mod:`tinyconv.training.distributed`), each making this same
            call; only rank 0 logs and writes files, and every worker
            returns the same run.
    """
    workers = 1 if world is None else world.size
    if world is not None and world.rank != 0:
        log, progress = (lambda *_: None), False
    spec = resolve(arch)
    preset = preset_name(arch)
    recipe = PRESETS[preset].recipe if preset else CUSTOM_RECIPE
    settings = recipe.overridden(epochs=epochs, optimizer=optimizer, lr=lr,
                                 weight_decay=weight_decay, schedule=schedule,
                                 val_fraction=val_fraction, augment=augment,
                                 max_shift=max_shift)
    if patience and not settings["val_fraction"]:
        why = f" (the {preset} preset trains on every image)" if val_fraction is None else ""
        raise ValueError(f"--patience needs validation images, but --val-fraction is 0{why}; "
                         f"give --val-fraction 0.1, say")
    out = None if out is None else Path(out)
    spec = _fit_input(spec, preset, data, image_size)
    data, test, holdout = training_splits(data, input_shape(spec), seed=seed,
                                          limit_train=limit_train, limit_test=limit_test,
                                          log=log, data_dir=data_dir, download=download,
                                          mirror=mirror)

    rng = np.random.default_rng(seed)
    train_idx, val_idx = train_val_split(len(data), settings["val_fraction"], rng)
    train_data = data.subset(train_idx)
    val_data = data.subset(val_idx) if len(val_idx) else None
    normalization = Normalization.fit(train_data.images)
    if preset:
        spec = fit_to_data(spec, classes=len(data.classes))
    model = build(spec, rng=rng)
    check_outputs(model, spec, data.classes, data.name)
    opt, scheduler = make_optimizer(model, settings, momentum)
    augmentation = (Augment(max_shift=settings["max_shift"], hflip=True) if settings["augment"]
                    else None)
    n_params = sum(p.size for p in model.parameters())
    log(f"model: {spec} ({n_params:,} parameters)")
    log(f"workers: {workers}" + (f", each on its share of every batch of {batch_size} images"
                                 if workers > 1 else " (one process)"))
    log(f"data: {data.name}, {len(train_data)} training and {len(val_idx)} validation images; "
        f"{settings['optimizer']} lr {settings['lr']:g}, {settings['epochs']} epochs, "
        f"schedule {settings['schedule']}, augmentation {augmentation or 'off'}")
    writer = world is None or world.rank == 0  # only rank 0 writes into the run's directory
    with claimed(out) if out is not None and writer else nullcontext():
        start = time.perf_counter()
        history = fit(model, train_data, val_data, epochs=settings["epochs"],
                      batch_size=batch_size, optimizer=opt, scheduler=scheduler, seed=seed,
                      normalization=normalization, augment=augmentation, out_dir=out,
                      resume=resume, patience=patience, spec=spec, classes=data.classes,
                      log=log, progress=progress, world=world)
        seconds = time.perf_counter() - start
        result = evaluate(model, test, normalization, world=world)
        # A model that learnt from flipped images is also scored on averaging
        # each test image with its flip (evaluate --flip-average).
        flip_result = (evaluate(model, test, normalization, flip_average=True, world=world)
                       if augmentation else None)
        metadata = {
            "data": data.name if data.name in KNOWN else str(Path(data.name).resolve()),
            "arch": arch, "epochs": len(history), "batch_size": batch_size,
            "optimizer": settings["optimizer"], "lr": settings["lr"],
            "weight_decay": settings["weight_decay"], "schedule": settings["schedule"],
            "augment": bool(augmentation), "max_shift": settings["max_shift"], "seed": seed,
            "train_images": len(train_data), "val_images": len(val_idx),
            "workers": workers, "train_seconds": round(seconds, 1),
            "test_accuracy": result.accuracy,
            "test_loss": result.loss, "test_images": result.n,
        }
        if flip_result:
            metadata["test_accuracy_flip_average"] = flip_result.accuracy
        if holdout:
            metadata["test_holdout"] = holdout
        if out is not None and writer:
            save_model(out / MODEL_FILE, model, spec, data.classes, normalization, metadata)
    return TrainingRun(model, spec, list(data.classes), normalization, history, result,
                       flip_result, metadata, out)
