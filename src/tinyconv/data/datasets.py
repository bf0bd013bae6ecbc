"""Datasets: Fashion-MNIST and MNIST by name, or a folder of the user's own images.

A :class:`Dataset` holds uint8 images of shape (N, C, H, W) and int64 labels
of shape (N,), with the class names the labels index.

Known datasets by name (:data:`KNOWN`) are looked for, in this order
(:func:`find_dataset_dir`):

1. the directory the user names (``data_dir``, the command line's ``--data-dir``);
2. ``$TINYCONV_DATA``;
3. the user's cache, ``$XDG_CACHE_HOME/tinyconv/<name>`` or ``~/.cache/tinyconv/<name>``;
4. for Fashion-MNIST, the Debian package ``dataset-fashion-mnist``
   (``/usr/share/datasets/fashion-mnist``).

A directory of 1 or 2 may hold the four files itself or in a subfolder
``<name>``; the files may be gzipped (``train-images-idx3-ubyte.gz``) or not
(``train-images-idx3-ubyte``). When none has them, :func:`load_dataset`
downloads them (unless ``TINYCONV_NO_DOWNLOAD=1``) from the dataset's official
mirror into the cache, checks each
file's SHA-256 before anything is written, and writes it atomically, so a
failed or corrupt download leaves nothing behind.

When the download fails too (a machine that reaches only the package
registries, say), Fashion-MNIST comes from Debian's package where that needs
no one's say: as root, or with a ``sudo`` that asks no password,
``apt-get install -y dataset-fashion-mnist`` is run (after ``apt-get
update`` if apt does not know the package yet), one line saying so first.
Otherwise nothing is installed, and the :class:`DataNotFound` error's one
line ends with the exact command that would fix it. MNIST has no Debian
package.

A directory given instead of a name is an image folder: one subfolder per
class holding PNG or JPEG files, classes sorted by name. If it has ``train/``
and ``test/`` subfolders, these are the two splits (the class names come from
``train/``); otherwise the whole folder is the training split. Each picture
is prepared by :func:`tinyconv.data.images.prepare_image`: grayscale 28x28 by
default, aspect ratio kept, inverted when its background is light.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_bytes
from .idx import read_idx
from .images import IMAGE_SUFFIXES, prepare_image, require_pillow

__all__ = ["Dataset", "DataNotFound", "KnownDataset", "KNOWN", "SPLITS", "find_dataset_dir",
           "search_dirs", "download_dataset", "load_dataset", "load_image_folder"]

SPLITS = ("train", "test")

#: The programs that install a Debian package, found on the PATH; tests
#: point them at stand-ins.
APT_GET, APT_CACHE, SUDO = "apt-get", "apt-cache", "sudo"
#: Seconds one apt-get step may take (a download of about 30 MB).
APT_TIMEOUT = 900


class DataNotFound(Exception):
    """A dataset's files are nowhere tinyconv looked; the message says where it looked."""


class Dataset:
    """Images with labels: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,).

    ``classes[k]`` is the name of label ``k``; ``name`` says where the data
    came from (``"fashion-mnist"``, or the image folder's path).
    """

    def __init__(self, images, labels, classes, name: str):
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 of shape (N, C, H, W), "
                             f"got {images.dtype} of shape {images.shape}")
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise ValueError(f"labels must be integers of shape (N,), "
                             f"got {labels.dtype} of shape {labels.shape}")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        classes = [str(c) for c in classes]
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(f"labels must lie in 0..{len(classes) - 1} for {len(classes)} "
                             f"classes, got {labels.min()}..{labels.max()}")
        self.images = images
        self.labels = labels.astype(np.int64)
        self.classes = classes
        self.name = name

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, {len(self)} images of shape "
                f"{self.images.shape[1:]}, {len(self.classes)} classes)")

    def subset(self, indices) -> Dataset:
        """The samples at ``indices`` (an integer array), as a new Dataset."""
        indices = np.asarray(indices)
        if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
            raise TypeError(f"indices must be a 1-D integer array, got "
                            f"{indices.dtype} of shape {indices.shape}")
        return Dataset(self.images[indices], self.labels[indices], self.classes, self.name)


@dataclass(frozen=True)
class KnownDataset:
    """Where a dataset comes from and what it holds.

    ``files`` maps a split to the file names of its images and labels;
    ``sha256`` maps each file name to the SHA-256 of the gzipped file as the
    mirror serves it.
    """

    name: str
    title: str
    classes: tuple[str, ...]
    files: dict
    sha256: dict
    mirror: str
    debian_package: str | None = None
    debian_dir: str | None = None

    @property
    def file_names(self) -> list[str]:
        """The four .gz file names, training files first."""
        return [name for split in SPLITS for name in self.files[split]]


# Fashion-MNIST was made as a drop-in replacement for MNIST: same file names.
_IDX_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
              "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}

