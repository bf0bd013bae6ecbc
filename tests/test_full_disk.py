"""A save that fails (full disk, no permission) keeps the previous file and says what failed.

The failures are injected where the operating system reports them: a
``write`` into the temporary file, the ``fsync`` that forces it to disk
(where delayed allocation reports a full disk), and the ``os.replace`` that
puts it in place. Tests run as root, where a read-only directory does not
stop writes, so EACCES is injected too.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyconv.data.loader import Normalization
from tinyconv.fileio import atomic_save_npz, atomic_write_text
from tinyconv.models.serialize import load_model, read_npz, save_model
from tinyconv.models.spec import build

SPEC = "INPUT(1,8,8) -> CONV(2,3) -> MAXPOOL(2) -> FC(3)"
CLASSES = ["a", "b", "c"]
NORM = Normalization((0.5,), (0.25,))


class _DiskFillsUp:
    """A file object whose writes fail with ENOSPC once ``room`` bytes are written."""

    def __init__(self, file, room: int):
        self._file, self._room = file, room

    def write(self, data) -> int:
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._file.close()


def _inject(monkeypatch, where: str) -> int:
    """Make the next atomic write fail at ``where``; return the errno it fails with."""
    def fail(code):
        def raiser(*args, **kwargs):
            raise OSError(code, os.strerror(code))
        return raiser

    if where == "write":
        real_fdopen = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda *a, **k: _DiskFillsUp(real_fdopen(*a, **k), 100))
        return errno.ENOSPC
    if where == "fsync":
        monkeypatch.setattr(os, "fsync", fail(errno.ENOSPC))
        return errno.ENOSPC
    if where == "replace":
        monkeypatch.setattr(os, "replace", fail(errno.EACCES))
        return errno.EACCES
    if where == "mkstemp":  # a directory one may not write to
        monkeypatch.setattr("tempfile.mkstemp", fail(errno.EACCES))
        return errno.EACCES
    raise AssertionError(where)


WHERE = ["write", "fsync", "replace", "mkstemp"]


@pytest.mark.parametrize("where", WHERE)
def test_a_failed_model_save_keeps_the_previous_model(tmp_path, monkeypatch, where):
    path = tmp_path / "model.npz"
    old = build(SPEC, rng=1)
    save_model(path, old, SPEC, CLASSES, NORM, {"run": "old"})
    before = path.read_bytes()
    code = _inject(monkeypatch, where)
    with pytest.raises(OSError) as caught:
        save_model(path, build(SPEC, rng=2), SPEC, CLASSES, NORM, {"run": "new"})
    monkeypatch.undo()
    error = caught.value
    assert error.errno == code and error.filename == str(path)
    # One line that says which file and why: what the command line prints.
    assert error.strerror == (f"could not save it: {os.strerror(code)} "
                              "(the previous file is unchanged)")
    assert "\n" not in str(error)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]  # no temporary file
    assert path.read_bytes() == before
    loaded = load_model(path)
    assert loaded.metadata == {"run": "old"}
    for (name, want), got in zip(old.state_dict().items(), loaded.model.state_dict().values()):
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("where", WHERE)
def test_a_failed_checkpoint_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, where):
    path = tmp_path / "checkpoint.npz"
    atomic_save_npz(path, epoch=np.array(3), w=np.arange(1000, dtype=np.float32))
    code = _inject(monkeypatch, where)
    with pytest.raises(OSError) as caught:
        atomic_save_npz(path, epoch=np.array(4), w=np.zeros(1000, np.float32))
    monkeypatch.undo()
    assert caught.value.errno == code and caught.value.filename == str(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]
    arrays = read_npz(path, what="checkpoint")
    assert int(arrays["epoch"]) == 3
    np.testing.assert_array_equal(arrays["w"], np.arange(1000, dtype=np.float32))


def test_a_first_save_that_fails_says_nothing_was_written(tmp_path, monkeypatch):
    _inject(monkeypatch, "write")
    with pytest.raises(OSError, match=r"could not save it: No space left on device "
                                      r"\(nothing was written\)"):
        atomic_write_text(tmp_path / "notes.txt", "x" * 1000)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_reports_a_full_disk_in_one_line(tmp_path):
    """``tinyconv visualize`` with every fsync failing: exit 2, one line, old picture kept."""
    model = tmp_path / "model.npz"
    save_model(model, build(SPEC, rng=1), SPEC, CLASSES, NORM)
    out = tmp_path / "pictures"
    out.mkdir()
    (out / "filters-layer0.png").write_bytes(b"the previous picture")
    injected = ("import errno, os, runpy, sys\n"
                "def full(*args):\n"
                "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
                "os.fsync = full\n"
                "sys.argv = ['tinyconv'] + sys.argv[1:]\n"
                "runpy.run_module('tinyconv', run_name='__main__')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", injected, "visualize", str(model),
                             "--what", "filters", "--out", str(out)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    picture = out / "filters-layer0.png"
    assert result.stderr == (f"tinyconv: error: {picture}: could not save it: "
                             "No space left on device (the previous file is unchanged)\n")
    assert sorted(p.name for p in out.iterdir()) == ["filters-layer0.png"]
    assert (out / "filters-layer0.png").read_bytes() == b"the previous picture"
