"""Fuzzing every reader of outside input, with mutations seeded from valid files.

The readers, one *target* each:

=============  =============================================================
``model``      a model file: :func:`tinyconv.models.serialize.load_model`
``checkpoint`` a training checkpoint, as every reader of one reads it first:
               :func:`tinyconv.models.serialize.read_npz`
``resume``     the same, read on into a model, optimizer and schedule:
               :func:`tinyconv.training.checkpoint.load_checkpoint`
``idx``        an IDX file, gzipped or plain: :func:`tinyconv.data.idx.read_idx`
``dataset``    Fashion-MNIST's four IDX files in a folder:
               :func:`tinyconv.data.datasets.load_dataset`
``image``      a picture: :func:`tinyconv.data.images.prepare_image`
``folder``     an image folder: :func:`tinyconv.data.datasets.load_image_folder`
``spec``       spec text: :func:`tinyconv.models.spec.build` (which parses it)
=============  =============================================================

Each case starts from a valid seed and applies a few mutations: byte flips,
truncations, inserted and deleted runs, huge declared sizes, wrong dtypes and
shapes, NaN and inf in the weights, zip entries under other names, members
that declare or unpack to gigabytes, odd image modes, animated pictures...
A case must end in one of two ways:

* a clean result: the reader returns;
* a clean error: ``ValueError``, ``OSError`` or ``DataNotFound`` (what the
  command line reports in one line with exit status 2), whose message is one
  line.

Anything else is a failure, kept with the case's number so that
``--replay TARGET:N`` repeats it: another exception (a *traceback*), a
``MemoryError`` or more memory than the limit (*memory*), a case running
past ``--case-seconds`` (*hang*), or a warning that would print a second
line (*warning*). The whole run is held to an address-space limit of
``--memory-mib`` above what it uses once warmed up, so a reader that would
allocate by a declared size instead of the input's real size fails here
instead of filling the machine.

Usage (from the repository root)::

    PYTHONPATH=src python tests/fuzz.py --cases 100000          # the long run
    PYTHONPATH=src python tests/fuzz.py --cases 2000 --target image idx
    PYTHONPATH=src python tests/fuzz.py --replay image:1234 --save-failures /tmp/f

The counts go to stdout (``--json`` for a machine-readable line); the exit
status is 1 when any case failed. ``tests/test_fuzz.py`` runs a quick budget.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyconv.models.spec import MAX_PARAMETERS

# --------------------------------------------------------------------------- outcomes


class _Hang(BaseException):
    """Raised by the alarm inside a case that runs too long (a BaseException,
    so that no reader's ``except Exception`` can swallow it)."""


@dataclass
class Tally:
    """What a run found: counts per target, and the failing cases."""

    tried: int = 0
    results: int = 0
    errors: int = 0
    failures: list = field(default_factory=list)
    seconds: float = 0.0
    slowest: tuple = (0.0, "")

    def as_dict(self) -> dict:
        kinds = {}
        for failure in self.failures:
            kinds[failure["kind"]] = kinds.get(failure["kind"], 0) + 1
        return {"cases": self.tried, "clean_results": self.results, "clean_errors": self.errors,
                "failures": len(self.failures), "failure_kinds": kinds,
                "seconds": round(self.seconds, 2), "slowest_case_seconds":
                round(self.slowest[0], 3), "slowest_case": self.slowest[1]}


def _clean_errors():
    from tinyconv.data.datasets import DataNotFound
    return (ValueError, OSError, DataNotFound)


def _one_line(error: BaseException) -> bool:
    from tinyconv.models.spec import SpecError
    # A SpecError carries a caret line under the spec; the command line marks
    # the spot inside the one line it prints instead.
    return isinstance(error, SpecError) or "\n" not in str(error).strip()


def run_case(read, path: Path, case_seconds: float) -> tuple[str, str]:
    """Call ``read(path)``; return (outcome, detail), outcome one of result, error,
    traceback, memory, hang, warning."""
    def alarm(signum, frame):
        raise _Hang()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, case_seconds)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            read(path)
        outcome, detail = "result", ""
    except _Hang:
        return "hang", f"still running after {case_seconds} s"
    except MemoryError:
        outcome, detail = "memory", traceback.format_exc()
    except _clean_errors() as error:
        if _one_line(error):
            outcome, detail = "error", f"{type(error).__name__}: {error}"
        else:
            outcome, detail = "traceback", f"a message of several lines: {error!r}"
    except Exception:  # noqa: BLE001 - every other exception is what we look for
        outcome, detail = "traceback", traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if outcome in ("result", "error") and caught:
        return "warning", "; ".join(f"{w.category.__name__}: {w.message}" for w in caught)
    return outcome, detail


# --------------------------------------------------------------------------- byte mutators

INTERESTING_32 = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                  20000, 1 << 20, 1 << 24)


def flip_bits(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def set_bytes(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if data:
            data[rng.randrange(len(data))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
    return bytes(data)


def set_int32(rng: random.Random, data: bytes) -> bytes:
    if len(data) < 4:
        return data
    at = rng.randrange(len(data) - 3)
    value = rng.choice(INTERESTING_32)
    packed = struct.pack(rng.choice((">I", "<I")), value)
    return data[:at] + packed + data[at + 4:]


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data) + 1)] if data else data


