"""Training: the loop that makes a network learn, and its evaluation.

:func:`fit` repeats, once per epoch, the tutorial's three training steps
(FORMULAS.md, "Training: backpropagation") over mini-batches: forward pass,
cross-entropy loss, backward pass (δ flows back, eq. 5.1-5.3, and every
weight gets its gradient), then an optimizer step. After each epoch it
validates on held-out images, records the epoch in a :class:`History`, and
writes a checkpoint.

Reproducibility: everything random in an epoch comes from generators seeded
by ``(seed, epoch)`` alone: the order of the images and their augmentation
(one generator, which :func:`tinyconv.data.loader.batches` draws both from), and
every dropout mask. Nothing carries over from one epoch to the next except the
weights, the batch-norm statistics and the optimizer's and schedule's state,
all of which the checkpoint holds. So a run resumed from a checkpoint ends
with exactly the weights of a run that was never interrupted.

With several workers (``world``, :mod:`tinyconv.training.distributed`) each
draws the same numbers and trains on its share of every batch; they end with
the weights one process would have, up to rounding, resumed or not.

Files in ``out_dir``, each written atomically (see :mod:`tinyconv.fileio`):

- ``checkpoint.npz``: everything needed to continue (``resume=True``);
- ``history.csv`` and ``history.json``: one row per epoch.

Shapes: images (N, C, H, W); labels (N,); logits and probabilities
(N, classes).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from ..checks import check_int
from ..data.loader import batches, data_size, shard_bounds
from ..models.spec import format_spec
from ..nn.layers import Module
from ..nn.losses import CrossEntropyLoss
from .checkpoint import CHECKPOINT, Progress, load_checkpoint, run_settings, save_checkpoint
from .distributed import DataParallel, check_same
from .evaluation import evaluate
from .history import History
from .progress import ProgressBar

__all__ = ["fit", "train_step", "TrainingDiverged"]

# Each epoch's generators are seeded with (seed, epoch, stream), one stream per use.
_BATCHES, _DROPOUT = 0, 1


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says when and what to try."""


def _seed_epoch(model: Module, seed: int, epoch: int) -> np.random.Generator:
    """Re-seed every dropout layer from (seed, epoch); return the generator for
    the epoch's order of images and augmentation."""
    for index, module in enumerate(model.modules()):
        if isinstance(getattr(module, "rng", None), np.random.Generator):
            module.rng = np.random.default_rng([seed, epoch, _DROPOUT, index])
    return np.random.default_rng([seed, epoch, _BATCHES])


def _diverged(what: str, value: float, epoch: int, lr: float, checkpoint,
              last_good: int) -> TrainingDiverged:
    """The error for a NaN or infinite ``what``, saying what is left on disk."""
    if checkpoint is not None and last_good > 0:
        kept = f"The last good checkpoint, {checkpoint} (after epoch {last_good}), is kept."
    else:
        kept = "No checkpoint had been written yet."
    return TrainingDiverged(f"training diverged: the {what} became {value} in epoch {epoch}; "
                            f"try a smaller learning rate than {lr:g}. {kept}")


def train_step(model: Module, criterion, optimizer, x, y, diverged=None, parallel=None,
               columns=None) -> tuple[float, int]:
    """One step of the tutorial's training on a batch; returns (loss, right answers).

    Forward pass, loss, backward pass (δ flows back, eq. 5.1-5.3, and every
    parameter gets its gradient), then the optimizer's update. ``x`` is
    (n, C, H, W) float, ``y`` (n,) int. The loss is the batch's mean, and
    the right answers count the images whose largest logit is their label.
    When the loss is not finite, ``diverged("loss", loss)`` makes the error
    raised before any weight changes (None: no check).

    With data-parallel workers, ``parallel`` is their
    :class:`~tinyconv.training.distributed.DataParallel` and x, y are this
    worker's ``columns = (start, stop, total)`` of a batch of ``total``
    images (n may be 0); the gradients, the loss and the right answers are
    then the whole batch's, and every worker makes the same update.
    """
    n = len(y)
    total = n if columns is None else columns[2]
    optimizer.zero_grad()
    if parallel is not None:
        parallel.share(columns)
    logits = model.forward(x)
    if n:
        loss = criterion.forward(logits, y)
        delta = criterion.backward()
        if n != total:
            # The mean over this worker's n images, scaled by n / total, is
            # its share of the whole batch's mean.
            delta *= delta.dtype.type(n / total)
    else:
        loss, delta = 0.0, np.zeros_like(logits)
    # The images' own δ is never used: skipping it saves a third of conv1's backward.
    model.backward(delta, input_grad=False)
    right = int(np.sum(logits.argmax(axis=1) == y))
    if parallel is not None:
        loss_sum, right = parallel.sum_gradients(loss * n, right)
        loss = loss_sum / total
    if diverged is not None and not math.isfinite(loss):
        raise diverged("loss", loss)
    optimizer.step()
    return loss, right


