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
import lzma
import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..fileio import atomic_save_npz
from ..nn.layers import Module
from ..data.loader import Normalization
from .spec import build, format_spec, input_shape

__all__ = ["FORMAT_VERSION", "MAX_UNPACKED_RATIO", "MODEL_FILE", "ModelFileError", "LoadedModel",
           "save_model", "load_model", "model_path", "read_npz", "check_outputs"]

FORMAT_VERSION = 1
#: A model's file name inside a training run's directory.
MODEL_FILE = "model.npz"

#: Entries every model file has besides its weights.
_HEADER_KEYS = ("format_version", "spec", "classes", "normalization/mean",
                "normalization/std", "metadata", "sha256")
_STATE_PREFIXES = ("param/", "buffer/")
#: (entry, ndim, dtype kinds, in words) of every header entry but format_version.
_HEADER_FORMS = (("spec", 0, "U", "a text"), ("classes", 1, "U", "a list of names"),
                 ("normalization/mean", 1, "f", "a list of numbers"),
                 ("normalization/std", 1, "f", "a list of numbers"),
                 ("metadata", 0, "U", "a text"), ("sha256", 0, "U", "a text"))
#: The dtype kinds a tinyconv file holds: booleans, integers, floats, text.
_ARRAY_KINDS = "biufU"
#: The most a .npz's members may unpack to, as a multiple of the file's size
#: (plus 1 MiB): tinyconv writes them uncompressed, and more is a zip bomb.
MAX_UNPACKED_RATIO = 16


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

    ``what`` names the file in the messages (``"checkpoint"``). Each member's
    ``.npy`` header is read and checked before its array is allocated, so the
    memory taken is bounded by the file's real size: the members together
    may unpack to at most :data:`MAX_UNPACKED_RATIO` times the file's size
    (tinyconv writes them uncompressed), and each array must fill its member
    exactly.

    Raises :class:`ModelFileError` when the file is missing, not a zip
    archive, truncated, damaged (a zip CRC fails), a zip bomb, or holds
    something other than plain arrays of numbers or text (a pickled object
    array, a member that is not ``.npy``, two members of one name), or when
    an array of numbers holds NaN or infinity: weights, statistics and
    optimizer moments must be finite. A single number (a 0-d array) may be
    infinite: a checkpoint's best validation loss is, before the first
    validation.
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
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            unpacked = sum(info.file_size for info in members)
            allowed = MAX_UNPACKED_RATIO * path.stat().st_size + (1 << 20)
            if unpacked > allowed:
                raise ModelFileError(f"{what} {path} is a zip bomb: its members would unpack to "
                                     f"{unpacked:,} bytes, more than {MAX_UNPACKED_RATIO} times "
                                     f"the file's size")
            for info in members:
                key = info.filename.removesuffix(".npy")
                if key in arrays:
                    raise ModelFileError(f"{what} {path} holds two entries named {key!r}: not a "
                                         f"file tinyconv wrote")
                with archive.open(info) as member:
                    arrays[key] = _read_member(member, info.file_size, key, path, what)
    except ModelFileError:
        raise
    # What zipfile and its decompressors raise for a damaged archive or member;
    # RuntimeError: a member marked encrypted, NotImplementedError: an unknown
    # compression method.
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, RuntimeError,
            NotImplementedError, ValueError) as error:
        raise ModelFileError(f"{what} {path} is damaged: {_one_line(error)}") from None
    for key, array in arrays.items():
        if array.ndim and array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int(np.count_nonzero(~np.isfinite(array)))
            raise ModelFileError(f"{what} {path} holds {bad} non-finite values (NaN or inf) "
                                 f"in {key!r}: it cannot be used (was it saved from a run that "
                                 f"diverged?)")
    return arrays