def delete_run(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    start = rng.randrange(len(data))
    return data[:start] + data[start + rng.randint(1, 64):]


def insert_run(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    run = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return data[:at] + run + data[at:]


def duplicate_run(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    start = rng.randrange(len(data))
    run = data[start:start + rng.randint(1, 256)]
    at = rng.randrange(len(data) + 1)
    return data[:at] + run + data[at:]


BYTE_MUTATORS = (flip_bits, set_bytes, set_int32, truncate, delete_run, insert_run,
                 duplicate_run)


def mutate_bytes(rng: random.Random, data: bytes, rounds: int | None = None) -> bytes:
    for _ in range(rounds or rng.randint(1, 3)):
        data = rng.choice(BYTE_MUTATORS)(rng, data)
    return data


# --------------------------------------------------------------------------- zip files

def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _npz_from_members(members: list[tuple[str, bytes, int]]) -> bytes:
    """A zip of (name, bytes, compression) members; duplicate names allowed."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of duplicate names
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data, compression in members:
                archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data,
                                 compress_type=compression)
    return buffer.getvalue()


def _deflate_zeros(size: int) -> bytes:
    """A raw deflate stream of ``size`` zero bytes (a multiple of 1 MiB), made fast:
    after a full flush the compressor starts afresh, so every 1 MiB block after
    the first compresses to the same bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1 << 20)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + again * ((size >> 20) - 2) + compressor.compress(block) + compressor.flush()


_BOMBS: dict[int, tuple[bytes, int]] = {}


def zeros_bomb(size: int) -> tuple[bytes, int]:
    """(raw deflate stream, CRC-32) of ``size`` zero bytes, made once per run."""
    if size not in _BOMBS:
        crc, block = 0, bytes(1 << 20)
        for _ in range(size >> 20):
            crc = zlib.crc32(block, crc)
        _BOMBS[size] = (_deflate_zeros(size), crc)
    return _BOMBS[size]


def zip_bomb_member(name: str, size: int) -> bytes:
    """A one-member zip whose member really unpacks to ``size`` zero bytes, built by
    hand: deflating gigabytes through zipfile would take too long per case."""
    data, crc = zeros_bomb(size)
    return _zip_raw([(name, data, len(data), size, crc, zipfile.ZIP_DEFLATED)])


def _zip_raw(members) -> bytes:
    """A zip written byte by byte from (name, stored data, compressed size, declared
    size, crc, method), so that the sizes can lie."""
    out, central = io.BytesIO(), []
    for name, data, compressed, size, crc, method in members:
        encoded = name.encode("utf-8")
        offset = out.tell()
        small = lambda v: min(v, 0xFFFFFFFF)  # noqa: E731
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0x800, method, 0, 0x21,
                              crc, small(compressed), small(size), len(encoded), 0))
        out.write(encoded + data)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0x800, method, 0,
                                   0x21, crc, small(compressed), small(size), len(encoded),
                                   0, 0, 0, 0, 0, offset) + encoded)
    start = out.tell()
    for entry in central:
        out.write(entry)
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central),
                          out.tell() - start, start, 0))
    return out.getvalue()


def _zip_members(data: bytes) -> list[tuple[str, bytes, int]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info), info.compress_type)
                for info in archive.infolist()]


# --------------------------------------------------------------------------- targets


class Target:
    """A reader and its seeds; ``case(rng, directory)`` writes one mutated input and
    returns its path."""

    name = ""
    #: Bytes of address space the reader may need whatever its input (above --memory-mib).
    memory_floor = 0

    def __init__(self, workdir: Path):
        self.workdir = workdir

    def read(self, path: Path):
        raise NotImplementedError

    def case(self, rng: random.Random, directory: Path) -> Path:
        raise NotImplementedError


def _odd_array(rng: random.Random, like: np.ndarray) -> np.ndarray:
    """An array of another dtype and/or shape than ``like``, or with NaN or inf in it."""
    choice = rng.randrange(9)
    if choice == 0:
        return np.array(rng.choice((np.nan, np.inf, -np.inf)), like.dtype
                        if like.dtype.kind == "f" else np.float64)
    if choice == 1 and like.dtype.kind == "f" and like.size:
        odd = like.copy()
        odd.reshape(-1)[rng.randrange(odd.size)] = rng.choice((np.nan, np.inf, -np.inf))
        return odd
    if choice == 2:
        dtype = rng.choice(("bool", "int8", "uint8", "int64", "uint64", "float16", "float64",
                            "complex128", "<U3", "S4", "datetime64[s]", "V8",
                            [("a", "<i4"), ("b", "<f8")], ">f4"))
        try:
            return np.zeros(like.shape, dtype)
        except (TypeError, ValueError):
            return np.zeros(3, dtype)
    if choice == 3:
        return like.reshape(-1) if like.ndim != 1 else like.reshape(1, -1)
    if choice == 4:
        return np.zeros((0,) + like.shape[1:], like.dtype)
    if choice == 5:
        return np.zeros(like.shape + (2,), like.dtype) if like.dtype.kind != "V" else like
    if choice == 6:
        return np.array(["x", "INPUT(1,4,4) -> FC(2)", "{}", "[]", "1e999", "\x00"][
            rng.randrange(6)])
    if choice == 7:
        return np.array(rng.choice((0, -1, 2**63 - 1, 10**6)))
    try:
        return like.astype(rng.choice(("float32", "float64", "int32", "<U8")))
    except (ValueError, TypeError):  # text that is no number, records that are no text
        return np.zeros(like.shape, "<U8")


