"""Model files: a round trip keeps every prediction, and every broken file
gives a clear ModelFileError. Atomic writes survive crashes, even kill -9."""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from tinyconv.fileio import atomic_save_npz, atomic_write_bytes, atomic_write_text
from tinyconv.data.loader import Normalization
from tinyconv.models.serialize import (FORMAT_VERSION, LoadedModel, ModelFileError, _checksum,
                                       load_model, read_npz, save_model)
from tinyconv.models.spec import build
from tinyconv.training.evaluation import predict_proba

SPEC = ("INPUT(1,12,12) -> CONV(3,3) -> BN -> MAXPOOL(2) -> FC(8) -> DROPOUT(0.25) -> FC(4)")
CLASSES = ["cat", "dog", "bird", "fish"]
NORM = Normalization((0.25,), (0.5,))


@pytest.fixture
def model():
    """A model with non-trivial weights and batch-norm statistics."""
    model = build(SPEC, rng=3)
    x = np.random.default_rng(0).normal(size=(16, 1, 12, 12)).astype(np.float32)
    model.forward(x)  # moves the running statistics away from 0 and 1
    for param in model.parameters():
        param.data += np.float32(0.01)
    return model


@pytest.fixture
def saved(tmp_path, model):
    path = tmp_path / "model.npz"
    save_model(path, model, SPEC, CLASSES, NORM, {"dataset": "toy", "test_accuracy": 0.5})
    return path


def _entries(path) -> dict:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _forge(path, out, changes: dict, *, checksum=True):
    """Rewrite the file at ``path`` into ``out`` with ``changes`` (None removes an entry);
    with ``checksum`` the SHA-256 is recomputed, as a careful forger would."""
    arrays = _entries(path)
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    if checksum:
        arrays["sha256"] = np.array(_checksum(arrays))
    np.savez(out, **arrays)
    return out


def test_round_trip_gives_identical_predictions(saved, model):
    loaded = load_model(saved)
    assert isinstance(loaded, LoadedModel)
    assert loaded.spec == SPEC
    assert loaded.classes == CLASSES
    assert loaded.normalization == NORM
    assert loaded.metadata == {"dataset": "toy", "test_accuracy": 0.5}
    assert not loaded.model.training
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(loaded.model.state_dict()[name], array, err_msg=name)
    x = NORM(np.random.default_rng(1).integers(0, 256, (5, 1, 12, 12), dtype=np.uint8))
    np.testing.assert_array_equal(predict_proba(loaded.model, x), predict_proba(model, x))


def test_file_layout(saved):
    arrays = _entries(saved)
    assert int(arrays["format_version"]) == FORMAT_VERSION == 1
    assert "param/0.weight" in arrays and "buffer/2.running_mean" in arrays
    assert str(arrays["sha256"]) == _checksum(arrays)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nowhere.npz")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ModelFileError, match="not a .npz file"):
        load_model(path)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(saved)


def test_a_zip_that_is_not_ours(tmp_path):
    path = tmp_path / "photos.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ModelFileError, match="not a NumPy array"):
        load_model(path)


def test_an_npz_that_is_not_ours(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.arange(3))
    with pytest.raises(ModelFileError, match="not a tinyconv model file.*format_version"):
        load_model(path)


def test_a_flipped_byte_is_found(saved):
    data = bytearray(saved.read_bytes())
    start = data.index(b"param/0.weight.npy")
    header_end = data.index(b"\n", start + 100) + 1  # the .npy header ends with a newline
    data[header_end + 4] ^= 0x40
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="damaged"):
        load_model(saved)


def test_changed_weights_fail_the_checksum(saved, tmp_path):
    weight = _entries(saved)["param/0.weight"].copy()
    weight[0, 0, 0, 0] += 1
    forged = _forge(saved, tmp_path / "forged.npz", {"param/0.weight": weight}, checksum=False)
    with pytest.raises(ModelFileError, match="modified or corrupted.*SHA-256"):
        load_model(forged)


@pytest.mark.parametrize("version, match", [(2, "format version 2.*newer"),
                                            (0, "format version 0; this tinyconv reads")])
def test_unknown_format_version(saved, tmp_path, version, match):
    forged = _forge(saved, tmp_path / "v.npz", {"format_version": np.array(version)})
    with pytest.raises(ModelFileError, match=match):
        load_model(forged)