def _train_epoch(model, data, *, batch_size, optimizer, normalization, augment, rng,
                 criterion, bar, diverged, parallel=None) -> tuple[float, float]:
    """One pass over ``data``; returns (mean loss, accuracy) over its images.

    ``diverged(what, value)`` makes the error raised when the loss is not finite.
    With ``parallel`` (a :class:`~tinyconv.training.distributed.DataParallel`)
    this worker trains on its share of each batch, and the loss and accuracy
    returned are still the whole epoch's.
    """
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    world = None if parallel is None else parallel.world
    shard = None if world is None else (world.rank, world.size)
    size = data_size(data)
    # Overflows on the way to divergence end in a non-finite loss, which the
    # check below reports with advice; NumPy's warnings would only come first.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for x, y in batches(data, batch_size, shuffle=True, rng=rng,
                            normalization=normalization, augment=augment, shard=shard):
            n = len(y) if shard is None else min(batch_size, size - seen)  # the whole batch's
            columns = None if shard is None else (*shard_bounds(n, *shard), n)
            loss, right = train_step(model, criterion, optimizer, x, y, diverged,
                                     parallel, columns)
            total_loss += loss * n
            correct += right
            seen += n
            if bar is not None:
                bar.update(n, loss=total_loss / seen, acc=correct / seen)
    return total_loss / seen, correct / seen


