"""Model files: a trained network and everything needed to use it, without pickle.

A model file is an ordinary ``.npz`` archive (NumPy arrays in a zip), read
with ``numpy.load(..., allow_pickle=False)`` so that opening a file can never
run code. It holds:

========================  ==================================================
``format_version``        int, :data:`FORMAT_VERSION`
``spec``                  the architecture in the pattern notation (a string)
``param/<name>``          each parameter by its state_dict name (``param/0.weight``)
``buffer/<name>``         each buffer (``buffer/2.running_mean``)
``classes``               the class names, in label order (strings)
``normalization/mean``    per-channel mean of the training pixels (in [0, 1])
``normalization/std``     per-channel standard deviation of the same
``metadata``              a JSON object (dataset, test accuracy, training time...)
``sha256``                SHA-256 over every other entry: a changed byte is found
========================  ==================================================

Every way a file can be wrong gives a :class:`ModelFileError` that says
which file and what is wrong with it: missing, not a zip, truncated, not a
tinyconv model, modified, from an unknown format version, holding a pickle,
or holding weights that do not fit its own spec.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..fileio import atomic_save_npz
from ..nn.layers import Module
from ..data.loader import Normalization
from .spec import build, format_spec, input_shape

__all__ = ["FORMAT_VERSION", "MODEL_FILE", "ModelFileError", "LoadedModel", "save_model",
           "load_model", "read_npz", "check_outputs"]

FORMAT_VERSION = 1
#: A model's file name inside a training run's directory.
MODEL_FILE = "model.npz"

#: Entries every model file has besides its weights.
_HEADER_KEYS = ("format_version", "spec", "classes", "normalization/mean",
                "normalization/std", "metadata", "sha256")
_STATE_PREFIXES = ("param/", "buffer/")


class ModelFileError(ValueError):
    """A model (or checkpoint) file that cannot be used; the message says why."""


@dataclass
class LoadedModel:
    """What :func:`load_model` returns.

    ``model`` is the network, rebuilt from ``spec`` and in evaluation mode;
    ``classes[k]`` names output k; ``normalization`` prepares uint8 images
    (N, C, H, W) the way the training images were prepared.
    """

    model: Module
    spec: str
    classes: list[str]
    normalization: Normalization
    metadata: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The images the model takes, (C, H, W)."""
        return input_shape(self.spec)


def read_npz(path, what: str = "model file") -> dict[str, np.ndarray]:
    """Every array in the ``.npz`` at ``path``, read in full without pickle.

    ``what`` names the file in the messages (``"checkpoint"``). Raises
    :class:`ModelFileError` when the file is missing, not a zip archive,
    truncated, damaged (a zip CRC fails), or holds something other than
    plain arrays: a pickled object array or a member that is not ``.npy``.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{what} {path} does not exist")
    if not path.is_file():
        raise ModelFileError(f"{what} {path} is not a file")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as file:
            starts_like_zip = file.read(4) == b"PK\x03\x04"
        if starts_like_zip:
            raise ModelFileError(f"{what} {path} is truncated: the zip archive's end is missing "
                                 f"(was it copied or downloaded only in part?)")
        raise ModelFileError(f"{what} {path} is not a .npz file (it is not a zip archive)")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                arrays[key] = _read_member(archive, key, path, what)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise ModelFileError(f"{what} {path} is damaged: {error}") from None
    return arrays


def _read_member(archive, key: str, path: Path, what: str) -> np.ndarray:
    try:
        value = archive[key]
    except ValueError as error:
        if "pickle" in str(error):
            raise ModelFileError(f"{what} {path} holds a pickled object in {key!r}; tinyconv "
                                 f"never pickles and refuses to load it (unpickling can run "
                                 f"code)") from None
        raise ModelFileError(f"{what} {path} has a damaged array {key!r}: {error}") from None
    if not isinstance(value, np.ndarray):
        raise ModelFileError(f"{what} {path} holds {key!r}, which is not a NumPy array: "
                             f"not a file tinyconv wrote")
    return value


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over every entry but ``sha256`` itself: names, dtypes, shapes, bytes."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        if key == "sha256":
            continue
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _state_arrays(model: Module) -> dict[str, np.ndarray]:
    """``param/<name>`` and ``buffer/<name>`` entries for the model's state."""
    arrays = {f"param/{name}": p.data for name, p in model.named_parameters()}
    arrays.update({f"buffer/{name}": array for name, array in model.named_buffers()})
    return arrays