def _read_member(member, size: int, key: str, path: Path, what: str) -> np.ndarray:
    """The array in one ``.npy`` member of ``size`` bytes, its header checked first."""
    try:
        version = np.lib.format.read_magic(member)
    except ValueError:
        raise ModelFileError(f"{what} {path} holds {key!r}, which is not a NumPy array: "
                             f"not a file tinyconv wrote") from None
    if version not in ((1, 0), (2, 0)):
        raise ModelFileError(f"{what} {path} holds {key!r} in .npy format version "
                             f"{version[0]}.{version[1]}, which tinyconv does not write")
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    try:
        shape, fortran_order, dtype = read_header(member)
    except ValueError as error:
        raise ModelFileError(f"{what} {path} has a damaged array {key!r}: "
                             f"{_one_line(error)}") from None
    if dtype.hasobject:
        raise ModelFileError(f"{what} {path} holds a pickled object in {key!r}; tinyconv "
                             f"never pickles and refuses to load it (unpickling can run "
                             f"code)")
    if dtype.kind not in _ARRAY_KINDS or dtype.fields or dtype.subdtype or not dtype.itemsize:
        raise ModelFileError(f"{what} {path} holds {key!r} of dtype {dtype}: a tinyconv file "
                             f"holds only booleans, integers, floats and text")
    count = math.prod(shape)
    data_size = size - member.tell()
    if count * dtype.itemsize != data_size:
        raise ModelFileError(f"{what} {path} has a damaged array {key!r}: its header says "
                             f"{count:,} values of {dtype} ({count * dtype.itemsize:,} bytes), "
                             f"its entry holds {data_size:,} bytes")
    array = np.empty(count, dtype)
    if member.readinto(memoryview(array).cast("B")) != data_size or member.read(1):
        raise ModelFileError(f"{what} {path} has a damaged array {key!r}: its entry ends early")
    if fortran_order:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


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


def model_path(target) -> Path:
    """The model file a MODEL|RUN_DIR argument names: ``target`` itself, or the
    ``model.npz`` of a training run's directory."""
    target = Path(target)
    return target / MODEL_FILE if target.is_dir() else target


def load_model(path) -> LoadedModel:
    """Read a model file written by :func:`save_model` and rebuild the network.

    Raises :class:`ModelFileError` (a ValueError) with a one-line message for
    a missing, foreign, truncated, modified or pickled file, an unknown
    format version, entries of the wrong kind, weights that are not finite
    (:func:`read_npz`), or weights that do not fit the file's spec.
    """
    path = Path(path)
    arrays = read_npz(path)
    if "format_version" not in arrays:
        raise ModelFileError(f"{path} is not a tinyconv model file: it has no format_version "
                             f"(it holds {sorted(arrays)[:5]})")
    version = arrays["format_version"]
    if version.shape != () or version.dtype.kind not in "iu":
        raise ModelFileError(f"{path} has a format_version that is not an integer: "
                             f"{_kind(version)}")
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
    for key, ndim, kinds, wanted in _HEADER_FORMS:
        if arrays[key].ndim != ndim or arrays[key].dtype.kind not in kinds:
            raise ModelFileError(f"{path} has a {key} that is not {wanted}: "
                                 f"{_kind(arrays[key])}")
    if str(arrays["sha256"]) != _checksum(arrays):
        raise ModelFileError(f"{path} has been modified or corrupted since it was saved: "
                             f"its SHA-256 checksum does not match its contents")
    text = str(arrays["spec"])
    try:
        model = build(text, rng=0)
    except ValueError as error:
        # A SpecError's second line is a caret under the spec: one line here.
        raise ModelFileError(f"{path} holds a spec that does not build: "
                             f"{str(error).splitlines()[0]}") from None
    state = {key.split("/", 1)[1]: array for key, array in arrays.items()
             if key.startswith(_STATE_PREFIXES)}
    try:
        model.load_state_dict(state)
    except (ValueError, TypeError) as error:
        raise ModelFileError(f"{path} holds weights that do not fit its spec {text!r}: "
                             f"{error}") from None
    classes = [str(name) for name in arrays["classes"]]
    try:
        check_outputs(model, text, classes)
        normalization = Normalization(arrays["normalization/mean"].tolist(),
                                      arrays["normalization/std"].tolist())
        if len(normalization.mean) != input_shape(text)[0]:
            raise ValueError(f"its normalization has {len(normalization.mean)} channels, its "
                             f"spec's input {input_shape(text)[0]}")
    except ValueError as error:
        raise ModelFileError(f"{path} does not fit together: {error}") from None
    try:
        metadata = json.loads(str(arrays["metadata"]))
    except (json.JSONDecodeError, RecursionError) as error:
        raise ModelFileError(f"{path} has metadata that is not JSON: "
                             f"{_one_line(error)}") from None
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{path} has metadata that is not a JSON object: "
                             f"{type(metadata).__name__}")
    return LoadedModel(model.eval(), text, classes, normalization, metadata)


def _kind(array: np.ndarray) -> str:
    """``array``'s dtype and shape, in words (its values could fill many lines)."""
    return f"{array.dtype} of shape {array.shape}"
