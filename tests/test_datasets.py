"""Finding, downloading and loading datasets; image folders as datasets.

Nothing here touches the internet: downloads go to an HTTP server on
127.0.0.1 serving small IDX files made by the test, whose checksums replace
the real ones for the test's duration.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tinyconv.data import datasets
from tinyconv.data.datasets import (KNOWN, DataNotFound, Dataset, find_dataset_dir, load_dataset,
                                    search_dirs)
from tinyconv.data.idx import write_idx

SIZES = {"train": 12, "test": 5}


def make_files(directory: Path, seed: int = 0, gz: bool = True) -> dict[str, bytes]:
    """Write a tiny dataset's four IDX files into ``directory``; return their bytes by name."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, (image_name, label_name) in KNOWN["fashion-mnist"].files.items():
        n = SIZES[split]
        arrays = {image_name: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                  label_name: (np.arange(n) % 10).astype(np.uint8)}
        for name, array in arrays.items():
            path = directory / (name if gz else name.removesuffix(".gz"))
            write_idx(path, array)
            written[name] = path.read_bytes()
    return written


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No $TINYCONV_DATA, a private cache, a Debian directory under tmp_path, and no
    apt-get: no test installs a real package."""
    monkeypatch.delenv("TINYCONV_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    debian = tmp_path / "debian"
    monkeypatch.setitem(KNOWN, "fashion-mnist",
                        dataclasses.replace(KNOWN["fashion-mnist"], debian_dir=str(debian)))
    monkeypatch.setattr(datasets, "APT_GET", str(tmp_path / "no-apt-get"))
    return tmp_path


def test_known_datasets_describe_themselves():
    fashion, mnist = KNOWN["fashion-mnist"], KNOWN["mnist"]
    assert fashion.classes == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                               "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert mnist.classes == tuple("0123456789")
    assert fashion.mirror == "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    for known in (fashion, mnist):
        assert sorted(known.sha256) == sorted(known.file_names)
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in known.sha256.values())


def test_search_order_user_then_env_then_cache_then_debian(clean_env, monkeypatch):
    tmp = clean_env
    monkeypatch.setenv("TINYCONV_DATA", str(tmp / "env"))
    places = [(str(p), origin) for p, origin in search_dirs("fashion-mnist", tmp / "user")]
    assert places == [
        (str(tmp / "user"), "--data-dir"), (str(tmp / "user" / "fashion-mnist"), "--data-dir"),
        (str(tmp / "env"), "$TINYCONV_DATA"),
        (str(tmp / "env" / "fashion-mnist"), "$TINYCONV_DATA"),
        (str(tmp / "cache" / "tinyconv" / "fashion-mnist"), "cache"),
        (str(tmp / "debian"), "Debian package dataset-fashion-mnist"),
    ]
    # Every place holds the files; removing each winner in turn reveals the next.
    for directory in ("user", "env/fashion-mnist", "cache/tinyconv/fashion-mnist", "debian"):
        make_files(tmp / directory)
    for expected in ("user", "env/fashion-mnist", "cache/tinyconv/fashion-mnist", "debian"):
        assert find_dataset_dir("fashion-mnist", tmp / "user") == tmp / expected
        for file in (tmp / expected).iterdir():
            file.unlink()


def test_unpacked_files_count_and_mnist_has_no_debian_place(clean_env):
    make_files(clean_env / "user" / "mnist", gz=False)
    assert find_dataset_dir("mnist", clean_env / "user") == clean_env / "user" / "mnist"
    assert all("Debian" not in origin for _, origin in search_dirs("mnist"))
    dataset = load_dataset("mnist", "test", data_dir=clean_env / "user", download=False)
    assert dataset.images.shape == (5, 1, 28, 28) and dataset.classes == list("0123456789")


def test_incomplete_directory_is_skipped_and_reported(clean_env):
    make_files(clean_env / "user")
    (clean_env / "user" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataNotFound) as caught:
        find_dataset_dir("fashion-mnist", clean_env / "user")
    message = str(caught.value)
    assert f"{clean_env / 'user'} (--data-dir): missing t10k-labels-idx1-ubyte.gz" in message
    assert f"{clean_env / 'debian'} (Debian package dataset-fashion-mnist)" in message


def test_unknown_name_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'cifar'.*fashion-mnist"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("mnist", "validation")


def test_known_dataset_with_wrong_content(clean_env):
    make_files(clean_env / "user")
    write_idx(clean_env / "user" / "train-labels-idx1-ubyte.gz", np.full(12, 10, np.uint8))
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        load_dataset("fashion-mnist", data_dir=clean_env / "user", download=False)
    write_idx(clean_env / "user" / "train-labels-idx1-ubyte.gz", np.zeros(11, np.uint8))
    with pytest.raises(ValueError, match="expected 12 uint8 labels"):
        load_dataset("fashion-mnist", data_dir=clean_env / "user", download=False)


# -- downloading from a local server ------------------------------------------------------

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A directory served over HTTP on 127.0.0.1; yields (directory, base URL).

    Downloads are allowed again for the test: they go to this local server.
    """
    monkeypatch.delenv("TINYCONV_NO_DOWNLOAD")
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def use_checksums(monkeypatch, files: dict[str, bytes]):
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    monkeypatch.setitem(KNOWN, "fashion-mnist",
                        dataclasses.replace(KNOWN["fashion-mnist"], sha256=sums))


