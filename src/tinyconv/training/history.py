"""A training run's history: one row per finished epoch, as CSV and JSON.

``history.csv`` and ``history.json`` sit in a run's directory, each written
atomically (:mod:`tinyconv.fileio`); ``tinyconv report`` and ``visualize``
draw the learning curves from the JSON.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..fileio import atomic_write_text

__all__ = ["History", "HISTORY_FIELDS"]

HISTORY_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")


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
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"no history at {path}") from None
        return cls.from_json(text, str(path))

    @classmethod
    def from_json(cls, text: str, where: str) -> "History":
        """The history in JSON ``text``; a ValueError naming ``where`` if it is none."""
        try:
            rows = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as error:
            raise ValueError(f"{where} is not a history (not JSON: {error})") from None
        if not isinstance(rows, list) or not all(
                isinstance(row, dict) and set(row) == set(HISTORY_FIELDS) for row in rows):
            raise ValueError(f"{where} is not a history: expected a list of rows with the "
                             f"keys {HISTORY_FIELDS}")
        return cls(rows)
