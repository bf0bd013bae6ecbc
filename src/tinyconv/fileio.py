"""Atomic file writes: a file is either the old one or the complete new one.

Every write goes to a temporary file in the destination's own directory (so
that the final rename never crosses file systems), is flushed and fsync'ed
to disk, and only then renamed over the destination with ``os.replace``,
which POSIX and Windows perform atomically. A crash at any moment, even
``kill -9`` or a power cut, therefore leaves either the previous file or the
new one at ``path``, never half of one. On an error (a full disk, a
directory one may not write to) the temporary file is removed, the previous
file stays as it was, and an ``OSError`` of the same kind says which file
could not be saved and why.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_save_npz"]


def _atomic_write(path, write) -> None:
    """Call ``write(binary_file)`` on a temporary file, then move it to ``path``.

    An ``OSError`` on the way comes out as the same kind of error (same
    errno) naming ``path``, with the previous file untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path}: the directory {directory} does not exist")
    try:
        descriptor, temporary = tempfile.mkstemp(
            dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as error:
        raise _not_saved(path, error) from error
    try:
        with os.fdopen(descriptor, "wb") as file:
            # mkstemp makes the file private (0600); give it the mode open() would.
            os.chmod(temporary, 0o666 & ~_umask())
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        # BaseException too: a KeyboardInterrupt must not leave a stray temp file.
        if os.path.exists(temporary):
            os.remove(temporary)
        if isinstance(error, OSError):
            raise _not_saved(path, error) from error
        raise
    _fsync_directory(directory)


def _not_saved(path: str, error: OSError) -> OSError:
    """``error`` retold for ``path``: ``OSError(errno, ...)`` keeps its kind (PermissionError...)."""
    reason = error.strerror or str(error) or type(error).__name__
    kept = "the previous file is unchanged" if os.path.isfile(path) else "nothing was written"
    return OSError(error.errno, f"could not save it: {reason} ({kept})", path)


def _umask() -> int:
    """The process's umask (reading it means setting it, then putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable; some systems cannot open a directory."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    _atomic_write(path, lambda file: file.write(data))


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, encoded as UTF-8."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npz(path, **arrays) -> None:
    """Save ``arrays`` as an uncompressed ``.npz`` at ``path``, atomically.

    Keys may contain ``/`` (``"param/0.weight"``). Object arrays are refused:
    they would be pickled, and tinyconv never pickles.
    """
    arrays = {key: np.asarray(value) for key, value in arrays.items()}
    for key, array in arrays.items():
        if array.dtype.hasobject:
            raise TypeError(f"array {key!r} has dtype object, which .npz can only store "
                            f"by pickling; give numbers or strings instead")
    _atomic_write(path, lambda file: np.savez(file, allow_pickle=False, **arrays))
