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

Files in ``out_dir``, each written atomically (see :mod:`tinyconv.fileio`):

- ``checkpoint.npz``: everything needed to continue (``resume=True``);
- ``history.csv`` and ``history.json``: one row per epoch.

Shapes: images (N, C, H, W); labels (N,); logits and probabilities
(N, classes).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..fileio import atomic_save_npz, atomic_write_text
from ..nn.functional import cross_entropy_forward, softmax
from ..nn.layers import Module
from ..data.loader import batches
from ..nn.losses import CrossEntropyLoss
from .progress import ProgressBar
from ..models.serialize import ModelFileError, read_npz
from ..models.spec import format_spec

__all__ = ["fit", "evaluate", "predict_proba", "flipped", "History", "Evaluation",
           "TrainingDiverged", "CheckpointError", "CHECKPOINT", "HISTORY_FIELDS"]

CHECKPOINT = "checkpoint.npz"
CHECKPOINT_VERSION = 2
HISTORY_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")

# Images per forward pass when evaluating. Small batches keep each conv
# layer's columns in cache: the strong preset's forward pass ran at 4,760
# images/s in batches of 64 and 3,750 in batches of 512 (2 threads,
# measured; 32, 128 and 256 were no faster than 64).
EVAL_BATCH = 64

# Each epoch's generators are seeded with (seed, epoch, stream), one stream per use.
_BATCHES, _DROPOUT = 0, 1

#: Hyperparameters that change what a run computes, read from the optimizer
#: (SGD or Adam) and the schedule where they have them. The schedule's
#: total_epochs and step_size are left out: they follow the number of epochs,
#: which a resumed run may raise.
_OPTIMIZER_SETTINGS = ("momentum", "nesterov", "betas", "eps", "weight_decay")
_SCHEDULE_SETTINGS = ("gamma", "min_lr")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says when and what to try."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or belongs to another run."""


class History(list):
    """One dict per finished epoch, with the keys :data:`HISTORY_FIELDS`.

    ``val_loss`` and ``val_acc`` are None when there is no validation data;
    accuracies are fractions in [0, 1]; ``seconds`` is the epoch's wall time.
    """

    def save(self, out_dir) -> None:
        """Write ``history.csv`` and ``history.json`` into ``out_dir`` (atomically)."""
        out_dir = Path(out_dir)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=HISTORY_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self)
        atomic_write_text(out_dir / "history.csv", text.getvalue())
        atomic_write_text(out_dir / "history.json", self.to_json())

    def to_json(self) -> str:
        return json.dumps(list(self), indent=1)

    @classmethod
    def load(cls, path) -> "History":
        """Read a ``history.json`` (or the one inside the directory ``path``)."""
        path = Path(path)
        if path.is_dir():
            path = path / "history.json"
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"no history at {path}") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not a history (not JSON: {error})") from None
        if not isinstance(rows, list) or not all(
                isinstance(row, dict) and set(row) == set(HISTORY_FIELDS) for row in rows):
            raise ValueError(f"{path} is not a history: expected a list of rows with the "
                             f"keys {HISTORY_FIELDS}")
        return cls(rows)


@dataclass
class Evaluation:
    """What :func:`evaluate` measures on a dataset of ``n`` images.

    ``confusion[i, j]`` counts images of true class i predicted as class j
    (classes x classes); ``predictions`` (n,) holds each image's predicted
    class, in the data's order.
    """

    loss: float
    accuracy: float
    n: int
    confusion: np.ndarray
    predictions: np.ndarray


def _size(data) -> int:
    """The number of images in a Dataset or an (images, labels) pair."""
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise TypeError(f"data must be a Dataset or an (images, labels) pair, "
                            f"got a sequence of {len(data)} items")
        return len(data[1])
    return len(data)


def flipped(x: np.ndarray) -> np.ndarray:
    """Images (N, C, H, W) flipped left to right: each row read backwards."""
    return np.ascontiguousarray(x[..., ::-1])


