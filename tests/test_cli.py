"""The ``tinyconv`` command line, run as a user runs it: ``python -m tinyconv ...``.

Each command's success path runs on a few thousand real Fashion-MNIST
images (the Debian package ``dataset-fashion-mnist``, which ``.ci/run``
installs); each bad input must end with exit status 2 and one line
``tinyconv: error: ...`` on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tinyconv.data.datasets import DataNotFound, load_dataset
from tinyconv.models.serialize import load_model

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]

# One short epoch of LeNet-5 on 3,000 images: enough to beat chance (10%) by far.
QUICK_TRAIN = ["--arch", "lenet5", "--limit-train", "3000", "--limit-test", "1000",
               "--epochs", "1", "--batch-size", "32", "--lr", "0.003"]


def _env(tmp: Path, **extra) -> dict:
    env = dict(os.environ)
    # Nothing a test does may read or fill the user's real cache.
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    env.pop("TINYCONV_DATA", None)
    # Several BLAS threads fighting over a busy, shared CPU run these small
    # matrix products many times slower than one thread does.
    env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def tinyconv(*args, cwd: Path, env=None) -> subprocess.CompletedProcess:
    """Run ``python -m tinyconv *args`` and capture what it prints."""
    return subprocess.run([sys.executable, "-m", "tinyconv", *map(str, args)], cwd=cwd,
                          env=env or _env(cwd), capture_output=True, text=True, timeout=300)


def assert_bad_input(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2, one error line on stderr naming each fragment, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tinyconv: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def fashion_mnist():
    """Fashion-MNIST's test split, found where tinyconv looks (never downloaded)."""
    try:
        return load_dataset("fashion-mnist", "test", download=False)
    except DataNotFound as error:
        pytest.fail(f"the CLI tests need Fashion-MNIST on disk: {error}")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fashion_mnist):
    """One quick training run shared by the tests: (work dir, model file, its stdout)."""
    work = tmp_path_factory.mktemp("cli")
    result = tinyconv("train", *QUICK_TRAIN, "--out", "run", cwd=work)
    assert result.returncode == 0, result.stderr
    return work, work / "run" / "model.npz", result.stdout