class _NpzTarget(Target):
    """Model files and checkpoints: mutated bytes, arrays and zip members."""

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.seeds = self.make_seeds(workdir)
        self.arrays = [_entries(seed) for seed in self.seeds]

    def make_seeds(self, workdir: Path) -> list[bytes]:
        raise NotImplementedError

    def forge(self, arrays: dict) -> dict:
        """Arrays as a careful forger would save them (model files: fresh checksum)."""
        return arrays

    def case(self, rng: random.Random, directory: Path) -> Path:
        index = rng.randrange(len(self.seeds))
        seed, arrays = self.seeds[index], dict(self.arrays[index])
        how = rng.randrange(10)
        if how <= 2:
            data = mutate_bytes(rng, seed)
        elif how <= 5:
            for _ in range(rng.randint(1, 3)):
                key = rng.choice(sorted(arrays))
                action = rng.randrange(5)
                if action == 0:
                    del arrays[key]
                elif action == 1:
                    arrays[key + rng.choice(("x", "/y", ".npy"))] = arrays.pop(key)
                else:
                    arrays[key] = _odd_array(rng, arrays[key])
            arrays = self.forge(arrays)
            data = _npz_from_members([(f"{k}.npy", _npy_bytes(v), zipfile.ZIP_STORED)
                                      for k, v in arrays.items()])
        elif how <= 7:
            data = self.zip_case(rng, seed)
        else:
            data = self.npy_header_case(rng, seed)
        path = directory / "case.npz"
        path.write_bytes(data)
        return path

    def zip_case(self, rng: random.Random, seed: bytes) -> bytes:
        """Members under other names, duplicated, compressed, or bombs."""
        members = _zip_members(seed)
        choice = rng.randrange(8)
        if choice == 0:
            name, data, method = members.pop(rng.randrange(len(members)))
            new = rng.choice(("../evil.npy", "/abs.npy", "no_suffix", "dir/", "x.npy.npy",
                              "é.npy", "a\\b.npy", ".npy", name.upper()))
            members.append((new, data, method))
        elif choice == 1:
            members.append(rng.choice(members))  # a duplicate name
        elif choice == 2:
            members.append(("readme.txt", b"not an array" * rng.randint(1, 100),
                            zipfile.ZIP_DEFLATED))
        elif choice == 3:
            method = rng.choice((zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA))
            members = [(name, data, method) for name, data, _ in members]
        elif choice == 4:
            # A member that really unpacks to a gigabyte (about 1 MB on disk).
            name = rng.choice(("param/0.weight.npy", "extra.npy", "extra.bin"))
            bomb = zip_bomb_member(name, rng.choice((1 << 30, 3 << 30)))
            if name == "param/0.weight.npy":
                return bomb
            return _splice_zips(_npz_from_members(members), bomb)
        elif choice == 5:
            # Members whose headers declare gigabytes that are not there.
            raw = [(n, d, len(d), rng.choice((len(d) + 1, 1 << 31, 0xFFFFFFFF, 0)),
                    zlib.crc32(d), zipfile.ZIP_STORED) for n, d, _ in members]
            return _zip_raw(raw)
        elif choice == 6:
            # An unknown compression method, or a member marked encrypted.
            data = bytearray(_npz_from_members(members))
            at = data.find(b"PK\x01\x02")
            if at >= 0:
                if rng.random() < 0.5:
                    data[at + 10:at + 12] = struct.pack("<H", rng.choice((1, 6, 97, 99)))
                else:
                    data[at + 8:at + 10] = struct.pack("<H", 1)
            return bytes(data)
        else:
            members = members[:rng.randrange(len(members) + 1)]
        return _npz_from_members(members)

    def npy_header_case(self, rng: random.Random, seed: bytes) -> bytes:
        """A member whose .npy header lies: huge shapes, objects, odd versions."""
        members = _zip_members(seed)
        at = rng.randrange(len(members))
        name, data, method = members[at]
        shape = rng.choice(((10**12,), (2**31, 2**31), (-1,), (3, 0), (), (1 << 40, 0),
                            (2**62, 4)))
        descr = rng.choice(("<f4", "<f8", "|O", "<U1000000", "|V1000000000", "<c16", "|b1",
                            "[('a', '<f4')]", "(1000,1000)<f8"))
        header = repr({"descr": descr if descr.startswith("[") else descr,
                       "fortran_order": rng.random() < 0.3, "shape": shape})
        if descr.startswith("["):
            header = header.replace(f"'{descr}'", descr)
        version = rng.choice((1, 2, 3, 9))
        body = (header + " " * rng.randint(0, 20)).encode("latin1") + b"\n"
        if version == 1:
            head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body))
        else:
            head = b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(body))
        payload = data[len(data) - rng.randrange(min(len(data), 4096) + 1):]
        members[at] = (name, head + body + payload, method)
        return _npz_from_members(members)


def _splice_zips(first: bytes, second: bytes) -> bytes:
    """The members of two zips in one archive (the bomb member written raw)."""
    members = _zip_members(first)
    with zipfile.ZipFile(io.BytesIO(second)) as bomb:
        info = bomb.infolist()[0]
    start = 30 + len(info.filename.encode())
    raw = second[start:start + info.compress_size]
    entries = [(n, d, len(d), len(d), zlib.crc32(d), zipfile.ZIP_STORED) for n, d, _ in members]
    entries.append((info.filename, raw, info.compress_size, info.file_size, info.CRC,
                    zipfile.ZIP_DEFLATED))
    return _zip_raw(entries)