@pytest.mark.parametrize("changes, match", [
    ({"param/0.weight": np.zeros((3, 1, 5, 5), np.float32)}, r"has shape \(3, 1, 5, 5\)"),
    ({"param/0.weight": None}, r"missing \['0.weight'\]"),
    ({"param/9.weight": np.zeros(3, np.float32)}, r"unexpected \['9.weight'\]"),
    ({"buffer/2.running_var": None}, r"missing \['2.running_var'\]"),
])
def test_weights_that_do_not_fit_the_spec(saved, tmp_path, changes, match):
    forged = _forge(saved, tmp_path / "misfit.npz", changes)
    with pytest.raises(ModelFileError, match="weights that do not fit its spec.*" + match):
        load_model(forged)


def test_classes_that_do_not_fit_the_outputs(saved, tmp_path):
    forged = _forge(saved, tmp_path / "classes.npz", {"classes": np.array(["a", "b"])})
    with pytest.raises(ModelFileError, match="outputs 4 scores but there are 2 class names"):
        load_model(forged)


def test_a_pickled_object_is_refused(saved, tmp_path):
    arrays = _entries(saved)
    arrays["metadata"] = np.array([{"evil": "payload"}], dtype=object)
    path = tmp_path / "pickled.npz"
    np.savez(path, allow_pickle=True, **arrays)
    with pytest.raises(ModelFileError, match="pickled object in 'metadata'.*never pickles"):
        load_model(path)


def test_a_spec_that_does_not_build(saved, tmp_path):
    forged = _forge(saved, tmp_path / "spec.npz", {"spec": np.array("INPUT(1,12,12) -> FLY(3)")})
    with pytest.raises(ModelFileError, match="spec that does not build"):
        load_model(forged)


def test_save_refuses_what_would_not_load(tmp_path, model):
    path = tmp_path / "model.npz"
    with pytest.raises(ValueError, match="does not fit the spec"):
        save_model(path, model, "INPUT(1,12,12) -> FC(4)", CLASSES, NORM)
    with pytest.raises(ValueError, match="outputs 4 scores but there are 3"):
        save_model(path, model, SPEC, CLASSES[:3], NORM)
    with pytest.raises(TypeError, match="JSON"):
        save_model(path, model, SPEC, CLASSES, NORM, {"when": object()})
    assert not path.exists()


