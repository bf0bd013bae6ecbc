"""Evaluation: a model's loss, accuracy and confusion matrix on a dataset,
its class probabilities for images, and test-time flip averaging.

Shapes: images (N, C, H, W); labels (N,); logits and probabilities
(N, classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.loader import batches, data_size, shard_bounds
from ..nn.functional import cross_entropy_forward, softmax
from ..nn.layers import Module

__all__ = ["EVAL_BATCH", "Evaluation", "evaluate", "predict_proba", "flipped",
           "confusion_table"]

# Small batches keep each conv layer's columns in cache (see benchmarks/RESULTS.md).
EVAL_BATCH = 64


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


def flipped(x: np.ndarray) -> np.ndarray:
    """Images (N, C, H, W) flipped left to right: each row read backwards."""
    return np.ascontiguousarray(x[..., ::-1])


def evaluate(model: Module, data, normalization, batch_size: int = EVAL_BATCH,
             flip_average: bool = False, world=None) -> Evaluation:
    """Loss, accuracy and confusion matrix of ``model`` on ``data``, in eval mode.

    Args:
        model: outputs logits (N, classes).
        data: a Dataset or an (images uint8 (N, C, H, W), labels (N,)) pair.
        normalization: the training set's :class:`~tinyconv.data.loader.Normalization`.
        batch_size: images per forward pass (memory, not results, depends on it).
        flip_average: average each image's class probabilities with those
            of its left-right flip (test-time augmentation). A model trained
            with random flips has learnt that a flipped garment is the same
            garment, so the two views vote. The loss is then the
            cross-entropy of the averaged probabilities.
        world: None, or the workers (:mod:`tinyconv.training.distributed`)
            that share the images: each evaluates its contiguous share, and
            every worker gets the whole result (the same as one process's, up
            to the rounding of the loss's sum). With fewer images than
            workers, each evaluates them all.

    Every module's train/eval mode is restored afterwards.
    """
    n = data_size(data)
    if n == 0:
        raise ValueError("evaluate needs at least one image, got an empty dataset")
    if world is not None and 1 < world.size <= n:
        return _shared_evaluate(model, data, normalization, batch_size, flip_average, world)
    total_loss, predictions, labels = 0.0, [], []
    with model.evaluating():
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
    predictions, labels = np.concatenate(predictions), np.concatenate(labels)
    classes = log_probs.shape[1]
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    n = len(labels)
    return Evaluation(loss=total_loss / n, accuracy=float(np.mean(predictions == labels)), n=n,
                      confusion=confusion, predictions=predictions)


def _shared_evaluate(model, data, normalization, batch_size, flip_average, world):
    """:func:`evaluate` with each worker of ``world`` on its share of ``data``."""
    images, labels = (data.images, data.labels) if hasattr(data, "images") else data
    n = len(labels)
    start, stop = shard_bounds(n, world.rank, world.size)
    ours = evaluate(model, (images[start:stop], labels[start:stop]), normalization,
                    batch_size, flip_average)
    total_loss = world.allreduce(np.array([ours.loss * ours.n]))[0]
    predictions = np.zeros(n, np.int64)
    predictions[start:stop] = ours.predictions
    world.allreduce(predictions)
    confusion = world.allreduce(np.ascontiguousarray(ours.confusion, np.int64))
    return Evaluation(loss=float(total_loss / n),
                      accuracy=float(np.mean(predictions == np.asarray(labels))), n=n,
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
    with model.evaluating():
        parts = []
        for start in range(0, len(x), batch_size):
            part = x[start:start + batch_size]
            probabilities = softmax(model.forward(part))
            if flip_average:
                probabilities = (probabilities + softmax(model.forward(flipped(part)))) / 2
            parts.append(probabilities)
    return np.concatenate(parts) if parts else np.zeros((0, 0), x.dtype)


def confusion_table(confusion, classes: list[str]) -> str:
    """The confusion matrix as text: a row per true class, a column per predicted
    class (numbered like the rows), and each class's share predicted right."""
    confusion = np.asarray(confusion)
    names = [f"{k} {name}" for k, name in enumerate(classes)]
    name_width = max(len(name) for name in names)
    cell = max(4, len(str(confusion.max(initial=0))) + 1)
    header = " " * name_width + "".join(f"{k:>{cell}}" for k in range(len(classes)))
    lines = ["rows: true class, columns: predicted class",
             header + "  correct"]
    for k, name in enumerate(names):
        total = confusion[k].sum()
        correct = f"{confusion[k, k] / total:8.1%}" if total else "       -"
        lines.append(f"{name:<{name_width}}" + "".join(f"{n:>{cell}}" for n in confusion[k])
                     + " " + correct)
    return "\n".join(lines)