def evaluate(model: Module, data, normalization, batch_size: int = EVAL_BATCH,
             flip_average: bool = False) -> Evaluation:
    """Loss, accuracy and confusion matrix of ``model`` on ``data``, in eval mode.

    Args:
        model: outputs logits (N, classes).
        data: a Dataset or an (images uint8 (N, C, H, W), labels (N,)) pair.
        normalization: the training set's :class:`~tinyconv.data.loader.Normalization`.
        batch_size: images per forward pass (memory, not results, depends on it).
        flip_average: average each image's class probabilities with those
            of its left-right flip (test-time augmentation). A model trained
            with random flips has learnt that a flipped garment is the same
            garment, so the two views vote: +0.2 to +0.45 points of
            Fashion-MNIST test accuracy, measured on four models like the
            ``strong`` preset. The loss is then the cross-entropy of the
            averaged probabilities.

    The model's train/eval mode is restored afterwards.
    """
    if _size(data) == 0:
        raise ValueError("evaluate needs at least one image, got an empty dataset")
    was_training = model.training
    model.eval()
    total_loss, predictions, labels = 0.0, [], []
    try:
        # A diverged model's overflows end in a NaN loss, which fit reports
        # itself; NumPy's warnings on the way would only bury that message.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for x, y in batches(data, batch_size, shuffle=False, rng=None,
                                normalization=normalization):
                _, (log_probs, _) = cross_entropy_forward(model.forward(x), y)
                if flip_average:
                    _, (log_probs_flipped, _) = cross_entropy_forward(
                        model.forward(flipped(x)), y)
                    # log((p + p') / 2), without leaving log space.
                    log_probs = np.logaddexp(log_probs, log_probs_flipped) - np.log(2)
                total_loss -= float(log_probs[np.arange(len(y)), y].sum())
                predictions.append(log_probs.argmax(axis=1))
                labels.append(y)
    finally:
        model.train(was_training)
    predictions, labels = np.concatenate(predictions), np.concatenate(labels)
    classes = log_probs.shape[1]
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    n = len(labels)
    return Evaluation(loss=total_loss / n, accuracy=float(np.mean(predictions == labels)), n=n,
                      confusion=confusion, predictions=predictions)


def predict_proba(model: Module, x, batch_size: int = EVAL_BATCH,
                  flip_average: bool = False) -> np.ndarray:
    """Class probabilities (N, classes) for normalised images ``x`` (N, C, H, W).

    The softmax of the model's logits, computed in eval mode (dropout off,
    batch-norm running statistics), ``batch_size`` images at a time. With
    ``flip_average``, each image's probabilities are averaged with those of
    its left-right flip (see :func:`evaluate`).
    """
    x = np.asarray(x)
    if x.dtype.kind != "f" or x.ndim != 4:
        raise ValueError(f"predict_proba expects normalised float images (N, C, H, W), "
                         f"got {x.dtype} of shape {x.shape}")
    was_training = model.training
    model.eval()
    try:
        parts = []
        for start in range(0, len(x), batch_size):
            part = x[start:start + batch_size]
            probabilities = softmax(model.forward(part))
            if flip_average:
                probabilities = (probabilities + softmax(model.forward(flipped(part)))) / 2
            parts.append(probabilities)
    finally:
        model.train(was_training)
    return np.concatenate(parts) if parts else np.zeros((0, 0), x.dtype)


@dataclass
class _Progress:
    """How far training has come: what a checkpoint restores besides the
    model, optimizer and schedule."""

    epoch: int = 0  # epochs finished
    history: History = field(default_factory=History)
    best_state: dict | None = None  # copy of the weights with the lowest val loss
    best_val_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the val loss last improved

    def note_validation(self, val_loss: float, epoch: int, model: Module) -> None:
        """Keep a copy of the weights when ``val_loss`` is the lowest yet; else
        count one more epoch without improvement (for early stopping)."""
        if val_loss < self.best_val_loss:
            self.best_state = {k: v.copy() for k, v in model.state_dict().items()}
            self.best_val_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
        else:
            self.bad_epochs += 1


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


def _train_epoch(model, data, *, batch_size, optimizer, normalization, augment, rng,
                 criterion, bar, diverged) -> tuple[float, float]:
    """One pass over ``data``; returns (mean loss, accuracy) over its images.

    ``diverged(what, value)`` makes the error raised when the loss is not finite.
    """
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    # Overflows on the way to divergence end in a non-finite loss, which the
    # check below reports with advice; NumPy's warnings would only come first.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for x, y in batches(data, batch_size, shuffle=True, rng=rng,
                            normalization=normalization, augment=augment):
            optimizer.zero_grad()
            logits = model.forward(x)
            loss = criterion.forward(logits, y)
            if not math.isfinite(loss):
                raise diverged("loss", loss)
            # The images' own δ is never used: skipping it saves a third of conv1's backward.
            model.backward(criterion.backward(), input_grad=False)
            optimizer.step()
            total_loss += loss * len(y)
            correct += int(np.sum(logits.argmax(axis=1) == y))
            seen += len(y)
            if bar is not None:
                bar.update(len(y), loss=total_loss / seen, acc=correct / seen)
    return total_loss / seen, correct / seen