def _entries(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


class ModelTarget(_NpzTarget):
    name = "model"

    def make_seeds(self, workdir: Path) -> list[bytes]:
        from tinyconv.data.loader import Normalization
        from tinyconv.models.serialize import save_model
        from tinyconv.models.spec import build
        seeds = []
        for index, (spec, classes) in enumerate((
                ("INPUT(1,8,8) -> CONV(2,3) -> BN -> MAXPOOL(2) -> FC(3)", ["a", "b", "c"]),
                ("INPUT(3,6,6) -> CONV(2,3,pad=1) -> AVGPOOL(2) -> FC(4) -> DROPOUT(0.5) -> FC(2)",
                 ["yes", "no"]))):
            path = workdir / f"seed{index}.npz"
            channels = int(spec[6])
            save_model(path, build(spec, rng=index), spec, classes,
                       Normalization((0.5,) * channels, (0.25,) * channels), {"seed": index})
            seeds.append(path.read_bytes())
        return seeds

    def forge(self, arrays: dict) -> dict:
        from tinyconv.models.serialize import _checksum
        arrays = {k: v for k, v in arrays.items() if k != "sha256"}
        arrays["sha256"] = np.array(_checksum(arrays))
        return arrays

    def read(self, path: Path):
        from tinyconv.models.serialize import load_model
        return load_model(path)


class CheckpointTarget(_NpzTarget):
    name = "checkpoint"
    SPEC = "INPUT(1,6,6) -> CONV(2,3) -> BN -> FC(3)"
    RUN = {"spec": SPEC, "classes": ["a", "b", "c"], "settings": {"seed": 0}}

    def make_seeds(self, workdir: Path) -> list[bytes]:
        """Checkpoints as training writes them: before the first validation (best
        loss still inf) and after one, with optimizer moments and a schedule."""
        from tinyconv.data.loader import Normalization
        from tinyconv.training.checkpoint import Progress, save_checkpoint
        seeds = []
        for index, (model, optimizer, scheduler) in enumerate(self.fresh()):
            for param in model.parameters():
                param.grad[...] = 0.5
            optimizer.step()
            progress = Progress(epoch=1)
            progress.history.append(dict(epoch=1, lr=0.1, train_loss=1.0, train_acc=0.5,
                                         val_loss=0.75 if index else None,
                                         val_acc=0.5 if index else None, seconds=0.1))
            if index:
                progress.note_validation(0.75, 1, model)
            path = workdir / f"checkpoint{index}.npz"
            save_checkpoint(path, model, optimizer, scheduler, progress, self.RUN,
                            Normalization((0.5,), (0.2,)))
            seeds.append(path.read_bytes())
        return seeds

    def fresh(self):
        """(model, optimizer, schedule) as a run of this checkpoint has them: SGD
        without a schedule, Adam with a cosine one."""
        from tinyconv.models.spec import build
        from tinyconv.training.optim import SGD, Adam, CosineLR
        sgd_model, adam_model = build(self.SPEC, rng=0), build(self.SPEC, rng=0)
        adam = Adam(adam_model.parameters(), lr=0.01)
        return [(sgd_model, SGD(sgd_model.parameters(), lr=0.1, momentum=0.9), None),
                (adam_model, adam, CosineLR(adam, total_epochs=5))]

    def read(self, path: Path):
        from tinyconv.models.serialize import read_npz
        return read_npz(path, what="checkpoint")


class ResumeTarget(CheckpointTarget):
    """The same checkpoints read as a resumed run reads them (training's
    ``load_checkpoint``, into a model, an optimizer and a schedule)."""

    name = "resume"

    def read(self, path: Path):
        from tinyconv.training.checkpoint import load_checkpoint
        for model, optimizer, scheduler in self.fresh():
            try:
                return load_checkpoint(path, model, optimizer, scheduler, self.RUN)
            except ValueError as error:  # the other kind of run: try the next
                failure = error
        raise failure


class IdxTarget(Target):
    name = "idx"

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        rng = np.random.default_rng(0)
        arrays = [rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
                  (np.arange(7) % 10).astype(np.uint8),
                  rng.normal(size=(3, 4)).astype(np.float32),
                  np.arange(6, dtype=np.int16).reshape(1, 2, 3)]
        from tinyconv.data.idx import write_idx
        self.seeds = []
        for index, array in enumerate(arrays):
            write_idx(workdir / f"seed{index}", array)
            self.seeds.append((workdir / f"seed{index}").read_bytes())

    def case(self, rng: random.Random, directory: Path) -> Path:
        plain = rng.choice(self.seeds)
        how = rng.randrange(8)
        if how <= 2:
            data = mutate_bytes(rng, plain)
        elif how == 3:  # the header: type code, number of dimensions, sizes
            data = bytearray(plain)
            field_ = rng.randrange(3)
            if field_ == 0:
                data[2] = rng.choice((0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x0A, 0x00, 0xFF))
            elif field_ == 1:
                data[3] = rng.choice((0, 1, 2, 3, 4, 64, 255))
            else:
                at = 4 + 4 * rng.randrange(max(1, plain[3]))
                data[at:at + 4] = struct.pack(">I", rng.choice(INTERESTING_32))
            data = bytes(data)
        elif how == 4:  # declares gigabytes, and a gzip stream that really unpacks to them
            size = rng.choice((1 << 30, 3 << 30))
            header = bytes([0, 0, 0x08, 1]) + struct.pack(">I", size)
            data = _gzip_wrap(header, size)
            if rng.random() < 0.5:
                data = truncate(rng, data)
        elif how == 5:  # declares far more than the file holds
            dims = [rng.choice(INTERESTING_32) for _ in range(rng.randint(1, 4))]
            data = bytes([0, 0, rng.choice((0x08, 0x0E)), len(dims)]) + struct.pack(
                f">{len(dims)}I", *dims) + plain[4 + 4 * plain[3]:]
        else:
            data = plain
        if how != 4 and rng.random() < 0.6:
            data = gzip.compress(data, mtime=0)
            if rng.random() < 0.4:
                data = mutate_bytes(rng, data, 1)
            if rng.random() < 0.1:
                data += rng.choice((b"", data, b"garbage", bytes(10)))
        path = directory / "case.idx"
        path.write_bytes(data)
        return path

    def read(self, path: Path):
        from tinyconv.data.idx import read_idx
        return read_idx(path)


_GZIP_BOMBS: dict[tuple[bytes, int], bytes] = {}


def _gzip_wrap(header: bytes, zeros: int) -> bytes:
    """A gzip member of ``header`` then ``zeros`` zero bytes (see :func:`zeros_bomb`)."""
    if (header, zeros) not in _GZIP_BOMBS:
        deflated, _ = zeros_bomb(zeros)
        # A stored (uncompressed) deflate block holding the header, not the last block.
        stored = b"\x00" + struct.pack("<HH", len(header), len(header) ^ 0xFFFF) + header
        crc, block = zlib.crc32(header), bytes(1 << 20)
        for _ in range(zeros >> 20):
            crc = zlib.crc32(block, crc)
        _GZIP_BOMBS[header, zeros] = (
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + stored + deflated
            + struct.pack("<LL", crc, (len(header) + zeros) & 0xFFFFFFFF))
    return _GZIP_BOMBS[header, zeros]


class DatasetTarget(Target):
    """Fashion-MNIST by name from a folder of its four IDX files, one or two of them
    mutated, read as ``load_dataset`` reads them (shapes, dtypes, label range)."""

    name = "dataset"

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        import dataclasses
        from tinyconv.data import datasets
        from tinyconv.data.idx import write_idx
        # Nowhere else to look, nothing to install: only the case's folder counts.
        os.environ["XDG_CACHE_HOME"] = str(workdir / "cache")
        os.environ.pop("TINYCONV_DATA", None)
        datasets.KNOWN["fashion-mnist"] = dataclasses.replace(
            datasets.KNOWN["fashion-mnist"], debian_dir=str(workdir / "no-debian"))
        datasets.APT_GET = str(workdir / "no-apt-get")
        self.idx = IdxTarget(workdir)
        rng = np.random.default_rng(1)
        self.files = {}
        for split, (images, labels) in datasets.KNOWN["fashion-mnist"].files.items():
            n = 6 if split == "train" else 4
            for name, array in ((images, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                                (labels, (np.arange(n) % 10).astype(np.uint8))):
                write_idx(workdir / name, array)
                self.files[name] = (workdir / name).read_bytes()

    def case(self, rng: random.Random, directory: Path) -> Path:
        root = directory / "data"
        root.mkdir()
        files = dict(self.files)
        for name in rng.sample(sorted(files), rng.randint(1, 2)):
            how = rng.randrange(3)
            if how == 0:
                files[name] = mutate_bytes(rng, gzip.decompress(files[name]))
            elif how == 1:  # a valid IDX file of another shape, dtype or label range
                array = rng.choice((np.zeros((6, 28), np.uint8), np.zeros((6, 28, 28), np.int16),
                                    np.full(6, rng.choice((10, 255)), np.uint8),
                                    np.zeros(5, np.uint8), np.zeros((0, 28, 28), np.uint8),
                                    np.zeros((6, 1, 28, 28), np.uint8),
                                    np.zeros((6, 3, 3), np.uint8), np.zeros(6, np.float32)))
                from tinyconv.data.idx import write_idx
                write_idx(directory / "valid.gz", array)
                files[name] = (directory / "valid.gz").read_bytes()
            else:
                files[name] = self.idx.case(rng, directory).read_bytes()
        for name, data in files.items():
            (root / (name if rng.random() < 0.8 else name.removesuffix(".gz"))).write_bytes(data)
        return root

    def read(self, path: Path):
        from tinyconv.data.datasets import load_dataset
        return [load_dataset("fashion-mnist", split, data_dir=path, download=False)
                for split in ("train", "test")]


# ----- images

def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        chunks.append((kind, data[at + 8:at + 8 + length]))
        at += 12 + length
    return chunks


def _png_from_chunks(chunks) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))
    return out


