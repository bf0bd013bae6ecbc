"""Checkpoints: everything a run needs to continue, in one ``.npz``.

A checkpoint holds the model's weights, the optimizer's and the schedule's
state, the progress made (:class:`Progress`) and every setting that changes
what the run computes (:func:`run_settings`). Resuming with any of those
settings different is refused: it would not repeat the run.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.loader import data_size
from ..fileio import atomic_save_npz
from ..models.serialize import ModelFileError, read_npz
from ..nn.layers import Module
from .history import History

__all__ = ["CHECKPOINT", "CheckpointError", "Progress", "run_settings", "save_checkpoint",
           "load_checkpoint"]

CHECKPOINT = "checkpoint.npz"
CHECKPOINT_VERSION = 2

#: Hyperparameters that change what a run computes, read from the optimizer
#: (SGD or Adam) and the schedule where they have them. The schedule's
#: total_epochs and step_size are left out: they follow the number of epochs,
#: which a resumed run may raise.
_OPTIMIZER_SETTINGS = ("momentum", "nesterov", "betas", "eps", "weight_decay")
_SCHEDULE_SETTINGS = ("gamma", "min_lr")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or belongs to another run."""


@dataclass
class Progress:
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


def _fingerprint(data) -> str:
    """A cheap digest of a dataset: the images' shape and SHA-256 of the labels.

    It tells another subset, split or order of the images apart without
    reading every pixel.
    """
    images, labels = (data.images, data.labels) if hasattr(data, "images") else data
    digest = hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()
    return f"images {'x'.join(map(str, np.shape(images)))}, labels sha256 {digest[:16]}"


def run_settings(train_data, val_data, *, seed, batch_size, optimizer, scheduler,
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
        "training images": data_size(train_data),
        "training data": _fingerprint(train_data),
        "validation images": 0 if val_data is None else data_size(val_data),
        "validation data": "none" if val_data is None else _fingerprint(val_data),
    }
    # Tuples become lists here as they do in the checkpoint's JSON, so both compare equal.
    return json.loads(json.dumps(settings))


def save_checkpoint(path: Path, model, optimizer, scheduler, state: Progress, run: dict,
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


def load_checkpoint(path: Path, model, optimizer, scheduler, run: dict) -> Progress:
    """Restore model, optimizer and schedule from ``path``; return the progress made.

    Refuses, with a :class:`CheckpointError`, a checkpoint that is missing or
    unreadable, or that another run wrote: a different spec, any setting of
    :func:`run_settings` different (the message names each, with both
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
    header = _header(arrays, path)
    if header["checkpoint_version"] != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {header['checkpoint_version']}; "
                              f"this tinyconv reads version {CHECKPOINT_VERSION}")
    saved_spec = header["spec"]
    if run["spec"] and saved_spec and saved_spec != run["spec"]:
        raise CheckpointError(f"{path} belongs to a different model: it was trained with spec "
                              f"{saved_spec!r}, this run has {run['spec']!r}")
    saved, ours = header["settings"], run["settings"]
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
        best = _section(arrays, "best")
        own = model.state_dict()
        if best and (best.keys() != own.keys() or any(
                best[k].shape != own[k].shape or best[k].dtype.kind != "f" for k in own)):
            raise ValueError("the best epoch's weights are not the model's")
    # TypeError and OverflowError too: a damaged file's numbers may be text or infinite.
    except (ValueError, TypeError, OverflowError) as error:
        raise CheckpointError(f"{path} does not fit this model: {error}") from None
    return Progress(epoch=header["epoch"], history=header["history"],
                    best_state=best or None, best_val_loss=header["best_val_loss"],
                    best_epoch=header["best_epoch"], bad_epochs=header["bad_epochs"])


#: The single-value entries of a checkpoint and the kind of each: whole
#: numbers, numbers, text, or JSON text (settings, history).
_HEADER = {"checkpoint_version": int, "epoch": int, "best_epoch": int, "bad_epochs": int,
           "best_val_loss": float, "spec": str, "settings": dict, "history": History}


def _header(arrays: dict, path: Path) -> dict:
    """The checkpoint's single-value entries, each checked and read as its kind."""
    missing = sorted(set(_HEADER) - set(arrays))
    if missing:
        raise CheckpointError(f"{path} is a damaged checkpoint: it lacks {missing}")
    header = {}
    for key, kind in _HEADER.items():
        value = arrays[key]
        expected = {int: "iu", float: "fiu"}.get(kind, "U")
        if value.shape != () or value.dtype.kind not in expected:
            raise CheckpointError(f"{path} is a damaged checkpoint: {key} must be one "
                                  f"{kind.__name__ if kind in (int, float) else 'text'}, "
                                  f"got {value.dtype} of shape {value.shape}")
        if kind in (int, float, str):
            header[key] = kind(value)
        elif kind is History:
            try:
                header[key] = History.from_json(str(value), f"{path}'s history")
            except ValueError as error:
                raise CheckpointError(str(error)) from None
        else:
            try:
                header[key] = json.loads(str(value))
            except (ValueError, RecursionError):
                header[key] = None
            if not isinstance(header[key], dict):
                raise CheckpointError(f"{path} is a damaged checkpoint: its settings are not "
                                      f"a JSON object")
    if header["epoch"] < 0 or header["epoch"] != len(header["history"]):
        raise CheckpointError(f"{path} is a damaged checkpoint: it says epoch "
                              f"{header['epoch']} but holds {len(header['history'])} epochs "
                              f"of history")
    return header
