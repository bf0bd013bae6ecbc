"""Which images train a model and which test it.

A known dataset (Fashion-MNIST, MNIST) and a folder with ``train/`` and
``test/`` subfolders bring their own test split. A plain folder of class
subfolders does not: :data:`HOLDOUT_FRACTION` of its images, drawn with the
run's seed by :func:`hold_out`, becomes the test set, and the model file
records the rule so that ``evaluate``, ``visualize`` and ``report`` hold out
the same images again (:func:`test_set`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets import KNOWN, Dataset, load_dataset
from .loader import train_val_split

__all__ = ["HOLDOUT_FRACTION", "has_test_split", "hold_out", "first", "load_split",
           "training_splits", "test_set", "check_classes"]

#: The share of an image folder without a test/ subfolder held out as its test set.
HOLDOUT_FRACTION = 1 / 6
# Mixed with the seed, so that the held-out images are drawn by a stream of
# their own, independent of the one that initialises the model ("7E57": test).
_HOLDOUT_STREAM = 0x7E57


def has_test_split(data: str) -> bool:
    """Whether ``data`` names data with a test split of its own: a known
    dataset or a folder with train/ and test/ subfolders, not a plain folder
    of class subfolders. (Anything else is left to load_dataset to refuse.)"""
    folder = Path(data)
    return (data in KNOWN or not folder.is_dir()
            or ((folder / "train").is_dir() and (folder / "test").is_dir()))


def hold_out(dataset: Dataset, rule: dict) -> tuple[Dataset, Dataset]:
    """Split a folder without test split into (train, test) by ``rule``:
    ``{"seed": s, "fraction": f}``, a share f of the images drawn with seed s.
    The same rule on the same folder holds out the same images."""
    if not (isinstance(rule, dict) and set(rule) == {"seed", "fraction"}):
        raise ValueError(f"the test hold-out rule must be {{'seed': S, 'fraction': F}}, "
                         f"got {rule!r}")
    rng = np.random.default_rng([rule["seed"], _HOLDOUT_STREAM])
    train_idx, test_idx = train_val_split(len(dataset), rule["fraction"], rng)
    if not len(test_idx):
        raise ValueError(f"{dataset.name} has {len(dataset)} images, too few to hold out "
                         f"{rule['fraction']:.0%} of them as the test set: add images, or "
                         "give train/ and test/ subfolders")
    return dataset.subset(train_idx), dataset.subset(test_idx)


def first(dataset: Dataset, limit: int | None) -> Dataset:
    """The first ``limit`` images of ``dataset`` (all of them when ``limit`` is None)."""
    return dataset.subset(np.arange(min(limit, len(dataset)))) if limit else dataset


def load_split(data: str, split: str, shape, *, limit: int | None = None, data_dir=None,
               download: bool = True, mirror: str | None = None, log=print) -> Dataset:
    """The ``split`` of ``data``, cut to its first ``limit`` images if given.

    ``shape`` is the model's input (C, H, W): an image folder's pictures are
    prepared to it, and a named dataset must already have it.
    """
    channels, height, width = shape
    dataset = load_dataset(data, split, data_dir=data_dir, download=download, mirror=mirror,
                           size=(height, width), channels=channels, log=log)
    if dataset.images.shape[1:] != tuple(shape):
        raise ValueError(f"the model takes images of shape {tuple(shape)} (C, H, W), but "
                         f"{dataset.name} has {dataset.images.shape[1:]}")
    return first(dataset, limit)


def training_splits(data: str, shape, *, seed: int, limit_train: int | None = None,
                    limit_test: int | None = None, log=print, **where):
    """(train, test, holdout rule or None) for training on ``data``.

    ``where`` (data_dir, download, mirror) says where the files are found. A
    folder without test split has :data:`HOLDOUT_FRACTION` of its images
    held out with ``seed``, and says so through ``log``.
    """
    if has_test_split(data):
        return (load_split(data, "train", shape, limit=limit_train, log=log, **where),
                load_split(data, "test", shape, limit=limit_test, log=log, **where), None)
    rule = {"seed": seed, "fraction": HOLDOUT_FRACTION}
    train, test = hold_out(load_split(data, "train", shape, log=log, **where), rule)
    log(f"no test/ folder: holding out {len(test)} of the {len(train) + len(test)} "
        f"images as the test set")
    return first(train, limit_train), first(test, limit_test), rule


def test_set(loaded, data: str | None = None, *, limit: int | None = None, log=print,
             **where) -> Dataset:
    """The test images for a saved model: ``data``, or the data it was trained on.

    ``loaded`` is a :class:`~tinyconv.models.serialize.LoadedModel`. A folder
    without test split gives the images held out when the model was trained
    on that very folder (the rule is in its metadata), and all of its images
    when the model never saw it. Refuses other classes than the model's.
    """
    trained_on = loaded.metadata.get("data", "fashion-mnist")
    data = trained_on if data is None else data
    shape = loaded.input_shape
    if has_test_split(data):
        test = load_split(data, "test", shape, limit=limit, log=log, **where)
    else:
        test = load_split(data, "train", shape, log=log, **where)
        rule = loaded.metadata.get("test_holdout")
        if rule is not None and str(Path(data).resolve()) == trained_on:
            _, test = hold_out(test, rule)
        test = first(test, limit)
    check_classes(loaded.classes, test)
    return test


def check_classes(classes: list[str], data: Dataset) -> None:
    """Refuse data whose classes are not the ones the model was trained to tell apart."""
    if list(data.classes) != list(classes):
        raise ValueError(f"the model knows the classes {classes}, but {data.name} has "
                         f"{data.classes}")