def _picture_bytes(image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


class ImageTarget(Target):
    name = "image"

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        from PIL import Image
        rng = np.random.default_rng(0)
        gray = Image.fromarray(rng.integers(0, 256, (20, 16), dtype=np.uint8))
        rgb = Image.fromarray(rng.integers(0, 256, (12, 18, 3), dtype=np.uint8))
        rgba = Image.fromarray(rng.integers(0, 256, (10, 10, 4), dtype=np.uint8))
        self.seeds = [
            _picture_bytes(gray, "PNG"), _picture_bytes(rgb, "PNG"), _picture_bytes(rgba, "PNG"),
            _picture_bytes(rgb.convert("P"), "PNG", transparency=3),
            _picture_bytes(gray, "JPEG", quality=80), _picture_bytes(rgb, "JPEG"),
            _picture_bytes(rgb.convert("CMYK"), "JPEG"),
            _picture_bytes(gray.convert("1"), "PNG"), _picture_bytes(gray.convert("LA"), "PNG"),
            _picture_bytes(Image.fromarray(rng.integers(0, 65535, (9, 7), dtype=np.uint16)),
                           "PNG"),
            _picture_bytes(gray, "PNG", save_all=True, append_images=[gray.rotate(90)]),
            _picture_bytes(rgb, "GIF", save_all=True, append_images=[rgb.rotate(180)]),
            _picture_bytes(gray, "BMP"), _picture_bytes(rgb, "WEBP"),
            _picture_bytes(Image.fromarray(rng.normal(size=(6, 6)).astype(np.float32)), "TIFF"),
            _picture_bytes(gray, "JPEG", exif=_exif(6)),
        ]

    def case(self, rng: random.Random, directory: Path) -> Path:
        seed = rng.choice(self.seeds)
        how = rng.randrange(10)
        if how <= 3:
            data = mutate_bytes(rng, seed)
        elif how <= 5 and seed.startswith(b"\x89PNG"):
            data = self.png_case(rng, seed)
        elif how == 6:
            data = rng.choice((b"", b"this is text", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff",
                               b"GIF89a" + bytes(20), b"BM" + bytes(60), b"%!PS-Adobe-3.0 EPSF",
                               b"II*\x00" + bytes(20)))
        elif how == 7:
            data = truncate(rng, seed)
        else:
            data = seed
        path = directory / rng.choice(("case.png", "case.jpg", "case.jpeg", "case.gif", "case"))
        path.write_bytes(data)
        return path

    def png_case(self, rng: random.Random, seed: bytes) -> bytes:
        """PNG chunks with correct CRCs: huge declared sizes, odd depths, bombs."""
        chunks = _png_chunks(seed)
        if not chunks or chunks[0][0] != b"IHDR":
            return seed
        ihdr = bytearray(chunks[0][1])
        choice = rng.randrange(6)
        if choice == 0:  # a huge declared size
            width = rng.choice((20000, 2**31 - 1, 0, 1, 100000, 1 << 16))
            height = rng.choice((20000, 2**31 - 1, 0, 1, 100000, 1 << 16))
            ihdr[0:8] = struct.pack(">II", width, height)
        elif choice == 1:  # a bit depth and colour type that may not go together
            ihdr[8] = rng.choice((1, 2, 4, 8, 16, 3, 32))
            ihdr[9] = rng.choice((0, 2, 3, 4, 6, 1, 7))
        elif choice == 2:  # a compressed text chunk that unpacks to 16 MB
            chunks.insert(1, (b"zTXt", b"bomb\x00\x00" + zlib.compress(bytes(1 << 24), 9)))
        elif choice == 3:  # an ICC profile that unpacks to 16 MB
            chunks.insert(1, (b"iCCP", b"icc\x00\x00" + zlib.compress(bytes(1 << 24), 9)))
        elif choice == 4:  # an EXIF chunk, valid or not
            chunks.insert(1, (b"eXIf", _exif(rng.randint(0, 9)) if rng.random() < 0.7
                              else bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))))
        else:  # an animation control chunk (APNG) with few or no frames
            chunks.insert(1, (b"acTL", struct.pack(">II", rng.choice((0, 1, 2, 2**31)), 0)))
        chunks[0] = (b"IHDR", bytes(ihdr))
        return _png_from_chunks(chunks)

    def read(self, path: Path):
        from tinyconv.data.images import prepare_image
        return prepare_image(path, (28, 28), 1)