def _save_png(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(pixels).save(path)
    return path


# ----------------------------------------------------------------- success paths

def test_train_beats_chance_and_saves_model_and_history(trained):
    work, model, stdout = trained
    accuracy = float(re.search(r"test accuracy ([\d.]+)%", stdout).group(1)) / 100
    assert accuracy > 0.7, stdout
    assert f"model saved to {Path('run') / 'model.npz'}" in stdout
    for name in ("model.npz", "checkpoint.npz", "history.csv", "history.json"):
        assert (work / "run" / name).is_file(), name
    history = json.loads((work / "run" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1]


def test_python_train_is_the_command_line_train(trained):
    """tinyconv.train with the options' values trains the very model the command does."""
    work, model, _ = trained
    script = ("import tinyconv; tinyconv.train('lenet5', limit_train=3000, limit_test=1000, "
              "epochs=1, batch_size=32, lr=0.003, out='from-python', progress=False)")
    done = subprocess.run([sys.executable, "-c", script], cwd=work, env=_env(work),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ours, theirs = (np.load(path, allow_pickle=False) for path in
                    (model, work / "from-python" / "model.npz"))
    state = [key for key in ours.files if key.startswith(("param/", "buffer/"))]
    assert state and sorted(state) == sorted(k for k in theirs.files
                                             if k.startswith(("param/", "buffer/")))
    for key in state + ["normalization/mean", "normalization/std", "classes", "spec"]:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_evaluate_json_agrees_with_its_confusion_matrix(trained):
    work, model, _ = trained
    result = tinyconv("evaluate", model, "--limit-test", "1000", "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == 1000
    assert report["classes"] == FASHION_CLASSES
    confusion = np.array(report["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 1000
    assert report["accuracy"] == pytest.approx(np.trace(confusion) / 1000)
    assert report["accuracy"] > 0.7 and 0 < report["loss"] < 2.3


def test_evaluate_prints_accuracy_and_a_confusion_table_with_class_names(trained,
                                                                         fashion_mnist):
    work, model, _ = trained
    result = tinyconv("evaluate", model, "--limit-test", "200", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "on 200 test images of fashion-mnist: accuracy" in result.stdout
    rows = [line for line in result.stdout.splitlines() if re.match(r"\d \S", line)]
    assert [row.split("  ")[0].strip() for row in rows] == [
        f"{k} {name}" for k, name in enumerate(FASHION_CLASSES)]
    # Each row counts the images of its true class.
    counts = [sum(int(n) for n in row.split()[-11:-1]) for row in rows]
    assert counts == np.bincount(fashion_mnist.labels[:200], minlength=10).tolist()


def test_predict_names_the_class_of_a_test_image_and_undoes_a_light_background(
        trained, fashion_mnist):
    work, model, _ = trained
    image = fashion_mnist.images[0, 0]
    _save_png(work / "dark.png", image)
    _save_png(work / "light.png", 255 - image)
    result = tinyconv("predict", model, "dark.png", "light.png", "--top", "2", cwd=work)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(Path("dark.png"))
    assert lines[3] == f"{Path('light.png')} (light background: inverted)"
    answers = [lines[1:3], lines[4:6]]
    # Inverting the light copy gives back the very same pixels: the same answer.
    assert answers[0] == answers[1]
    shares = [float(line.split("%")[0]) for line in answers[0]]
    assert shares[0] >= shares[1] and 0 < sum(shares) <= 100.01
    # The test set's first image is an ankle boot.
    assert answers[0][0].endswith(FASHION_CLASSES[fashion_mnist.labels[0]])


def test_summary_of_a_preset_a_spec_and_a_model_file(trained):
    work, model, _ = trained
    preset = tinyconv("summary", "lenet5", cwd=work)
    assert preset.returncode == 0, preset.stderr
    assert "Total params: 61,706" in preset.stdout
    spec = tinyconv("summary", "INPUT(1,28,28) -> CONV(4,3) -> MAXPOOL(2) -> FC(10)", cwd=work)
    assert spec.returncode == 0, spec.stderr
    # (3·3·1 + 1)·4 conv weights, then 4·13·13 inputs to 10 outputs, plus biases.
    assert f"Total params: {40 + 4 * 13 * 13 * 10 + 10:,}" in spec.stdout
    from_file = tinyconv("summary", model, cwd=work)
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout == preset.stdout


FOLDER_SPEC = "INPUT(1,16,16) -> CONV(4,3) -> MAXPOOL(2) -> FC(2)"


def _class_folders(root: Path, count: int, rng) -> None:
    """``count`` 30x20 PNGs in each of root/dark and root/light."""
    for name, level in (("dark", 40), ("light", 200)):
        folder = root / name
        folder.mkdir(parents=True)
        for k in range(count):
            pixels = np.full((20, 30), level, np.uint8)
            pixels[5:15, 10:20] = rng.integers(0, 256, (10, 10))
            _save_png(folder / f"{k}.png", pixels)


def test_train_on_an_image_folder(tmp_path):
    """A folder with train/ and test/, one subfolder per class, is a dataset too."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        _class_folders(tmp_path / "pictures" / split, count, rng)
    result = tinyconv("train", "--data", "pictures", "--arch", FOLDER_SPEC, "--epochs", "2",
                      "--batch-size", "8", "--val-fraction", "0", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "on 8 test images" in result.stdout
    predicted = tinyconv("predict", "run/model.npz", "pictures/test/dark/0.png",
                         "--top", "5", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    # --top larger than the number of classes shows every class once.
    assert len(predicted.stdout.splitlines()) == 3


def test_a_plain_class_folder_holds_out_a_test_set_that_evaluate_finds_again(tmp_path):
    """Without test/, a sixth of the images, drawn with the seed, is the test set;
    evaluate holds out the same images: the same count, accuracy and loss."""
    _class_folders(tmp_path / "pictures", 12, np.random.default_rng(0))
    result = tinyconv("train", "--data", "pictures", "--arch", FOLDER_SPEC, "--epochs", "2",
                      "--batch-size", "8", "--val-fraction", "0", "--seed", "5",
                      "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no test/ folder: holding out 4 of the 24 images as the test set" in result.stdout
    assert "20 training and 0 validation images" in result.stdout
    evaluated = tinyconv("evaluate", "run/model.npz", "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    with np.load(tmp_path / "run" / "model.npz", allow_pickle=False) as archive:
        metadata = json.loads(str(archive["metadata"]))
    assert metadata["test_holdout"] == {"seed": 5, "fraction": 1 / 6}
    assert report["n"] == metadata["test_images"] == 4
    assert report["accuracy"] == metadata["test_accuracy"]
    assert report["loss"] == pytest.approx(metadata["test_loss"], rel=1e-6)


def test_the_same_seed_trains_the_same_weights(tmp_path, fashion_mnist):
    args = ["train", "--arch", "INPUT(1,28,28) -> CONV(4,5) -> MAXPOOL(4) -> FC(10)",
            "--limit-train", "500", "--limit-test", "100", "--epochs", "2", "--augment"]
    weights = []
    for seed, out in (("7", "a"), ("7", "b"), ("8", "c")):
        result = tinyconv(*args, "--seed", seed, "--out", out, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        with np.load(tmp_path / out / "model.npz", allow_pickle=False) as archive:
            weights.append({k: archive[k] for k in archive.files if k.startswith("param/")})
    assert weights[0].keys() == weights[1].keys() and weights[0]
    assert all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(np.array_equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_a_model_trained_with_flips_is_also_scored_on_flipped_images(tmp_path, fashion_mnist):
    result = tinyconv("train", "--arch", "INPUT(1,28,28) -> CONV(4,5) -> MAXPOOL(4) -> FC(10)",
                      "--limit-train", "500", "--limit-test", "200", "--epochs", "1",
                      "--augment", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = re.search(r"test accuracy ([\d.]+)% .* averaging each test image with its "
                     r"left-right flip \(evaluate --flip-average\)", result.stdout)
    assert line, result.stdout
    with np.load(tmp_path / "run" / "model.npz", allow_pickle=False) as archive:
        metadata = json.loads(str(archive["metadata"]))
    reports = {}
    for flag in ([], ["--flip-average"]):
        evaluated = tinyconv("evaluate", Path("run") / "model.npz", "--limit-test", "200",
                             "--json", *flag, cwd=tmp_path)
        assert evaluated.returncode == 0, evaluated.stderr
        reports[bool(flag)] = json.loads(evaluated.stdout)
    assert [reports[m]["flip_average"] for m in (False, True)] == [False, True]
    assert reports[False]["accuracy"] == metadata["test_accuracy"]
    assert reports[True]["accuracy"] == metadata["test_accuracy_flip_average"]
    assert float(line.group(1)) == pytest.approx(100 * metadata["test_accuracy_flip_average"],
                                                 abs=0.005)

    _save_png(tmp_path / "boot.png", fashion_mnist.images[0, 0])
    predicted = tinyconv("predict", Path("run") / "model.npz", "boot.png", "--flip-average",
                         "--top", "10", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    shares = [float(line.split("%")[0]) for line in predicted.stdout.splitlines()[1:]]
    assert len(shares) == 10 and sum(shares) == pytest.approx(100, abs=0.1)


def test_interrupt_keeps_the_checkpoint_and_resume_finishes(tmp_path, fashion_mnist):
    args = ["train", "--arch", "INPUT(1,28,28) -> CONV(4,5) -> MAXPOOL(4) -> FC(10)",
            "--limit-train", "300", "--limit-test", "100", "--epochs", "400", "--out", "run"]
    # A shell's background job starts with SIGINT ignored, and Python keeps it
    # so; the child gets the default back, as in a terminal.
    process = subprocess.Popen([sys.executable, "-m", "tinyconv", *args], cwd=tmp_path,
                               env=_env(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoint = tmp_path / "run" / "checkpoint.npz"
    while not checkpoint.exists() and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted; the last checkpoint is kept in" in stderr.splitlines()[-1]
    resumed = tinyconv(*[a if a != "400" else "2" for a in args], "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout


def test_divergence_exits_1_with_one_line(tmp_path, fashion_mnist):
    result = tinyconv("train", "--arch", "lenet5", "--optimizer", "sgd", "--lr", "1e30",
                      "--limit-train", "256", "--limit-test", "10", "--epochs", "1",
                      "--out", "run", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tinyconv: error: ") and "training diverged" in lines[0]


# -------------------------------------------------------------------- bad input

@pytest.mark.parametrize("args, fragments", [
    ([], ["the following arguments are required: COMMAND"]),
    (["fly"], ["invalid choice: 'fly'"]),
    (["train", "--epochs", "-1"], ["--epochs", "at least 1, got -1"]),
    (["train", "--epochs", "two"], ["--epochs", "whole number, got 'two'"]),
    (["train", "--lr", "0"], ["--lr", "got 0"]),
    (["train", "--lr", "nan"], ["--lr", "got nan"]),
    (["train", "--val-fraction", "1"], ["--val-fraction"]),
    (["train", "--arch", "strong", "--patience", "2"],
     ["--patience needs validation images", "the strong preset trains on every image"]),
    (["train", "--val-fraction", "0", "--patience", "2"],
     ["--patience needs validation images, but --val-fraction is 0; give"]),
    (["train", "--seed", "-3"], ["--seed"]),
    (["train", "--optimizer", "rmsprop"], ["--optimizer", "invalid choice"]),
    (["train", "--arch", "resnet"], ["unknown preset 'resnet'", "lenet5"]),
    (["train", "--arch", "INPUT(1,28,28) -> CONV(8,3 -> FC(10)"],
     ["column 28", "CONV(8,3 <here>-> FC(10)"]),
    (["summary", "INPUT(1,28,28) -> CONV(8,3) -> FC(10"], ["column 37", "<here>"]),
    (["summary", "INPUT(1,28,28) -> CONV(8,40) -> FC(10)"], ["does not fit"]),
    (["summary", "nonesuch"], ["unknown preset 'nonesuch'"]),
    (["summary", "missing.npz"], ["missing.npz"]),
    (["summary", "."], [". is a directory, not a model file (.npz), a preset or a spec"]),
    (["summary", "INPUT(1,99999,99999) -> FC(10)"], ["at most 100,000,000", "<here>INPUT"]),
    (["summary", "INPUT(1,28,28) -> [FC(10)]*99999999"],
     ["repeat count 99999999 is too large: a model may have at most 1000 layers"]),
    # Longer than a file name may be: still read as a spec.
    (["summary", "INPUT(1,28,28) -> " + " -> ".join(["FC(10)"] * 40) + " -> FC(10"],
     ["expected ',' or ')'"]),
    (["predict", "model.npz"], ["IMAGE"]),
    (["train", "--data", "no-such-folder"], ["no-such-folder"]),
])
def test_bad_usage_exits_2_with_one_line(tmp_path, args, fragments):
    assert_bad_input(tinyconv(*args, cwd=tmp_path), *fragments)


@pytest.mark.skipif(sys.platform != "linux", reason="limits the address space with RLIMIT_AS")
def test_not_enough_memory_is_one_line(tmp_path):
    """A model within the spec's bounds that this process is not allowed the
    memory for: its input alone is 324 MB, and the summary's forward pass
    needs several times that, under a limit of 1 GiB."""
    import resource

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    spec = "INPUT(1,9000,9000) -> CONV(1,3) -> MAXPOOL(8998) -> FC(10)"
    result = subprocess.run([sys.executable, "-m", "tinyconv", "summary", spec], cwd=tmp_path,
                            env=_env(tmp_path), capture_output=True, text=True, timeout=300,
                            preexec_fn=limit_memory)
    assert_bad_input(result, "not enough memory to allocate")


def test_missing_dataset_says_where_it_looked(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = _env(tmp_path, TINYCONV_DATA=str(empty))
    result = tinyconv("train", "--data", "mnist", "--data-dir", empty, "--no-download",
                      cwd=tmp_path, env=env)
    line = assert_bad_input(result, "MNIST not found", str(empty), "$TINYCONV_DATA")
    assert "download" in line


def test_failed_download_leaves_nothing_and_says_so(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mirror = f"http://127.0.0.1:{port}/"
    result = tinyconv("train", "--data", "mnist", "--data-dir", tmp_path / "empty",
                      "--mirror", mirror, cwd=tmp_path,
                      env=_env(tmp_path, TINYCONV_NO_DOWNLOAD="0"))
    assert_bad_input(result, "MNIST not found", "failed", mirror)
    cache = tmp_path / "cache" / "tinyconv" / "mnist"
    assert not cache.exists() or not any(cache.iterdir())


def test_bad_model_files(trained, tmp_path):
    _, model, _ = trained
    text = tmp_path / "notes.npz"
    text.write_text("not a model\n")
    assert_bad_input(tinyconv("evaluate", text, cwd=tmp_path), "notes.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    assert_bad_input(tinyconv("predict", truncated, "x.png", cwd=tmp_path), "truncated.npz")
    assert_bad_input(tinyconv("summary", truncated, cwd=tmp_path), "truncated.npz")
    assert_bad_input(tinyconv("evaluate", tmp_path / "absent.npz", cwd=tmp_path), "absent.npz")


def test_bad_images(trained, tmp_path):
    _, model, _ = trained
    fake = tmp_path / "fake.png"
    fake.write_text("a text file wearing a .png name\n")
    assert_bad_input(tinyconv("predict", model, fake, cwd=tmp_path), "fake.png",
                     "is not a picture tinyconv reads")
    result = tinyconv("predict", model, tmp_path / "absent.png", cwd=tmp_path)
    assert_bad_input(result, "absent.png")
    assert result.stdout == ""
    assert_bad_input(tinyconv("predict", model, fake, "--top", "0", cwd=tmp_path), "--top")


def test_resume_without_checkpoint(tmp_path, fashion_mnist):
    result = tinyconv("train", *QUICK_TRAIN, "--out", "nothing-here", "--resume", cwd=tmp_path)
    assert_bad_input(result, "no checkpoint")


def test_help_says_how_pictures_are_prepared(tmp_path):
    result = tinyconv("predict", "--help", cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for fragment in ("grayscale", "28x28", "aspect ratio kept", "inverted", "background is light"):
        assert fragment in text
    train_help = " ".join(tinyconv("train", "--help", cwd=tmp_path).stdout.split())
    assert "--limit-train N" in train_help and "for quick trials" in train_help


def _colour_folders(root: Path, classes: int, count: int, rng) -> None:
    """``count`` 24x24 RGB PNGs in each of ``classes`` class folders."""
    from PIL import Image

    for k in range(classes):
        folder = root / f"class{k}"
        folder.mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 60, (24, 24, 3), dtype=np.uint8)
            pixels[4:20, 4:20, k % 3] = 220
            Image.fromarray(pixels, "RGB").save(folder / f"{i}.png")


@pytest.mark.parametrize("arch", ["default", "lenet5"])
def test_a_preset_fits_itself_to_a_folder_of_three_colour_classes(tmp_path, arch):
    """The last layer gets one unit per class, the input the pictures' channels
    and --image-size; predict prepares pictures to what the model file records."""
    _colour_folders(tmp_path / "pictures", 3, 8, np.random.default_rng(1))
    result = tinyconv("train", "--data", "pictures", "--arch", arch, "--epochs", "1",
                      "--batch-size", "8", "--image-size", "20", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = load_model(tmp_path / "run" / "model.npz")
    assert loaded.classes == ["class0", "class1", "class2"]
    assert loaded.spec.startswith("INPUT(3,20,20) -> ") and loaded.spec.endswith("FC(3)")
    predicted = tinyconv("predict", "run/model.npz", "pictures/class2/0.png", "--top", "3",
                         cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert len(predicted.stdout.splitlines()) == 4


def test_a_spec_that_does_not_fit_the_data_is_refused_before_training(tmp_path):
    _colour_folders(tmp_path / "pictures", 3, 4, np.random.default_rng(2))
    result = tinyconv("train", "--data", "pictures", "--arch",
                      "INPUT(3,20,20) -> CONV(4,3) -> FC(10)", "--out", "run", cwd=tmp_path)
    line = assert_bad_input(result, "has 3 classes", "outputs 10 scores", "FC(3)")
    assert "epoch" not in result.stdout, line
    assert not (tmp_path / "run").exists()


def test_image_size_is_refused_where_it_cannot_apply(tmp_path):
    result = tinyconv("train", "--image-size", "32", "--no-download", cwd=tmp_path)
    assert_bad_input(result, "fashion-mnist's images are 28x28", "--image-size")


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`tinyconv summary lenet5 | head -0`: the reader is gone before anything is written."""
    process = subprocess.Popen([sys.executable, "-m", "tinyconv", "summary", "lenet5"],
                               cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 141
    assert stderr == ""