def check_outputs(model: Module, spec: str, classes, data: str | None = None) -> None:
    """The model must output one score per class name (one tiny forward pass).

    ``data`` names where the classes come from, for the message.
    """
    with model.evaluating():
        outputs = model.forward(np.zeros((1,) + tuple(input_shape(spec)), np.float32)).shape[-1]
    if outputs != len(classes):
        if data is None:
            raise ValueError(f"the model outputs {outputs} scores but there are "
                             f"{len(classes)} class names")
        raise ValueError(f"{data} has {len(classes)} classes ({', '.join(map(str, classes))}), "
                         f"but the spec outputs {outputs} scores: end it with "
                         f"FC({len(classes)})")


def save_model(path, model: Module, spec, classes, normalization: Normalization,
               metadata: dict | None = None) -> None:
    """Write ``model`` and what is needed to use it to ``path`` (atomically).

    Args:
        path: the file to write, conventionally ``model.npz``.
        model: the trained network; its weights must fit ``spec``.
        spec: the architecture, as pattern-notation text or a parsed spec.
        classes: the class names, in label order; one per model output.
        normalization: the per-channel mean and std the inputs were scaled with.
        metadata: a JSON-serialisable dict (dataset, accuracy, seconds...).

    Raises ValueError when the model does not fit the spec or the classes,
    TypeError when the metadata is not JSON.
    """
    text = format_spec(spec)
    classes = [str(name) for name in classes]
    if not classes:
        raise ValueError("a model file needs the class names, got none")
    try:
        build(text, rng=0).load_state_dict(model.state_dict())
    except ValueError as error:
        raise ValueError(f"the model does not fit the spec {text!r}: {error}") from None
    check_outputs(model, text, classes)
    try:
        metadata_json = json.dumps(metadata or {}, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"metadata must be a JSON-serialisable dict: {error}") from None
    arrays = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "spec": np.array(text),
        "classes": np.array(classes, dtype=str),
        "normalization/mean": np.asarray(normalization.mean, dtype=np.float64).reshape(-1),
        "normalization/std": np.asarray(normalization.std, dtype=np.float64).reshape(-1),
        "metadata": np.array(metadata_json),
        **_state_arrays(model),
    }
    arrays["sha256"] = np.array(_checksum(arrays))
    atomic_save_npz(path, **arrays)


def load_model(path) -> LoadedModel:
    """Read a model file written by :func:`save_model` and rebuild the network.

    Raises :class:`ModelFileError` (a ValueError) with a clear message for a
    missing, foreign, truncated, modified or pickled file, an unknown format
    version, or weights that do not fit the file's spec.
    """
    path = Path(path)
    arrays = read_npz(path)
    if "format_version" not in arrays:
        raise ModelFileError(f"{path} is not a tinyconv model file: it has no format_version "
                             f"(it holds {sorted(arrays)[:5]})")
    version = arrays["format_version"]
    if version.shape != () or version.dtype.kind not in "iu":
        raise ModelFileError(f"{path} has a format_version that is not an integer: {version!r}")
    if int(version) != FORMAT_VERSION:
        newer = " (written by a newer tinyconv: upgrade it)" if version > FORMAT_VERSION else ""
        raise ModelFileError(f"{path} has format version {int(version)}; this tinyconv reads "
                             f"version {FORMAT_VERSION}{newer}")
    missing = [key for key in _HEADER_KEYS if key not in arrays]
    if missing:
        raise ModelFileError(f"{path} is not a complete tinyconv model file: it lacks {missing}")
    unknown = [key for key in arrays
               if key not in _HEADER_KEYS and not key.startswith(_STATE_PREFIXES)]
    if unknown:
        raise ModelFileError(f"{path} holds entries a tinyconv model file does not have: "
                             f"{sorted(unknown)}")
    if str(arrays["sha256"]) != _checksum(arrays):
        raise ModelFileError(f"{path} has been modified or corrupted since it was saved: "
                             f"its SHA-256 checksum does not match its contents")
    text = str(arrays["spec"])
    try:
        model = build(text, rng=0)
    except ValueError as error:
        raise ModelFileError(f"{path} holds a spec that does not build: {error}") from None
    state = {key.split("/", 1)[1]: array for key, array in arrays.items()
             if key.startswith(_STATE_PREFIXES)}
    try:
        model.load_state_dict(state)
    except ValueError as error:
        raise ModelFileError(f"{path} holds weights that do not fit its spec {text!r}: "
                             f"{error}") from None
    classes = [str(name) for name in arrays["classes"]]
    try:
        check_outputs(model, text, classes)
    except ValueError as error:
        raise ModelFileError(f"{path} does not fit together: {error}") from None
    try:
        metadata = json.loads(str(arrays["metadata"]))
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{path} has metadata that is not JSON: {error}") from None
    normalization = Normalization(arrays["normalization/mean"].tolist(),
                                  arrays["normalization/std"].tolist())
    return LoadedModel(model.eval(), text, classes, normalization, metadata)