def _exif(orientation: int) -> bytes:
    """A little-endian TIFF/EXIF block with one Orientation tag."""
    return (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
            + struct.pack("<HHII", 0x0112, 3, 1, orientation) + struct.pack("<I", 0))


class FolderTarget(Target):
    name = "folder"

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.images = ImageTarget(workdir)

    def case(self, rng: random.Random, directory: Path) -> Path:
        root = directory / "folder"
        split = rng.random() < 0.3
        classes = rng.choice((["cat", "dog"], ["a"], ["x", "y", "z"], [], ["é", ".hidden"]))
        for part in (("train", "test") if split else ("",)):
            for name in classes:
                folder = root / part / name
                folder.mkdir(parents=True, exist_ok=True)
                for index in range(rng.randint(0, 3)):
                    seed = rng.choice(self.images.seeds[:7])
                    data = mutate_bytes(rng, seed) if rng.random() < 0.3 else seed
                    suffix = rng.choice((".png", ".jpg", ".JPEG", ".txt", ""))
                    (folder / f"{index}{suffix}").write_bytes(data)
        root.mkdir(parents=True, exist_ok=True)
        odd = rng.randrange(8)
        if odd == 0:
            (root / "stray.png").write_bytes(self.images.seeds[0])
        elif odd == 1 and classes:
            (root / ("train" if split else "") / classes[0] / "dir.png").mkdir(
                parents=True, exist_ok=True)
        elif odd == 2 and classes:
            link = root / ("train" if split else "") / classes[0] / "broken.png"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(directory / "nowhere.png")
        elif odd == 3 and classes:
            fifo = root / ("train" if split else "") / classes[0] / "pipe.png"
            fifo.parent.mkdir(parents=True, exist_ok=True)
            os.mkfifo(fifo)
        elif odd == 4 and split:
            (root / "test" / "unknown_class").mkdir(parents=True, exist_ok=True)
        elif odd == 5:
            (root / "file_not_folder").write_bytes(b"x")
        return root

    def read(self, path: Path):
        from tinyconv.data.datasets import load_image_folder
        return load_image_folder(path, "train", size=(12, 12), channels=1)


SPEC_TOKENS = ("->", "[", "]", "*", "(", ")", ",", "=", "?", " ", "\n", "0", "1", "3", "-1",
               "1.5", "1e9", "99999999999999999999", "INPUT", "CONV", "FC", "MAXPOOL", "POOL",
               "AVGPOOL", "BN", "DROPOUT", "FLATTEN", "act", "relu", "none", "pad", "stride",
               "p", "kernel", "units", "filters", "é", "\x00", "nan", "inf", "#")


class SpecTarget(Target):
    name = "spec"
    # A spec may describe up to MAX_PARAMETERS weights: one layer's are drawn in
    # float64 and kept in float32, 12 bytes each at the peak.
    memory_floor = 12 * MAX_PARAMETERS + (64 << 20)

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        from tinyconv.models.presets import PRESETS
        self.seeds = [preset.spec for preset in PRESETS.values()] + [
            "INPUT(1,28,28) -> [CONV(8,3,pad=1) -> MAXPOOL(2)?]*6 -> FC(10)",
            "INPUT(3,32,32, act=tanh) -> [[CONV(16,3,pad=1)]*2 -> AVGPOOL(2)]*2 -> BN -> "
            "FLATTEN -> FC(64, act=sigmoid) -> DROPOUT(0.3) -> FC(10)",
            "INPUT(1,4,4) -> FC(2)"]

    def case(self, rng: random.Random, directory: Path) -> Path:
        text = rng.choice(self.seeds)
        for _ in range(rng.randint(1, 4)):
            how = rng.randrange(7)
            at = rng.randrange(len(text) + 1)
            if how == 0:
                text = text[:at] + text[at + rng.randint(1, 8):]
            elif how <= 2:
                text = text[:at] + rng.choice(SPEC_TOKENS) + text[at:]
            elif how == 3:  # a number made huge, zero or negative
                digits = [i for i, ch in enumerate(text) if ch.isdigit()]
                if digits:
                    i = rng.choice(digits)
                    text = text[:i] + rng.choice(("0", "-", "999999", "4294967296", "1" * 40)) \
                        + text[i + 1:]
            elif how == 4:  # deep nesting
                depth = rng.choice((10, 100, 1000, 5000))
                start = text.find("->")
                if start >= 0:
                    text = (text[:start + 2] + " [" * depth + text[start + 2:]
                            + "]*1" * depth)
            elif how == 5:  # a long chain
                text = text + " -> BN" * rng.choice((10, 1000, 10000))
            else:
                text = text.replace("->", rng.choice(("->", "- >", "=>", "→", "-->")))
        path = directory / "case.spec"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        return path

    def read(self, path: Path):
        from tinyconv.models.spec import build
        return build(path.read_text(encoding="utf-8"), rng=0)