def fit(model: Module, train_data, val_data, *, epochs: int, batch_size: int, optimizer,
        scheduler=None, seed: int, normalization, augment=None, out_dir=None,
        resume: bool = False, patience: int | None = None, progress: bool = True,
        log=print, spec=None, classes=None) -> History:
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

    Raises:
        TrainingDiverged: the loss became NaN or infinite; the checkpoint on
            disk is still the last good epoch's.
        CheckpointError: ``resume`` without a usable checkpoint of this run.
    """
    _check_int(epochs, "epochs", 1)
    _check_int(batch_size, "batch_size", 1)
    _check_int(seed, "seed", 0)
    if patience is not None:
        _check_int(patience, "patience", 1)
        if val_data is None:
            raise ValueError("early stopping (patience) needs validation data, got val_data=None")
    if _size(train_data) == 0:
        raise ValueError("fit needs training images, got an empty dataset")
    out_dir = None if out_dir is None else Path(out_dir)
    checkpoint = None if out_dir is None else out_dir / CHECKPOINT
    text = None if spec is None else format_spec(spec)
    run = dict(spec=text, classes=None if classes is None else [str(c) for c in classes],
               settings=_run_settings(train_data, val_data, seed=seed, batch_size=batch_size,
                                      optimizer=optimizer, scheduler=scheduler,
                                      normalization=normalization, augment=augment))
    if resume:
        if checkpoint is None:
            raise ValueError("resume needs out_dir, the directory holding checkpoint.npz")
        state = _load_checkpoint(checkpoint, model, optimizer, scheduler, run)
        log(f"resumed from {checkpoint} after epoch {state.epoch}")
    else:
        state = _Progress()
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
    criterion = CrossEntropyLoss()

    while state.epoch < epochs and not (patience is not None and state.bad_epochs >= patience):
        epoch = state.epoch + 1
        start = time.perf_counter()
        lr = optimizer.lr
        rng = _seed_epoch(model, seed, epoch)

        def diverged(what, value):
            return _diverged(what, value, epoch, lr, checkpoint, state.epoch)

        bar = ProgressBar(_size(train_data), f"epoch {epoch}/{epochs}") if progress else None
        with bar or nullcontext():  # the bar's line ends even when the epoch fails
            train_loss, train_acc = _train_epoch(
                model, train_data, batch_size=batch_size, optimizer=optimizer,
                normalization=normalization, augment=augment, rng=rng, criterion=criterion,
                bar=bar, diverged=diverged)
        val_loss = val_acc = None
        if val_data is not None:
            result = evaluate(model, val_data, normalization)
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
        if out_dir is not None:
            _save_checkpoint(checkpoint, model, optimizer, scheduler, state, run, normalization)
            state.history.save(out_dir)
        log(_summary(state.history[-1], epochs))

    if patience is not None and state.best_state is not None:
        if state.bad_epochs >= patience:
            log(f"early stopping: no lower validation loss for {patience} epochs")
        model.load_state_dict(state.best_state)
        log(f"kept the weights of epoch {state.best_epoch} "
            f"(lowest validation loss, {state.best_val_loss:.4f})")
    return state.history


def _fingerprint(data) -> str:
    """A cheap digest of a dataset: the images' shape and SHA-256 of the labels.

    It tells another subset, split or order of the images apart without
    reading every pixel.
    """
    images, labels = (data.images, data.labels) if hasattr(data, "images") else data
    digest = hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()
    return f"images {'x'.join(map(str, np.shape(images)))}, labels sha256 {digest[:16]}"


def _run_settings(train_data, val_data, *, seed, batch_size, optimizer, scheduler,
                  normalization, augment) -> dict:
    """Every setting that changes what a run computes, by name, as JSON values.

    A checkpoint stores them, and resuming with any of them different is
    refused: it would not repeat the run. The number of epochs is not among
    them, so a run may be resumed to train for more epochs.
    """
    settings = {
        "seed": int(seed),
        "batch size": int(batch_size),
        "optimizer": type(optimizer).__name__,
        # The rate the run starts with: a schedule changes optimizer.lr as it goes.
        "lr": scheduler.base_lr if scheduler is not None else optimizer.lr,
        **{name: getattr(optimizer, name) for name in _OPTIMIZER_SETTINGS
           if hasattr(optimizer, name)},
        "schedule": "none" if scheduler is None else type(scheduler).__name__,
        **{name: getattr(scheduler, name) for name in _SCHEDULE_SETTINGS
           if hasattr(scheduler, name)},
        "augmentation": "none" if augment is None else repr(augment),
        "normalization mean": normalization.mean,
        "normalization std": normalization.std,
        "training images": _size(train_data),
        "training data": _fingerprint(train_data),
        "validation images": 0 if val_data is None else _size(val_data),
        "validation data": "none" if val_data is None else _fingerprint(val_data),
    }
    # Tuples become lists here as they do in the checkpoint's JSON, so both compare equal.
    return json.loads(json.dumps(settings))


def _check_int(value, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def _summary(row: dict, epochs: int) -> str:
    """One line per epoch, e.g. ``epoch 3/10  lr 0.05  train loss 0.41 ...``."""
    text = (f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.4g}  "
            f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}")
    if row["val_loss"] is not None:
        text += f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%}"
    return text + f"  {row['seconds']:.1f} s"


# ----------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------

def _save_checkpoint(path: Path, model, optimizer, scheduler, state: _Progress, run: dict,
                     normalization) -> None:
    """Write everything needed to continue training into one ``.npz``, atomically."""
    arrays = {
        "checkpoint_version": np.array(CHECKPOINT_VERSION),
        "epoch": np.array(state.epoch),
        "settings": np.array(json.dumps(run["settings"])),
        "spec": np.array(run["spec"] or ""),
        "classes": np.array(run["classes"] or [], dtype=str),
        "normalization/mean": np.asarray(normalization.mean, dtype=np.float64).reshape(-1),
        "normalization/std": np.asarray(normalization.std, dtype=np.float64).reshape(-1),
        "history": np.array(state.history.to_json()),
        "best_val_loss": np.array(state.best_val_loss),
        "best_epoch": np.array(state.best_epoch),
        "bad_epochs": np.array(state.bad_epochs),
    }
    arrays.update({f"model/{k}": v for k, v in model.state_dict().items()})
    arrays.update({f"best/{k}": v for k, v in (state.best_state or {}).items()})
    arrays.update({f"optimizer/{k}": v for k, v in optimizer.state_dict().items()})
    if scheduler is not None:
        arrays.update({f"scheduler/{k}": v for k, v in scheduler.state_dict().items()})
    atomic_save_npz(path, **arrays)


def _section(arrays: dict, prefix: str) -> dict:
    """The entries under ``prefix/``, with the prefix taken off their names."""
    return {k[len(prefix) + 1:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def _load_checkpoint(path: Path, model, optimizer, scheduler, run: dict) -> _Progress:
    """Restore model, optimizer and schedule from ``path``; return the progress made.

    Refuses, with a :class:`CheckpointError`, a checkpoint that is missing or
    unreadable, or that another run wrote: a different spec, any setting of
    :func:`_run_settings` different (the message names each, with both
    values), or weights that do not fit the model.
    """
    if not path.exists():
        raise CheckpointError(f"nothing to resume: there is no checkpoint at {path} "
                              f"(train without resume to start afresh)")
    try:
        arrays = read_npz(path, what="checkpoint")
    except ModelFileError as error:
        raise CheckpointError(str(error)) from None
    if "checkpoint_version" not in arrays:
        raise CheckpointError(f"{path} is not a tinyconv training checkpoint")
    if int(arrays["checkpoint_version"]) != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {int(arrays['checkpoint_version'])}; "
                              f"this tinyconv reads version {CHECKPOINT_VERSION}")
    saved_spec = str(arrays["spec"])
    if run["spec"] and saved_spec and saved_spec != run["spec"]:
        raise CheckpointError(f"{path} belongs to a different model: it was trained with spec "
                              f"{saved_spec!r}, this run has {run['spec']!r}")
    saved, ours = json.loads(str(arrays["settings"])), run["settings"]
    mismatches = [(name, saved.get(name, "not set"), ours.get(name, "not set"))
                  for name in {**saved, **ours} if saved.get(name) != ours.get(name)]
    if mismatches:
        details = "; ".join(f"{name} {there} there, {here} here"
                            for name, there, here in mismatches)
        raise CheckpointError(f"{path} belongs to a different run ({details}): resuming would "
                              f"not repeat it")
    try:
        model.load_state_dict(_section(arrays, "model"))
        optimizer.load_state_dict(_section(arrays, "optimizer"))
        if scheduler is not None:
            scheduler.load_state_dict(_section(arrays, "scheduler"))
    except ValueError as error:
        raise CheckpointError(f"{path} does not fit this model: {error}") from None
    best = _section(arrays, "best")
    return _Progress(epoch=int(arrays["epoch"]),
                     history=History(json.loads(str(arrays["history"]))),
                     best_state=best or None, best_val_loss=float(arrays["best_val_loss"]),
                     best_epoch=int(arrays["best_epoch"]), bad_epochs=int(arrays["bad_epochs"]))
