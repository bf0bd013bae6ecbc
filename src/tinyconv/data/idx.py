"""The IDX file format, in which MNIST and Fashion-MNIST are distributed.

An IDX file is a tiny header followed by one array's raw bytes:

==========  ================================================================
bytes 0-1   zero
byte 2      the data type code (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16,
            ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64)
byte 3      the number of dimensions ``ndim``
next 4·ndim each dimension's size, a big-endian unsigned 32-bit integer
the rest    the values in C order, big-endian, exactly prod(dims) of them
==========  ================================================================

So ``train-images-idx3-ubyte`` of Fashion-MNIST starts ``00 00 08 03``, then
60000, 28, 28, then 47,040,000 pixel bytes. The files are usually gzipped;
:func:`read_idx` tells a gzip file by its own magic bytes (``1f 8b``), not by
the file name, so ``.gz`` and unpacked files both work whatever they are called.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_bytes

__all__ = ["IdxError", "read_idx", "write_idx", "IDX_TYPES", "MAX_GZIP_RATIO"]

# Type code -> big-endian NumPy dtype, as the format defines them.
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
#: The most a gzipped IDX file may unpack to, as a multiple of its size (plus
#: 64 MiB): real datasets unpack to 2-5 times theirs; more is a gzip bomb.
MAX_GZIP_RATIO = 64


class IdxError(ValueError):
    """A file that is not a valid IDX file: foreign, truncated or too long."""


def read_idx(path) -> np.ndarray:
    """Read the array stored in the IDX file ``path`` (gzipped or not).

    Returns an array in native byte order with the file's dimensions, e.g.
    (60000, 28, 28) uint8 for Fashion-MNIST's training images and (60000,)
    uint8 for its labels.

    The header is read first and the data only once its size is known to
    fit the file, so a damaged header costs no memory: the data takes as
    many bytes as a plain file holds, or at most :data:`MAX_GZIP_RATIO`
    times a gzipped file's size (plus 64 MiB). Unpack such a file with
    ``gunzip`` to read it anyway.

    Raises ``FileNotFoundError`` when there is no such file, and
    :class:`IdxError` naming the file and the fault when the header is not
    ``00 00 <type> <ndim>``, the type code is unknown, the gzip stream is
    broken, or the data is shorter or longer than the dimensions say.
    """
    path = Path(path)
    file_size = path.stat().st_size
    with open(path, "rb") as file:
        gzipped = file.read(2) == GZIP_MAGIC
        file.seek(0)
        stream = gzip.GzipFile(fileobj=file, mode="rb") if gzipped else file
        try:
            return _read_idx_stream(stream, path, file_size, gzipped)
        except (OSError, EOFError, zlib.error) as error:
            if not gzipped:
                raise
            raise IdxError(f"{path}: the gzip data is damaged or cut short ({error})") from None


def _read_idx_stream(stream, path: Path, file_size: int, gzipped: bool) -> np.ndarray:
    """The array of the IDX data that ``stream`` yields (unpacked already)."""
    head = stream.read(4)
    if len(head) < 4:
        raise IdxError(f"{path}: not an IDX file: only {len(head)} bytes, "
                       "shorter than the 4-byte header")
    if head[0] != 0 or head[1] != 0:
        raise IdxError(f"{path}: not an IDX file: it starts with bytes "
                       f"{head.hex(' ')}, expected 00 00 <type> <ndim>")
    type_code, ndim = head[2], head[3]
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_TYPES)
        raise IdxError(f"{path}: unknown IDX data type code 0x{type_code:02X}, "
                       f"expected one of {known}")
    if ndim == 0:
        raise IdxError(f"{path}: the IDX header says 0 dimensions, expected at least 1")
    header_size = 4 + 4 * ndim
    sizes = stream.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise IdxError(f"{path}: truncated IDX header: {ndim} dimensions need "
                       f"{header_size} header bytes, the file has {4 + len(sizes)}")
    dims = tuple(int(d) for d in np.frombuffer(sizes, ">u4"))
    dtype = IDX_TYPES[type_code]
    count = math.prod(dims)
    expected = header_size + count * dtype.itemsize
    what = f"dimensions {dims} of {dtype.newbyteorder('=')} need {expected:,} bytes in all"
    if gzipped and expected > MAX_GZIP_RATIO * file_size + (64 << 20):
        raise IdxError(f"{path}: {what}, more than {MAX_GZIP_RATIO} times the gzipped "
                       f"file's {file_size:,} bytes: a gzip bomb, or a damaged header "
                       f"(gunzip it to read it anyway)")
    if not gzipped and expected != file_size:
        fault = "truncated" if file_size < expected else "too long"
        raise IdxError(f"{path}: {fault}: {what}, the file has {file_size:,}")
    data = np.empty(count, dtype)
    got = stream.readinto(memoryview(data).cast("B")) if count else 0
    if got < count * dtype.itemsize:
        raise IdxError(f"{path}: truncated: {what}, the unpacked file has "
                       f"{header_size + got:,}")
    if stream.read(1):
        raise IdxError(f"{path}: too long: {what}, the unpacked file has more")
    # astype gives this machine's byte order (a copy only where the order differs).
    return data.reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def write_idx(path, array) -> None:
    """Write ``array`` to ``path`` as an IDX file, gzipped when ``path`` ends in ``.gz``.

    ``array`` needs at least one dimension and a dtype the format has (see
    ``IDX_TYPES``). The file is written atomically (:mod:`tinyconv.fileio`):
    readers see either the old file or the complete new one, never a part.
    """
    array = np.asarray(array)
    # Keyed by kind and size, so an array of either byte order is accepted.
    codes = {(dtype.kind, dtype.itemsize): code for code, dtype in IDX_TYPES.items()}
    if (array.dtype.kind, array.dtype.itemsize) not in codes:
        names = ", ".join(str(dtype.newbyteorder("=")) for dtype in IDX_TYPES.values())
        raise TypeError(f"IDX files hold {names}; got an array of dtype {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"an IDX file holds an array of 1 to 255 dimensions, "
                         f"got shape {array.shape}")
    if max(array.shape) >= 2**32:
        raise ValueError(f"IDX dimensions must be below 2**32, got shape {array.shape}")
    code = codes[array.dtype.kind, array.dtype.itemsize]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + np.ascontiguousarray(array, IDX_TYPES[code]).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        # mtime=0 keeps the output identical from run to run.
        payload = gzip.compress(payload, mtime=0)
    atomic_write_bytes(path, payload)