class CliTarget(Target):
    """Command-line arguments: :func:`tinyconv.cli.main` on mutated argument lists.

    Each case copies small seeds (a model file, a picture, an image folder, a
    file that is none of these) into its own directory and runs there, so
    that a command writing where an argument says writes only there. A case
    ends cleanly when ``main`` returns 0 (or ``--help`` exits 0), or returns
    2 with one ``tinyconv: error:`` line on stderr; anything else, or an
    exception out of ``main``, is a failure. Training is always held to one
    short epoch on a few images and one worker (the options are appended
    after the mutations; the last one given wins), and ``bench`` is left
    out: both would be long, not wrong.
    """

    name = "cli"
    SPEC = "INPUT(1,8,8) -> CONV(2,3) -> MAXPOOL(2) -> FC(2)"
    TRAIN_LIMITS = ["--epochs", "1", "--limit-train", "6", "--limit-test", "4",
                    "--batch-size", "3", "--workers", "1"]

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        from tinyconv.data.loader import Normalization
        from tinyconv.models.serialize import save_model
        from tinyconv.models.spec import build
        seeds = workdir / "seeds"
        (seeds / "pictures").mkdir(parents=True)
        save_model(seeds / "model.npz", build(self.SPEC, rng=0), self.SPEC, ["dark", "light"],
                   Normalization((0.5,), (0.25,)))
        images = ImageTarget(workdir)
        for name in ("dark", "light"):
            (seeds / "pictures" / name).mkdir()
            for index in range(3):
                (seeds / "pictures" / name / f"{index}.png").write_bytes(images.seeds[0])
        (seeds / "picture.png").write_bytes(images.seeds[0])
        (seeds / "notes.txt").write_text("not a model, not a picture\n")
        self.seeds = seeds
        os.environ.update(TINYCONV_WORKERS="1", TINYCONV_NO_DOWNLOAD="1")
        self.templates = [
            ["summary", "lenet5"], ["summary", self.SPEC], ["summary", "model.npz"],
            ["explain", "conv"], ["explain", "pool", "--size", "2", "--stride", "1"],
            ["explain", "conv", "--input", "[[1, 2, 3], [4, 5, 6], [7, 8, 9]]",
             "--filter", "[[1, 0], [0, 1]]", "--stride", "2", "--padding", "1"],
            ["explain", "conv-backward", "--stride", "2"],
            ["predict", "model.npz", "picture.png", "--top", "2"],
            ["evaluate", "model.npz", "--data", "pictures", "--json"],
            ["train", "--data", "pictures", "--arch", self.SPEC, "--val-fraction", "0",
             "--out", "run"],
            ["train", "--data", "pictures", "--arch", "tutorial", "--out", "run"],
            ["visualize", "model.npz", "--what", "filters", "--out", "."],
            ["export", "model.npz", "model.onnx"],
        ]
        self.options = ["--help", "--json", "--top", "--data", "--epochs", "--lr", "--seed",
                        "--arch", "--resume", "--what", "--index", "--flip-average", "--out",
                        "--input", "--filter", "--stride", "--padding", "--size", "--gif",
                        "--momentum", "--schedule", "--optimizer", "--patience", "--classes"]
        self.values = ["-1", "0", "1", "2", "nan", "inf", "-inf", "1e400", "9" * 20, "", " ",
                       "--", "-", "x" * 3000, "é☃", "[[1, 2], [3]]", "[" * 300, "[[]]", "1e-300",
                       "notes.txt", "pictures", "model.npz", "picture.png", "missing/file",
                       ".", "..", "INPUT(1,8,8) -> FC(", "lenet5", "default", "adam"]

    def case(self, rng: random.Random, directory: Path) -> Path:
        shutil.copytree(self.seeds, directory, dirs_exist_ok=True)
        argv = list(rng.choice(self.templates))
        for _ in range(rng.randint(0, 3)):  # 0: the template as it is, which must work
            how, at = rng.randrange(5), rng.randrange(len(argv) + 1)
            if how == 0 and argv:
                argv[min(at, len(argv) - 1)] = rng.choice(self.values)
            elif how == 1 and argv:
                del argv[min(at, len(argv) - 1)]
            elif how == 2:
                argv.insert(at, rng.choice(self.options))
            elif how == 3:
                argv.insert(at, rng.choice(self.values))
            elif argv:
                argv.insert(at, argv[min(at, len(argv) - 1)])
        if argv and argv[0] == "train":
            argv += self.TRAIN_LIMITS
        path = directory / "argv.json"
        path.write_text(json.dumps(argv), encoding="utf-8")
        return path

    def read(self, path: Path):
        import contextlib

        from tinyconv.cli import main
        argv = json.loads(path.read_text(encoding="utf-8"))
        if argv and argv[0] == "bench":
            return None
        out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
        os.chdir(path.parent)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    status = main(argv)
                except SystemExit as done:  # --help
                    status = done.code
        except Exception as error:  # noqa: BLE001 - nothing may leave main
            raise RuntimeError(f"{type(error).__name__} out of main: {error}") from error
        finally:
            os.chdir(here)
        lines = err.getvalue().splitlines()
        if status == 0 and "Traceback" not in err.getvalue():
            return status
        if status == 2 and len(lines) == 1 and lines[0].startswith("tinyconv: error: "):
            raise ValueError(lines[0])
        raise RuntimeError(f"exit status {status} with stderr {err.getvalue()[:2000]!r}")