def test_download_into_the_cache(clean_env, mirror, monkeypatch):
    served, url = mirror
    files = make_files(served)
    use_checksums(monkeypatch, files)
    lines = []
    dataset = load_dataset("fashion-mnist", "train", mirror=url, log=lines.append)
    cache = clean_env / "cache" / "tinyconv" / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)
    assert all((cache / name).read_bytes() == data for name, data in files.items())
    assert len(lines) == 4 and lines[0].startswith(f"downloading {url}")
    assert dataset.images.shape == (12, 1, 28, 28) and dataset.labels.dtype == np.int64
    # The second time it is found in the cache and nothing is fetched.
    for file in served.iterdir():
        file.unlink()
    assert len(load_dataset("fashion-mnist", "test", mirror=url)) == 5


def test_corrupt_download_leaves_nothing_behind(clean_env, mirror, monkeypatch):
    served, url = mirror
    files = make_files(served)
    use_checksums(monkeypatch, files)
    (served / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"tampered"))
    with pytest.raises(DataNotFound) as caught:
        load_dataset("fashion-mnist", mirror=url)
    message = str(caught.value)
    assert "checksum mismatch" in message and "train-images-idx3-ubyte.gz" in message
    cache = clean_env / "cache" / "tinyconv" / "fashion-mnist"
    assert not cache.exists() or list(cache.iterdir()) == []


def dead_url() -> str:
    """The URL of a port nothing listens on (once the probe is closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/"


def test_server_down_says_where_it_looked_and_how_to_get_the_files(clean_env, monkeypatch):
    monkeypatch.delenv("TINYCONV_NO_DOWNLOAD")  # the download is tried, from a dead local port
    url = dead_url()
    with pytest.raises(DataNotFound) as caught:
        load_dataset("fashion-mnist", data_dir=clean_env / "user", mirror=url)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"Fashion-MNIST not found (looked in {clean_env / 'user'} "
                              "(--data-dir): no such directory; ")
    for place in ("user", "cache/tinyconv/fashion-mnist", "debian"):
        assert str(clean_env / place) in message
    assert f"the download failed (could not download {url}train-images-idx3-ubyte.gz" in message
    # This system "has no apt-get" (clean_env): the package is named, not installed.
    assert ("Debian's package dataset-fashion-mnist has the files, but this system has no "
            "apt-get") in message
    assert KNOWN["fashion-mnist"].mirror in message and "--data-dir" in message
    assert not (clean_env / "cache" / "tinyconv" / "fashion-mnist").exists()


def test_no_download_when_told_not_to(clean_env):
    with pytest.raises(DataNotFound, match="looked in"):
        load_dataset("fashion-mnist", download=False, mirror="http://127.0.0.1:9/")


# -- installing Debian's package where no one need be asked --------------------------------

FAKE_TOOLS = {
    "apt-get": """