# Checksums of the .gz files as the official mirrors serve them, cross-checked
# in several independent public projects; the Fashion-MNIST README publishes
# MD5s of the same four files (8d4fb7e6…, 25c81989…, bef4ecab…, bb300cfd…) and
# torchvision lists MNIST's (f68b3c2d…, d53e105e…, 9fb629c4…, ec29112d…).
# The Debian package recompressed its copies (same IDX content, different gzip
# header), so its .gz files have other checksums: files found on disk are
# checked by the IDX reader and the expected shapes, downloads by SHA-256.
KNOWN = {
    "fashion-mnist": KnownDataset(
        name="fashion-mnist",
        title="Fashion-MNIST",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        files=_IDX_FILES,
        sha256={
            "train-images-idx3-ubyte.gz":
                "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
            "train-labels-idx1-ubyte.gz":
                "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
            "t10k-images-idx3-ubyte.gz":
                "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
            "t10k-labels-idx1-ubyte.gz":
                "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
        },
        mirror="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        debian_package="dataset-fashion-mnist",
        debian_dir="/usr/share/datasets/fashion-mnist",
    ),
    "mnist": KnownDataset(
        name="mnist",
        title="MNIST",
        classes=tuple(str(digit) for digit in range(10)),
        files=_IDX_FILES,
        sha256={
            "train-images-idx3-ubyte.gz":
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz":
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz":
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz":
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        mirror="https://ossci-datasets.s3.amazonaws.com/mnist/",
    ),
}


def _known(name: str) -> KnownDataset:
    if name not in KNOWN:
        raise ValueError(f"unknown dataset {name!r}: expected one of {sorted(KNOWN)} "
                         "or the path of an image folder")
    return KNOWN[name]


def cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/tinyconv/<name>``, or ``~/.cache/tinyconv/<name>``."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "tinyconv" / name


def search_dirs(name: str, data_dir=None) -> list[tuple[Path, str]]:
    """The directories searched for dataset ``name``, in order, each with where it came from."""
    known = _known(name)
    places = []
    for root, origin in ((data_dir, "--data-dir"), (os.environ.get("TINYCONV_DATA"),
                                                    "$TINYCONV_DATA")):
        if root:
            places += [(Path(root), origin), (Path(root) / name, origin)]
    places.append((cache_dir(name), "cache"))
    if known.debian_dir:
        places.append((Path(known.debian_dir), f"Debian package {known.debian_package}"))
    return places


def _file_in(directory: Path, gz_name: str) -> Path | None:
    """``directory/gz_name``, or the same file unpacked (without ``.gz``), if either exists."""
    for candidate in (directory / gz_name, directory / gz_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _missing(directory: Path, known: KnownDataset) -> list[str]:
    return [f for f in known.file_names if _file_in(directory, f) is None]


def find_dataset_dir(name: str, data_dir=None) -> Path:
    """The first directory of :func:`search_dirs` holding all four files of ``name``.

    Raises :class:`DataNotFound`, naming every place and what it lacked, if none does.
    """
    known = _known(name)
    for directory, _ in search_dirs(name, data_dir):
        if directory.is_dir() and not _missing(directory, known):
            return directory
    raise DataNotFound(_not_found_message(known, data_dir))


def _not_found_message(known: KnownDataset, data_dir, reason: str | None = None,
                       command: str | None = None) -> str:
    """One line: where tinyconv looked, ``reason`` it went no further, and how to get
    the files, ``command`` first."""
    places = []
    for directory, origin in search_dirs(known.name, data_dir):
        if not directory.is_dir():
            state = "no such directory"
        elif len(_missing(directory, known)) == len(known.file_names):
            state = "none of the files"
        else:
            state = "missing " + ", ".join(_missing(directory, known))
        places.append(f"{directory} ({origin}): {state}")
    if os.environ.get("TINYCONV_DATA") is None:
        places.append("$TINYCONV_DATA is not set")
    text = f"{known.title} not found (looked in {'; '.join(places)})"
    if reason:
        text += f" and {reason}"
    if command:
        text += f"; to install it, run: {command}; or"
    else:
        if known.debian_package is None:
            text += f"; {known.title} has no Debian package"
        text += "; to get it,"
    return (text + f" download {', '.join(known.file_names)} from {known.mirror} into "
            f"{cache_dir(known.name)}, or into any folder given with --data-dir DIR "
            f"(or TINYCONV_DATA=DIR)")


def _install_steps(package: str) -> list[list[str]] | None:
    """The apt-get commands that install ``package``, None on a system without apt-get.

    ``apt-get update`` comes first when apt does not know the package yet
    (a fresh machine has empty package lists).
    """
    if shutil.which(APT_GET) is None:
        return None
    return ([] if _succeeds([APT_CACHE, "show", package]) else [["update"]]) + [
        ["install", "-y", package]]


def _succeeds(command: list[str]) -> bool:
    """Whether ``command`` runs and exits 0 (quietly, asking nothing, within a minute)."""
    program = shutil.which(command[0])
    try:
        return program is not None and subprocess.run(
            [program, *command[1:]], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _as_root_without_asking() -> list[str] | None:
    """The prefix that runs a command as root with no question: [] for root, sudo -n
    where sudo needs no password, None where neither works."""
    if os.geteuid() == 0:
        return []
    if _succeeds([SUDO, "-n", "true"]):
        return [shutil.which(SUDO), "-n"]
    return None


def _shown(steps: list[list[str]], prefix: str) -> str:
    return " && ".join(prefix + " ".join(["apt-get", *step]) for step in steps)


def _install_from_debian(known: KnownDataset, data_dir, reason: str, log) -> Path:
    """Install ``known``'s Debian package where no one need be asked, and find the files.

    Raises :class:`DataNotFound`, with the command that would fix it and
    before installing anything, where that cannot be done.
    """
    steps = _install_steps(known.debian_package) if known.debian_package else None
    if steps is None:
        if known.debian_package:
            reason += f"; Debian's package {known.debian_package} has the files, but this " \
                      "system has no apt-get"
        raise DataNotFound(_not_found_message(known, data_dir, reason))
    prefix = _as_root_without_asking()
    if prefix is None:
        raise DataNotFound(_not_found_message(known, data_dir, reason, _shown(steps, "sudo ")))
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    say(f"{known.title} not found and {reason}: installing Debian's package "
        f"{known.debian_package}: {_shown(steps, 'sudo -n ' if prefix else '')}")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in steps:
        command = [*prefix, shutil.which(APT_GET), *step]
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, errors="replace", env=environment,
                                  timeout=APT_TIMEOUT)
            failure = None if done.returncode == 0 else (
                f"exit status {done.returncode}: "
                f"{(done.stderr.strip() or done.stdout.strip() or '(no output)').splitlines()[-1]}")
        except (OSError, subprocess.TimeoutExpired) as error:
            failure = str(error)
        if failure:
            raise DataNotFound(_not_found_message(
                known, data_dir, f"{reason}; '{_shown([step], '')}' failed with {failure}"))
    try:
        return find_dataset_dir(known.name, data_dir)
    except DataNotFound:
        raise DataNotFound(_not_found_message(
            known, data_dir, f"{reason}; {known.debian_package} was installed but did not put "
            f"the files in {known.debian_dir}")) from None


def download_dataset(name: str, directory=None, mirror: str | None = None,
                     timeout: float = 60.0, log=None) -> Path:
    """Download the files of dataset ``name`` missing from ``directory`` (default: the cache).

    Each file is fetched from ``mirror`` (default: the dataset's official
    mirror) into memory, its SHA-256 compared with :data:`KNOWN`, and only
    then written, atomically; ``log``, if given, is called with a line per
    file. Returns the directory. Raises ``OSError`` naming the URL when a
    download fails and ``ValueError`` when a file's checksum is wrong; the
    files already verified stay, nothing else is written.
    """
    known = _known(name)
    directory = Path(directory) if directory is not None else cache_dir(name)
    mirror = mirror or known.mirror
    for file_name in _missing(directory, known):
        url = mirror.rstrip("/") + "/" + file_name
        if log:
            log(f"downloading {url}")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read()
        except (OSError, http.client.HTTPException) as error:
            if isinstance(error, urllib.error.HTTPError):
                error.close()  # it holds the server's error page open
            raise OSError(f"could not download {url}: {error}") from error
        digest = hashlib.sha256(data).hexdigest()
        if digest != known.sha256[file_name]:
            raise ValueError(f"checksum mismatch for {url}: SHA-256 {digest}, expected "
                             f"{known.sha256[file_name]}; the file was not kept")
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(directory / file_name, data)
    return directory


def load_dataset(name_or_dir, split: str = "train", data_dir=None, download: bool = True,
                 *, mirror: str | None = None, size=(28, 28), channels: int = 1,
                 log=None) -> Dataset:
    """The ``split`` (``"train"`` or ``"test"``) of a known dataset or an image folder.

    ``name_or_dir`` is a name in :data:`KNOWN` or the path of an image folder
    (see the module docstring); a name wins, so a folder called ``mnist`` is
    given as ``"./mnist"``. For a known dataset, ``data_dir`` is the first
    place looked in, and ``download`` allows fetching the files into the cache
    (from ``mirror``, default the official one) when found nowhere; images
    come as (N, 1, 28, 28). ``size`` and ``channels`` set the shape an image
    folder's pictures are prepared to.

    When the files are nowhere and cannot be downloaded, a known dataset
    that Debian packages is installed from there where no one need be asked
    (see the module docstring); ``log``, if given, is called with the line
    that says so (default: it goes to stderr).

    Raises :class:`DataNotFound` when the files are nowhere and cannot be
    downloaded or installed, saying in one line where it looked and how to
    get them.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if str(name_or_dir) in KNOWN:
        return _load_known(KNOWN[str(name_or_dir)], split, data_dir, download, mirror, log)
    path = Path(name_or_dir)
    if path.is_dir():
        return load_image_folder(path, split, size=size, channels=channels)
    raise ValueError(f"unknown dataset {str(name_or_dir)!r}: expected one of {sorted(KNOWN)} "
                     "or the path of an existing image folder")


def downloads_allowed(download: bool = True) -> bool:
    """Whether a missing dataset may be downloaded: ``download``, unless the
    environment says ``TINYCONV_NO_DOWNLOAD=1`` (machines that must stay
    offline, and the test suite)."""
    return download and os.environ.get("TINYCONV_NO_DOWNLOAD", "") not in ("1", "true")


def _load_known(known: KnownDataset, split, data_dir, download, mirror, log) -> Dataset:
    try:
        directory = find_dataset_dir(known.name, data_dir)
    except DataNotFound:
        if not downloads_allowed(download):
            steps = _install_steps(known.debian_package) if known.debian_package else None
            command = _shown(steps, "" if os.geteuid() == 0 else "sudo ") if steps else None
            raise DataNotFound(_not_found_message(known, data_dir, "downloading is off",
                                                  command)) from None
        try:
            directory = download_dataset(known.name, mirror=mirror, log=log)
        except (OSError, ValueError) as error:
            reason = f"the download failed ({' '.join(str(error).split())})"
            directory = _install_from_debian(known, data_dir, reason, log)
    image_file, label_file = (_file_in(directory, f) for f in known.files[split])
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{image_file}: expected uint8 images of shape (N, H, W), "
                         f"got {images.dtype} of shape {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8 or len(labels) != len(images):
        raise ValueError(f"{label_file}: expected {len(images)} uint8 labels, "
                         f"got {labels.dtype} of shape {labels.shape}")
    if labels.max(initial=0) >= len(known.classes):
        raise ValueError(f"{label_file}: labels must lie in 0..{len(known.classes) - 1}, "
                         f"found {labels.max()}")
    return Dataset(images[:, None], labels, known.classes, known.name)


def load_image_folder(root, split: str = "train", *, size=(28, 28), channels: int = 1) -> Dataset:
    """An image folder as a Dataset (layout in the module docstring).

    Images are uint8 (N, channels, H, W) with (H, W) = ``size``, prepared by
    :func:`tinyconv.data.images.prepare_image`; labels follow the sorted class names.
    """
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    if not has_splits and split == "test":
        raise DataNotFound(f"{root} has no train/ and test/ subfolders, so it is a training "
                           "set only; give a folder with train/ and test/ subfolders (one "
                           "subfolder per class in each) to have a test split")
    class_root = root / "train" if has_splits else root
    classes = sorted(p.name for p in class_root.iterdir()
                     if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataNotFound(f"{class_root} has no class subfolders: expected one subfolder "
                           "per class, each holding PNG or JPEG images")
    folder = root / split if has_splits else root
    unknown = sorted(p.name for p in folder.iterdir() if p.is_dir()
                     and not p.name.startswith(".") and p.name not in classes)
    if unknown:
        raise ValueError(f"{folder} has class folders {unknown} that {class_root} lacks; "
                         f"the classes are {classes}")
    images, labels = [], []
    for label, name in enumerate(classes):
        class_dir = folder / name
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                       and not p.name.startswith(".")) if class_dir.is_dir() else []
        for file in files:
            images.append(prepare_image(file, size, channels)[0])
            labels.append(label)
    if not images:
        raise DataNotFound(f"no PNG or JPEG images in the class folders of {folder}")
    return Dataset(np.stack(images), np.array(labels, np.int64), classes, str(root))


#: Pillow modes without colour: such pictures make one-channel inputs.
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def image_folder_channels(root) -> int:
    """3 when any picture of an image folder's training images is in colour, else 1.

    Reads only each file's header (its mode), not its pixels; a file Pillow
    cannot open is left for :func:`load_image_folder` to report.
    """
    Image = require_pillow()
    root = Path(root)
    train = root / "train" if (root / "train").is_dir() and (root / "test").is_dir() else root
    for file in sorted(train.glob("*/*")):
        if file.suffix.lower() not in IMAGE_SUFFIXES or file.name.startswith("."):
            continue
        try:
            with Image.open(file) as picture:
                if picture.mode not in _GRAY_MODES:
                    return 3
        except (OSError, ValueError, SyntaxError):
            continue
    return 1