TARGETS = {cls.name: cls for cls in (ModelTarget, CheckpointTarget, ResumeTarget, IdxTarget,
                                     DatasetTarget, ImageTarget, FolderTarget, SpecTarget,
                                     CliTarget)}
#: What a run fuzzes unless told otherwise: every target.
DEFAULT_TARGETS = list(TARGETS)


# --------------------------------------------------------------------------- the runner

def _address_space() -> int:
    """This process's virtual memory size in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def fuzz(targets: list[str], cases: int, seed: int, case_seconds: float, memory_mib: int,
         save_failures: Path | None = None, only: int | None = None,
         log=print) -> dict[str, Tally]:
    """Run ``cases`` cases spread evenly over ``targets``; return a Tally per target.

    Case ``i`` of a target is drawn from ``random.Random(f"{seed}:{target}:{i}")``
    alone, so ``only=i`` replays it exactly.
    """
    tallies = {}
    with tempfile.TemporaryDirectory(prefix="tinyconv-fuzz-") as work:
        work = Path(work)
        made = {}
        for name in targets:
            (work / name).mkdir()
            made[name] = TARGETS[name](work / name)
        base = _address_space()
        per_target = [cases // len(targets) + (i < cases % len(targets))
                      for i in range(len(targets))]
        for name, count in zip(targets, per_target):
            target, tally = made[name], Tally()
            if memory_mib:
                limit = base + max(memory_mib << 20, target.memory_floor)
                resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(
                    resource.RLIMIT_AS)[1]))
            started = time.perf_counter()
            indices = [only] if only is not None else range(count)
            for index in indices:
                rng = random.Random(f"{seed}:{name}:{index}")
                directory = work / f"{name}-case"
                directory.mkdir()
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # NaN cast to int, in a mutator
                        path = target.case(rng, directory)
                    began = time.perf_counter()
                    outcome, detail = run_case(target.read, path, case_seconds)
                    took = time.perf_counter() - began
                    tally.tried += 1
                    if took > tally.slowest[0]:
                        tally.slowest = (took, f"{name}:{index}")
                    if outcome == "result":
                        tally.results += 1
                    elif outcome == "error":
                        tally.errors += 1
                    else:
                        tally.failures.append({"case": f"{name}:{index}", "kind": outcome,
                                               "detail": detail})
                        if save_failures:
                            _keep(path, save_failures / f"{name}-{index}")
                    if only is not None:
                        log(f"{name}:{index} {outcome}: {detail}")
                finally:
                    shutil.rmtree(directory, ignore_errors=True)
            tally.seconds = time.perf_counter() - started
            tallies[name] = tally
            if only is None:
                log(f"{name}: {tally.as_dict()}")
    return tallies


def _keep(path: Path, where: Path) -> None:
    where.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        shutil.copytree(path, where, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copyfile(path, where.with_suffix(path.suffix))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000, help="cases in all (default 2000)")
    parser.add_argument("--target", nargs="+", choices=sorted(TARGETS), default=DEFAULT_TARGETS,
                        help=f"(default: {' '.join(DEFAULT_TARGETS)})")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    parser.add_argument("--case-seconds", type=float, default=10.0,
                        help="a case running longer is a hang (default 10)")
    parser.add_argument("--memory-mib", type=int, default=512,
                        help="address space allowed above the warmed-up process (default "
                             "512; 0: no limit)")
    parser.add_argument("--replay", metavar="TARGET:N", help="run only case N of TARGET")
    parser.add_argument("--save-failures", type=Path, metavar="DIR",
                        help="copy each failing input into DIR")
    parser.add_argument("--json", action="store_true", help="print the counts as one JSON line")
    parser.add_argument("--show", type=int, default=5, help="failures shown per target")
    args = parser.parse_args(argv)
    targets, only = args.target, None
    if args.replay:
        name, _, index = args.replay.partition(":")
        targets, only = [name], int(index)
    tallies = fuzz(targets, args.cases, args.seed, args.case_seconds, args.memory_mib,
                   args.save_failures, only,
                   log=lambda line: print(line, file=sys.stderr, flush=True))
    total = Tally()
    for tally in tallies.values():
        total.tried += tally.tried
        total.results += tally.results
        total.errors += tally.errors
        total.failures += tally.failures
        total.seconds += tally.seconds
        total.slowest = max(total.slowest, tally.slowest)
    report = {"total": total.as_dict(), **{n: t.as_dict() for n, t in tallies.items()}}
    if args.json:
        print(json.dumps(report))
    else:
        for name, row in report.items():
            print(f"{name:10} cases {row['cases']:7}  clean results {row['clean_results']:7}  "
                  f"clean errors {row['clean_errors']:7}  failures {row['failures']:5} "
                  f"{row['failure_kinds'] or ''}  {row['seconds']:.1f} s "
                  f"(slowest case {row['slowest_case_seconds']:.2f} s)")
        for name, tally in tallies.items():
            for failure in tally.failures[:args.show]:
                detail = "\n".join(failure["detail"].splitlines()[-6:])
                print(f"\n--- {failure['case']} ({failure['kind']})\n{detail}")
    return 1 if total.failures else 0


if __name__ == "__main__":
    sys.exit(main())