def test_atomic_writes_leave_no_temporary_file_on_error(tmp_path, monkeypatch):
    atomic_write_text(tmp_path / "a.txt", "old")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_save_npz(tmp_path / "b.npz", x=np.zeros(3))
    monkeypatch.setattr("os.fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(tmp_path / "a.txt", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "old"
    with pytest.raises(TypeError, match="data must be bytes"):
        atomic_write_bytes(tmp_path / "c", "text")
    with pytest.raises(TypeError, match="dtype object"):
        atomic_save_npz(tmp_path / "d.npz", x=np.array([None], dtype=object))
    with pytest.raises(FileNotFoundError, match="directory .*nowhere does not exist"):
        atomic_write_text(tmp_path / "nowhere" / "e.txt", "text")


def test_kill_9_in_the_middle_of_writes_never_breaks_the_file(tmp_path):
    """A process rewriting an 8 MB .npz over and over is killed with SIGKILL;
    the file it leaves is complete, whichever moment the kill came."""
    path = tmp_path / "checkpoint.npz"
    writer = (
        "import sys, numpy as np\n"
        "from tinyconv.fileio import atomic_save_npz\n"
        "i = 0\n"
        "while True:\n"
        "    atomic_save_npz(sys.argv[1], step=np.array(i), w=np.full(2_000_000, i, np.float32))\n"
        "    i += 1\n"
        "    if i == 1:\n"
        "        print('written', flush=True)\n")
    for delay in (0.05, 0.13, 0.31):
        process = subprocess.Popen([sys.executable, "-c", writer, str(path)],
                                   stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline() == "written\n"
        time.sleep(delay)
        process.kill()
        process.wait()
        process.stdout.close()
        arrays = _entries(path)
        assert (arrays["w"] == arrays["step"]).all()


# -- non-finite weights, and files that would fill the memory ------------------------------

@pytest.mark.parametrize("key", ["param/0.weight", "buffer/2.running_var", "param/8.bias"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused(saved, tmp_path, key, value):
    array = _entries(saved)[key].copy()
    array.reshape(-1)[-1] = value
    forged = _forge(saved, tmp_path / "nan.npz", {key: array})
    with pytest.raises(ModelFileError, match=rf"holds 1 non-finite values \(NaN or inf\) in "
                                             rf"'{key}': it cannot be used"):
        load_model(forged)


def test_a_checkpoint_with_non_finite_moments_is_refused(tmp_path):
    path = tmp_path / "checkpoint.npz"
    velocity = np.zeros((3, 4), np.float32)
    atomic_save_npz(path, best_val_loss=np.array(np.inf), **{"optimizer/state/0/velocity":
                                                            velocity})
    # Before the first validation the best loss is infinite: a single number may be.
    assert np.isinf(read_npz(path, what="checkpoint")["best_val_loss"])
    velocity[1, 2] = np.nan
    atomic_save_npz(path, best_val_loss=np.array(np.inf), **{"optimizer/state/0/velocity":
                                                            velocity})
    with pytest.raises(ModelFileError, match=r"checkpoint .* holds 1 non-finite values .* in "
                                             r"'optimizer/state/0/velocity'"):
        read_npz(path, what="checkpoint")


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, method in members:
            archive.writestr(name, data, compress_type=method)
    return path


def test_a_zip_bomb_is_refused_before_it_is_unpacked(saved, tmp_path):
    members = [(name + ".npy", array_bytes, zipfile.ZIP_STORED)
               for name, array_bytes in _npy_members(saved).items()]
    # 64 MiB of zeros deflate to 64 KB: a thousand times the size on disk.
    bomb = _zip(tmp_path / "bomb.npz", members + [("extra.npy", bytes(64 << 20),
                                                   zipfile.ZIP_DEFLATED)])
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ModelFileError, match=r"is a zip bomb: its members would unpack to "
                                             r"67,1\d\d,\d\d\d bytes, more than 16 times"):
        load_model(bomb)


def _npy_members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename.removesuffix(".npy"): archive.read(info)
                for info in archive.infolist()}


def _npy_header(descr: str, shape: tuple) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode() + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


@pytest.mark.parametrize("descr, shape, match", [
    ("<f4", (10**12,), r"its header says 1,000,000,000,000 values of float32 "
                       r"\(4,000,000,000,000 bytes\), its entry holds 72 bytes"),
    ("<f4", (2,), r"its header says 2 values of float32 \(8 bytes\), its entry holds 72"),
    ("<c16", (9,), r"of dtype complex128: a tinyconv file holds only booleans, integers"),
    ("|V8", (9,), r"of dtype \|V8: a tinyconv file holds only"),
])
def test_an_array_header_that_lies_is_refused_before_allocating(saved, tmp_path, descr, shape,
                                                                match):
    members = _npy_members(saved)
    members["param/0.weight"] = _npy_header(descr, shape) + bytes(72)
    path = _zip(tmp_path / "lies.npz", [(k + ".npy", v, zipfile.ZIP_STORED)
                                        for k, v in members.items()])
    with pytest.raises(ModelFileError, match=r"'param/0.weight'.*" + match):
        load_model(path)


def test_two_entries_of_one_name_are_refused(saved, tmp_path):
    members = list(_npy_members(saved).items())
    with pytest.warns(UserWarning, match="Duplicate name"):
        path = _zip(tmp_path / "twice.npz", [(k + ".npy", v, zipfile.ZIP_STORED)
                                             for k, v in members + members[:1]])
    with pytest.raises(ModelFileError, match=rf"holds two entries named '{members[0][0]}'"):
        load_model(path)


@pytest.mark.parametrize("key, value, match", [
    ("classes", np.array("cat"), r"classes that is not a list of names: <U3 of shape \(\)"),
    ("spec", np.array([SPEC]), r"spec that is not a text"),
    ("metadata", np.array("[1, 2]"), r"metadata that is not a JSON object: list"),
    ("metadata", np.array("[" * 100_000), r"metadata that is not JSON"),
    ("normalization/std", np.array(0.5), r"normalization/std that is not a list of numbers"),
    ("normalization/mean", np.array([0.1, 0.2]), r"mean and std need one value per channel"),
])
def test_header_entries_of_the_wrong_kind(saved, tmp_path, key, value, match):
    forged = _forge(saved, tmp_path / "kind.npz", {key: value})
    with pytest.raises(ModelFileError, match=match):
        load_model(forged)


def test_a_spec_error_is_told_in_one_line(saved, tmp_path):
    forged = _forge(saved, tmp_path / "spec.npz", {"spec": np.array("INPUT(1,")})
    with pytest.raises(ModelFileError, match="spec that does not build") as caught:
        load_model(forged)
    assert "\n" not in str(caught.value)


def test_a_normalization_for_other_channels_is_refused(saved, tmp_path):
    forged = _forge(saved, tmp_path / "rgb.npz", {"normalization/mean": np.array([0.1, 0.2, 0.3]),
                                                  "normalization/std": np.array([0.5, 0.5, 0.5])})
    with pytest.raises(ModelFileError, match="its normalization has 3 channels, its spec's "
                                             "input 1"):
        load_model(forged)