def fit(model: Module, train_data, val_data, *, epochs: int, batch_size: int, optimizer,
        scheduler=None, seed: int, normalization, augment=None, out_dir=None,
        resume: bool = False, patience: int | None = None, progress: bool = True,
        log=print, spec=None, classes=None, world=None) -> History:
    """Train ``model`` for ``epochs`` epochs; return the :class:`History`.

    Args:
        model: a network that outputs logits (N, classes).
        train_data, val_data: Datasets or (images uint8 (N, C, H, W), labels (N,))
            pairs; ``val_data`` may be None (then no early stopping).
        epochs: the total number of epochs, counting those a resumed run already did.
        batch_size: images per optimizer step.
        optimizer: a :mod:`tinyconv.training.optim` optimizer over ``model.parameters()``.
        scheduler: a schedule (:class:`~tinyconv.training.optim.CosineLR`...), stepped per epoch.
        seed: a non-negative int; with the same seed a run repeats bit for bit.
        normalization: scales uint8 batches to float32 (fit on the training images).
        augment: an optional :class:`~tinyconv.data.loader.Augment`, drawn from the
            epoch's generator.
        out_dir: where the checkpoint and history go; None writes nothing.
        resume: continue from ``out_dir/checkpoint.npz``. Its run must have
            had the same settings: seed, batch size, optimizer and its
            hyperparameters, schedule, augmentation, normalisation, training
            and validation data; only ``epochs`` may be larger. Without
            ``resume`` a fresh run overwrites.
        patience: stop after this many epochs without a lower validation loss,
            and end with the best epoch's weights; None trains every epoch.
        progress: show a progress bar per epoch on stderr.
        log: called with one summary line per epoch (``print`` by default).
        spec, classes: stored in the checkpoint so that it describes itself;
            on resume a different spec is refused.
        world: None for one process; else the workers
            (:mod:`tinyconv.training.distributed`) that share every batch,
            each running this same call. They must have the same data,
            settings and initial model (checked); all read the checkpoint
            on resume (with any number of workers), and only rank 0 logs,
            shows progress and writes files.

    Raises:
        TrainingDiverged: the loss became NaN or infinite; the checkpoint on
            disk is still the last good epoch's.
        CheckpointError: ``resume`` without a usable checkpoint of this run.
    """
    check_int(epochs, "epochs", 1)
    check_int(batch_size, "batch_size", 1)
    check_int(seed, "seed", 0)
    if patience is not None:
        check_int(patience, "patience", 1)
        if val_data is None:
            raise ValueError("early stopping (patience) needs validation data, got val_data=None")
    if data_size(train_data) == 0:
        raise ValueError("fit needs training images, got an empty dataset")
    out_dir = None if out_dir is None else Path(out_dir)
    checkpoint = None if out_dir is None else out_dir / CHECKPOINT
    parallel = None if world is None or world.size == 1 else DataParallel(model, world)
    writer = world is None or world.rank == 0
    if not writer:
        log, progress = (lambda *_: None), False
    text = None if spec is None else format_spec(spec)
    run = dict(spec=text, classes=None if classes is None else [str(c) for c in classes],
               settings=run_settings(train_data, val_data, seed=seed, batch_size=batch_size,
                                      optimizer=optimizer, scheduler=scheduler,
                                      normalization=normalization, augment=augment))
    if resume:
        if checkpoint is None:
            raise ValueError("resume needs out_dir, the directory holding checkpoint.npz")
        state = load_checkpoint(checkpoint, model, optimizer, scheduler, run)
        log(f"resumed from {checkpoint} after epoch {state.epoch}")
    else:
        state = Progress()
        if out_dir is not None and writer:
            out_dir.mkdir(parents=True, exist_ok=True)
    if parallel is not None:
        check_same(world, "the run's data and settings", json.dumps(run, sort_keys=True))
        check_same(world, "the initial weights", *model.state_dict().values(),
                   *optimizer.state_dict().values())
    criterion = CrossEntropyLoss()

    while state.epoch < epochs and not (patience is not None and state.bad_epochs >= patience):
        epoch = state.epoch + 1
        start = time.perf_counter()
        lr = optimizer.lr
        rng = _seed_epoch(model, seed, epoch)

        def diverged(what, value):
            return _diverged(what, value, epoch, lr, checkpoint, state.epoch)

        bar = ProgressBar(data_size(train_data), f"epoch {epoch}/{epochs}") if progress else None
        # The bar's line ends, and the layers stop summing over workers, even if the epoch fails.
        with bar or nullcontext(), parallel or nullcontext():
            train_loss, train_acc = _train_epoch(
                model, train_data, batch_size=batch_size, optimizer=optimizer,
                normalization=normalization, augment=augment, rng=rng, criterion=criterion,
                bar=bar, diverged=diverged, parallel=parallel)
        if parallel is not None:
            check_same(world, f"the weights after epoch {epoch}", *model.state_dict().values())
        val_loss = val_acc = None
        if val_data is not None:
            result = evaluate(model, val_data, normalization, world=world)
            if not math.isfinite(result.loss):
                raise diverged("validation loss", result.loss)
            val_loss, val_acc = result.loss, result.accuracy
            state.note_validation(val_loss, epoch, model)
        if scheduler is not None:
            scheduler.step()
        state.epoch = epoch
        state.history.append(dict(epoch=epoch, lr=lr, train_loss=train_loss, train_acc=train_acc,
                                  val_loss=val_loss, val_acc=val_acc,
                                  seconds=time.perf_counter() - start))
        if out_dir is not None and writer:
            save_checkpoint(checkpoint, model, optimizer, scheduler, state, run, normalization)
            state.history.save(out_dir)
        log(_summary(state.history[-1], epochs))

    if patience is not None and state.best_state is not None:
        if state.bad_epochs >= patience:
            log(f"early stopping: no lower validation loss for {patience} epochs")
        model.load_state_dict(state.best_state)
        log(f"kept the weights of epoch {state.best_epoch} "
            f"(lowest validation loss, {state.best_val_loss:.4f})")
    return state.history


def _summary(row: dict, epochs: int) -> str:
    """One line per epoch, e.g. ``epoch 3/10  lr 0.05  train loss 0.41 ...``."""
    text = (f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.4g}  "
            f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}")
    if row["val_loss"] is not None:
        text += f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%}"
    return text + f"  {row['seconds']:.1f} s"