echo "apt-get $*" >> {log}
if [ "$1" = install ]; then
    if [ -n "$FAKE_APT_BROKEN" ]; then echo "E: Unable to locate package $3" >&2; exit 100; fi
    mkdir -p {debian} && cp {package}/* {debian}/
fi
""",
    "apt-cache": """
echo "apt-cache $*" >> {log}
[ -z "$FAKE_APT_UNKNOWN" ]
""",
    "sudo": """
echo "sudo $*" >> {log}
[ "$1" = -n ] || exit 1
if [ -n "$FAKE_SUDO_PASSWORD" ]; then echo "sudo: a password is required" >&2; exit 1; fi
shift
exec "$@"
""",
}


@pytest.fixture
def fake_apt(clean_env, monkeypatch):
    """apt-get, apt-cache and sudo stand-ins that log each call; ``apt-get install``
    puts a tiny dataset where the Debian package would. Returns the calls so far.

    Downloads are allowed: they are tried from a dead local port, and fail.
    """
    monkeypatch.delenv("TINYCONV_NO_DOWNLOAD")
    package = clean_env / "package"
    make_files(package, seed=7)
    log = clean_env / "calls.txt"
    log.touch()
    for name, body in FAKE_TOOLS.items():
        tool = clean_env / "bin" / name
        tool.parent.mkdir(exist_ok=True)
        tool.write_text("#!/bin/sh" + body.format(log=log, package=package,
                                                   debian=clean_env / "debian"))
        tool.chmod(0o755)
        monkeypatch.setattr(datasets, name.upper().replace("-", "_"), str(tool))
    return lambda: log.read_text().splitlines()


def test_missing_data_is_installed_from_debian_as_root(fake_apt, clean_env, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    lines = []
    dataset = load_dataset("fashion-mnist", "test", mirror=dead_url(), log=lines.append)
    assert fake_apt() == ["apt-cache show dataset-fashion-mnist",
                          "apt-get install -y dataset-fashion-mnist"]
    # The download's own line, then one line before installing.
    assert len(lines) == 2 and lines[0].startswith("downloading ")
    assert lines[1].startswith("Fashion-MNIST not found and the download failed (could not "
                               "download")
    assert lines[1].endswith(": installing Debian's package dataset-fashion-mnist: apt-get "
                             "install -y dataset-fashion-mnist")
    assert dataset.name == "fashion-mnist" and len(dataset) == SIZES["test"]
    np.testing.assert_array_equal(dataset.images[:, 0], datasets.read_idx(
        clean_env / "package" / "t10k-images-idx3-ubyte.gz"))


def test_an_unknown_package_is_installed_after_apt_get_update(fake_apt, monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("FAKE_APT_UNKNOWN", "1")
    assert len(load_dataset("fashion-mnist", "train", mirror=dead_url())) == SIZES["train"]
    assert fake_apt()[1:] == ["apt-get update", "apt-get install -y dataset-fashion-mnist"]
    # Without a log, the one line goes to stderr.
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 1 and said[0].endswith("apt-get update && apt-get install -y "
                                               "dataset-fashion-mnist")


def test_a_sudo_without_password_installs_it(fake_apt, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    lines = []
    load_dataset("fashion-mnist", "test", mirror=dead_url(), log=lines.append)
    assert fake_apt() == ["apt-cache show dataset-fashion-mnist", "sudo -n true",
                          f"sudo -n {datasets.APT_GET} install -y dataset-fashion-mnist",
                          "apt-get install -y dataset-fashion-mnist"]
    assert lines[-1].endswith("sudo -n apt-get install -y dataset-fashion-mnist")


@pytest.mark.parametrize("unknown, command", [
    ("", "sudo apt-get install -y dataset-fashion-mnist"),
    ("1", "sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist")])
def test_nothing_is_installed_where_sudo_asks_for_a_password(fake_apt, clean_env, monkeypatch,
                                                             unknown, command):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("FAKE_SUDO_PASSWORD", "1")
    monkeypatch.setenv("FAKE_APT_UNKNOWN", unknown)
    with pytest.raises(DataNotFound) as caught:
        load_dataset("fashion-mnist", mirror=dead_url())
    message = str(caught.value)
    assert "\n" not in message and "the download failed" in message
    assert f"; to install it, run: {command}; or download " in message
    assert [call for call in fake_apt() if call.startswith("apt-get")] == []
    assert not (clean_env / "debian").exists()


def test_a_failed_install_says_why_in_one_line(fake_apt, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("FAKE_APT_BROKEN", "1")
    with pytest.raises(DataNotFound) as caught:
        load_dataset("fashion-mnist", mirror=dead_url(), log=lambda line: None)
    message = str(caught.value)
    assert "\n" not in message
    assert ("'apt-get install -y dataset-fashion-mnist' failed with exit status 100: "
            "E: Unable to locate package dataset-fashion-mnist") in message


def test_without_downloads_nothing_is_installed_but_the_command_is_given(fake_apt, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(DataNotFound, match="; to install it, run: sudo apt-get install -y "
                                           "dataset-fashion-mnist; or download"):
        load_dataset("fashion-mnist", download=False)
    assert fake_apt() == ["apt-cache show dataset-fashion-mnist"]


def test_mnist_has_no_debian_package_and_says_so(fake_apt, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(DataNotFound) as caught:
        load_dataset("mnist", mirror=dead_url())
    message = str(caught.value)
    assert "\n" not in message and "; MNIST has no Debian package; to get it, download " in message
    assert fake_apt() == []


def test_make_train_on_a_fresh_machine_that_cannot_install_says_the_command(fake_apt,
                                                                            clean_env):
    """``tinyconv train`` as ``make train`` runs it, the data nowhere, no network, a
    sudo that wants a password: exit 2 and one line that ends with what to do."""
    injected = (
        "import dataclasses, os, runpy, sys\n"
        "from tinyconv.data import datasets\n"
        "debian, tools = sys.argv[1:3]\n"
        "datasets.KNOWN['fashion-mnist'] = dataclasses.replace(\n"
        "    datasets.KNOWN['fashion-mnist'], debian_dir=debian)\n"
        "for name in ('apt-get', 'apt-cache', 'sudo'):\n"
        "    setattr(datasets, name.upper().replace('-', '_'), os.path.join(tools, name))\n"
        "os.geteuid = lambda: 1000\n"
        "sys.argv = ['tinyconv'] + sys.argv[3:]\n"
        "runpy.run_module('tinyconv', run_name='__main__')\n")
    env = {**os.environ, "FAKE_SUDO_PASSWORD": "1", "XDG_CACHE_HOME": str(clean_env / "cache"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    env.pop("TINYCONV_DATA", None)
    env.pop("TINYCONV_NO_DOWNLOAD", None)  # as on a user's machine: the download is tried, and fails
    result = subprocess.run(
        [sys.executable, "-c", injected, str(clean_env / "debian"), str(clean_env / "bin"),
         "train", "--out", str(clean_env / "run"), "--mirror", dead_url()],
        capture_output=True, text=True, env=env, timeout=120, cwd=clean_env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("tinyconv: error: Fashion-MNIST not found (looked in ")
    assert "; to install it, run: sudo apt-get install -y dataset-fashion-mnist; " in result.stderr
    assert not (clean_env / "debian").exists()


# -- the real files ------------------------------------------------------------------------

@pytest.mark.usefixtures("fashion_mnist_dir")
def test_real_fashion_mnist_through_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.delenv("TINYCONV_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    train = load_dataset("fashion-mnist", "train", download=False)
    test = load_dataset("fashion-mnist", "test", download=False)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == np.uint8
    assert test.labels.shape == (10000,) and test.labels.dtype == np.int64
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    np.testing.assert_array_equal(np.bincount(test.labels), [1000] * 10)
    # The first training image is an ankle boot (label 9), as the dataset's own demo shows.
    assert train.labels[0] == 9


# -- Dataset -------------------------------------------------------------------------------

def test_dataset_checks_and_subset():
    images = np.arange(4 * 2 * 3 * 3, dtype=np.uint8).reshape(4, 2, 3, 3)
    dataset = Dataset(images, np.array([0, 1, 2, 1]), ["a", "b", "c"], "toy")
    part = dataset.subset(np.array([3, 0]))
    np.testing.assert_array_equal(part.images, images[[3, 0]])
    np.testing.assert_array_equal(part.labels, [1, 0])
    assert part.classes == ["a", "b", "c"] and len(part) == 2 and part.labels.dtype == np.int64
    with pytest.raises(ValueError, match="uint8 of shape"):
        Dataset(images.astype(np.float32), [0, 1, 2, 1], "abc", "toy")
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        Dataset(images, [0, 1, 2], "abc", "toy")
    with pytest.raises(ValueError, match=r"labels must lie in 0..2"):
        Dataset(images, [0, 1, 2, 3], "abc", "toy")
    with pytest.raises(TypeError, match="1-D integer array"):
        dataset.subset(np.array([0.5]))


# -- image folders -------------------------------------------------------------------------

def save_picture(path: Path, value: int, size=(10, 10)):
    """A square of ``value`` on black; the format follows the suffix."""
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros(size, np.uint8)  # dark background
    pixels[2:-2, 2:-2] = value
    Image.fromarray(pixels).save(path)


def test_image_folder_without_splits(tmp_path):
    save_picture(tmp_path / "shoe" / "1.png", 200)
    save_picture(tmp_path / "shoe" / "2.PNG", 210)
    save_picture(tmp_path / "bag" / "1.png", 100)
    (tmp_path / "bag" / "notes.txt").write_text("not an image")
    dataset = load_dataset(tmp_path)
    assert dataset.classes == ["bag", "shoe"]
    np.testing.assert_array_equal(dataset.labels, [0, 1, 1])
    assert dataset.images.shape == (3, 1, 28, 28) and dataset.images.dtype == np.uint8
    assert dataset.images[0, 0, 14, 14] == 100 and dataset.images[0, 0, 0, 0] == 0
    small = load_dataset(tmp_path, size=(8, 6), channels=3)
    assert small.images.shape == (3, 3, 8, 6)
    with pytest.raises(DataNotFound, match="no train/ and test/ subfolders"):
        load_dataset(tmp_path, "test")


def test_image_folder_with_train_and_test(tmp_path):
    for split in ("train", "test"):
        save_picture(tmp_path / split / "cat" / "a.png", 50)
        save_picture(tmp_path / split / "dog" / "a.jpg", 150)  # JPEG too
    save_picture(tmp_path / "train" / "dog" / "b.png", 160)
    train, test = load_dataset(tmp_path, "train"), load_dataset(tmp_path, "test")
    assert len(train) == 3 and len(test) == 2
    assert train.classes == test.classes == ["cat", "dog"]
    save_picture(tmp_path / "test" / "emu" / "a.png", 90)
    with pytest.raises(ValueError, match=r"class folders \['emu'\]"):
        load_dataset(tmp_path, "test")


def test_image_folder_problems_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFound, match="no class subfolders"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(DataNotFound, match="no PNG or JPEG images"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "empty" / "cls" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png is not a picture tinyconv reads"):
        load_dataset(tmp_path / "empty")



def test_missing_file_on_the_mirror_names_its_url(clean_env, mirror, monkeypatch):
    served, url = mirror
    use_checksums(monkeypatch, make_files(served))
    (served / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataNotFound) as caught:
        load_dataset("fashion-mnist", mirror=url)
    assert f"could not download {url}t10k-images-idx3-ubyte.gz: HTTP Error 404" in str(caught.value)


def test_no_download_from_the_environment(clean_env, monkeypatch):
    # The test suite's own policy (conftest.py), and an offline machine's.
    monkeypatch.setenv("TINYCONV_NO_DOWNLOAD", "1")
    with pytest.raises(DataNotFound, match="Fashion-MNIST not found"):
        load_dataset("fashion-mnist", data_dir=clean_env / "user", mirror="http://127.0.0.1:9/")
