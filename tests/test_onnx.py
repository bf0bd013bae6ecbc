"""ONNX in and out (issue 14), checked against runtimes that are not tinyconv.

- Exported models run under onnxruntime and under onnx's own reference
  evaluator (plain NumPy, written from the operator specifications), and
  both must give tinyconv's outputs to float32's precision.
- Models built in PyTorch and exported by ``torch.onnx.export`` are imported,
  and the imported tinyconv model must give PyTorch's outputs.
- Bad input goes through the command line as a user types it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import require_fashion_mnist, running_in_ci
from test_cli import _env, assert_bad_input, tinyconv

try:
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator
except ImportError as error:
    if running_in_ci():
        raise
    pytest.skip(f"the ONNX tests need onnx and onnxruntime ({error}); "
                f"pip install -e '.[test]'", allow_module_level=True)

from tinyconv import export_onnx, import_onnx
from tinyconv.data.datasets import load_dataset
from tinyconv.data.loader import Normalization
from tinyconv.interop.onnx_export import to_onnx
from tinyconv.interop.onnx_format import INPUT_NAME, IR_VERSION, OPSET, OUTPUT_NAME
from tinyconv.models.presets import PRESETS
from tinyconv.models.serialize import load_model, save_model
from tinyconv.models.spec import SpecError, build, input_shape
from tinyconv.nn.layers import (AvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d,
                                ReLU, Sequential, Sigmoid, Tanh)

ROOT = Path(__file__).resolve().parents[1]
#: float32's precision, relative to the size of the logits.
RTOL = 1e-5


def close_to_logits(got, want) -> float:
    """Assert ``got`` equals the logits ``want`` to RTOL of their scale; return the
    largest difference relative to that scale."""
    scale = float(np.abs(want).max())
    error = float(np.abs(np.asarray(got, np.float64) - want).max()) / max(scale, 1e-30)
    assert got.shape == want.shape and error <= RTOL, (error, scale)
    return error


def runtime_outputs(proto, x: np.ndarray, reference: bool = True):
    """The model's logits for ``x`` under onnxruntime and under the reference
    evaluator (None when ``reference`` is false)."""
    session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    (by_runtime,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
    if not reference:
        return by_runtime, None
    (by_reference,) = ReferenceEvaluator(proto).run([OUTPUT_NAME], {INPUT_NAME: x})
    return by_runtime, by_reference


def randomize_batch_norms(model, rng) -> None:
    """Give every batch normalisation statistics and a scale that are not the identity."""
    for layer in model.layers:
        if isinstance(layer, BatchNorm2d):
            size = layer.num_features
            layer.running_mean[...] = rng.normal(size=size)
            layer.running_var[...] = rng.uniform(0.3, 3.0, size=size)
            layer.weight.data[...] = rng.normal(size=size)
            layer.bias.data[...] = rng.normal(size=size)


def check_export(model, shape, rng, batch: int = 6) -> float:
    """Export ``model`` (in memory) and compare both runtimes with its forward pass."""
    proto = to_onnx(model, shape)
    onnx.checker.check_model(proto, full_check=True)
    x = rng.normal(size=(batch, *shape)).astype(np.float32)
    with model.evaluating():
        want = model.forward(x)
    by_runtime, by_reference = runtime_outputs(proto, x, reference=not _uneven_max_pool(model))
    errors = [close_to_logits(by_runtime, want)]
    if by_reference is not None:
        errors.append(close_to_logits(by_reference, want))
    return max(errors)


def _uneven_max_pool(model) -> bool:
    """Whether a MaxPool2d pads height and width differently.

    onnx's reference evaluator (1.23, ``CommonPool._run`` in
    ``onnx/reference/ops/_op_common_pool.py``) reads MaxPool's four pads as
    [top, bottom, left, right] where ONNX lists [top, left, bottom, right],
    so it pads such a model wrongly; onnxruntime then checks it alone.
    """
    return any(isinstance(layer, MaxPool2d) and layer.padding[0] != layer.padding[1]
               for layer in model.layers)


# ------------------------------------------------------------ export, own models

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_exports_and_runs_as_tinyconv_computes(name, tmp_path):
    rng = np.random.default_rng(14)
    spec = PRESETS[name].spec
    model = build(spec, rng=rng).eval()
    randomize_batch_norms(model, rng)
    classes = [f"class {k}" for k in range(10)]
    save_model(tmp_path / "model.npz", model, spec, classes, Normalization((0.25,), (0.5,)),
               {"data": "fashion-mnist"})
    proto = export_onnx(tmp_path, tmp_path / "model.onnx")  # a run directory

    written = onnx.load(str(tmp_path / "model.onnx"))
    onnx.checker.check_model(written, full_check=True)
    assert written == proto
    assert (written.ir_version, [(o.domain, o.version) for o in written.opset_import]) == \
        (IR_VERSION, [("", OPSET)])
    (image,), (scores,) = written.graph.input, written.graph.output
    assert image.name == INPUT_NAME and scores.name == OUTPUT_NAME
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == \
        ["N", 1, 28, 28]
    properties = {p.key: p.value for p in written.metadata_props}
    assert json.loads(properties["classes"]) == classes
    preparation = json.loads(properties["input"])
    assert (preparation["mean"], preparation["std"]) == ([0.25], [0.5])
    assert properties["spec"] == load_model(tmp_path / "model.npz").spec

    # Any batch size runs: the batch dimension is free.
    for batch in (1, 5):
        x = rng.normal(size=(batch, 1, 28, 28)).astype(np.float32)
        by_runtime, by_reference = runtime_outputs(written, x)
        close_to_logits(by_runtime, model.forward(x))
        close_to_logits(by_reference, model.forward(x))


ACTIVATIONS = ("relu", "sigmoid", "tanh", "none")


@st.composite
def random_specs(draw) -> str:
    """A spec with random strides, paddings and kernels, both pools, every
    activation, batch normalisation on maps and vectors, and dropout."""
    items = [f"INPUT({draw(st.integers(1, 3))},{draw(st.integers(5, 13))},"
             f"{draw(st.integers(5, 13))},act={draw(st.sampled_from(ACTIVATIONS))})"]
    for _ in range(draw(st.integers(1, 2))):
        act = draw(st.sampled_from(("",) + tuple(f",act={a}" for a in ACTIVATIONS)))
        items.append(f"CONV({draw(st.integers(1, 4))},{draw(st.integers(1, 4))},"
                     f"stride={draw(st.integers(1, 3))},pad={draw(st.integers(0, 2))}{act})")
        if draw(st.booleans()):
            items.append("BN")
        pool = draw(st.sampled_from(("", "MAXPOOL", "AVGPOOL")))
        if pool:
            kernel = draw(st.integers(1, 3))
            items.append(f"{pool}({kernel},stride={draw(st.integers(1, 3))},"
                         f"pad={draw(st.integers(0, kernel // 2))})?")
    if draw(st.booleans()):
        items += ["FLATTEN", "BN"]
    for _ in range(draw(st.integers(0, 2))):
        items.append(f"FC({draw(st.integers(1, 8))},"
                     f"act={draw(st.sampled_from(ACTIVATIONS))})")
        if draw(st.booleans()):
            items.append(draw(st.sampled_from(("BN", "DROPOUT(0.3)"))))
    items.append(f"FC({draw(st.integers(2, 5))})")
    return " -> ".join(items)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=random_specs(), seed=st.integers(0, 2**32 - 1))
def test_random_specs_export_and_run_as_tinyconv_computes(spec, seed):
    rng = np.random.default_rng(seed)
    try:
        model = build(spec, rng=rng)
    except SpecError:
        assume(False)  # a kernel larger than the map that reaches it
    randomize_batch_norms(model, rng)
    check_export(model, input_shape(spec), rng)


@st.composite
def pair_layers(draw):
    """A Sequential with non-square kernels, different strides and paddings for
    height and width (tinyconv's layers take (h, w) pairs), and its input shape."""
    channels, height, width = draw(st.integers(1, 3)), draw(st.integers(6, 12)), \
        draw(st.integers(6, 12))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    filters = draw(st.integers(1, 4))
    layers = [Conv2d(channels, filters, kernel, stride, padding, rng=draw(st.integers(0, 99))),
              draw(st.sampled_from((ReLU, Sigmoid, Tanh)))()]
    h, w = ((n - k + 2 * p) // s + 1 for n, k, s, p in zip((height, width), kernel, stride,
                                                            padding))
    pool_kernel = (draw(st.integers(1, min(3, h))), draw(st.integers(1, min(3, w))))
    pool_padding = (draw(st.integers(0, pool_kernel[0] // 2)),
                    draw(st.integers(0, pool_kernel[1] // 2)))
    pool = draw(st.sampled_from((MaxPool2d, AvgPool2d)))
    layers.append(pool(pool_kernel, (draw(st.integers(1, 2)), draw(st.integers(1, 2))),
                       pool_padding))
    return layers, (channels, height, width)


@settings(max_examples=25, deadline=None)
@given(drawn=pair_layers(), seed=st.integers(0, 2**32 - 1))
def test_non_square_kernels_and_uneven_strides_and_padding_export(drawn, seed):
    layers, shape = drawn
    rng = np.random.default_rng(seed)
    model = Sequential(*layers)
    with model.evaluating():
        features = model.forward(np.zeros((1, *shape), np.float32)).size
    model.layers += [Flatten(), Linear(features, 3, rng=rng)]
    check_export(model, shape, rng)


# ------------------------------------------------------------ export, a trained model

@pytest.fixture(scope="module")
def trained_default(tmp_path_factory):
    """The default model that `make train` leaves in runs/default, or a short real one.

    The short one is the default preset after one epoch on 3,000 Fashion-MNIST
    images: trained, batch statistics and all, but in seconds.
    """
    made = ROOT / "runs" / "default" / "model.npz"
    if made.is_file():
        return load_model(made)
    from tinyconv.training.run import train

    out = tmp_path_factory.mktemp("default")
    train("default", "fashion-mnist", out=out, epochs=1, limit_train=3000, limit_test=500,
          data_dir=require_fashion_mnist(), download=False, progress=False, log=lambda line: None)
    return load_model(out / "model.npz")


@pytest.mark.slow
def test_the_exported_trained_model_predicts_the_same_classes_on_all_test_images(
        trained_default, fashion_mnist_dir, tmp_path):
    test = load_dataset("fashion-mnist", "test", data_dir=fashion_mnist_dir, download=False)
    assert len(test) == 10_000
    export_onnx(trained_default, tmp_path / "model.onnx")
    # The file alone: its metadata says how to prepare the pixels.
    proto = onnx.load(str(tmp_path / "model.onnx"))
    preparation = json.loads({p.key: p.value for p in proto.metadata_props}["input"])
    mean = np.array(preparation["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.array(preparation["std"], np.float32).reshape(1, -1, 1, 1)
    x = (test.images.astype(np.float32) / 255 - mean) / std
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    by_runtime = session.run(None, {INPUT_NAME: x})[0].argmax(axis=1)

    images = trained_default.normalization(test.images)
    with trained_default.model.evaluating():
        by_tinyconv = np.concatenate([trained_default.model.forward(images[i:i + 1000])
                                      for i in range(0, len(images), 1000)]).argmax(axis=1)
    assert np.mean(by_tinyconv == test.labels) > 0.6  # a trained model, not a random one
    assert np.array_equal(by_runtime, by_tinyconv), np.flatnonzero(by_runtime != by_tinyconv)


# ------------------------------------------------------------ import from PyTorch

def torch_models(torch):
    """LeNet-5 as PyTorch tutorials write it, and a CNN with batch normalisation
    in the three places people put it: before ReLU, after it, and on vectors."""
    nn, F = torch.nn, torch.nn.functional

    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), \
                nn.Linear(84, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.relu(F.max_pool2d(self.conv2(x), 2))  # pooled before ReLU: both orders occur
            x = x.view(x.size(0), -1)                    # Shape, Gather, Concat, Reshape
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    batch_norm_cnn = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.BatchNorm2d(16),
        nn.AvgPool2d(2, padding=1), nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.BatchNorm1d(32),
        nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))
    for module in batch_norm_cnn.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.normal_()
            module.running_var.uniform_(0.3, 3.0)
            module.weight.data.normal_()
            module.bias.data.normal_()
    return {"lenet5": LeNet5().float().eval(), "batch_norm_cnn": batch_norm_cnn.float().eval()}


def torch_export(torch, model, path: Path, **options) -> None:
    """``torch.onnx.export`` as a user calls it: named input and output, free batch size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter says it is deprecated
        torch.onnx.export(model, torch.zeros(1, 1, 28, 28, dtype=torch.float32), str(path),
                          dynamo=False, input_names=["images"], output_names=["scores"],
                          dynamic_axes={"images": {0: "batch"}, "scores": {0: "batch"}},
                          **options)


# do_constant_folding=False keeps the BatchNormalization that PyTorch would
# otherwise fold into the Conv before it, so tinyconv folds it itself.
@pytest.mark.parametrize("name, options", [("lenet5", {}), ("batch_norm_cnn", {}),
                                           ("batch_norm_cnn", {"do_constant_folding": False})])
def test_pytorch_models_import_and_give_pytorch_outputs(torch, tmp_path, name, options):
    torch.manual_seed(5)
    model = torch_models(torch)[name]
    torch_export(torch, model, tmp_path / "model.onnx", **options)
    classes = [f"c{k}" for k in range(10)]
    imported = import_onnx(tmp_path / "model.onnx", tmp_path / "model.npz", classes=classes)

    loaded = load_model(tmp_path / "model.npz")  # an ordinary tinyconv model file
    assert loaded.classes == classes and loaded.spec == imported.spec
    x = torch.randn(32, 1, 28, 28, dtype=torch.float32)
    with torch.no_grad():
        want = model(x).numpy()
    close_to_logits(loaded.model.forward(x.numpy()), want)


def test_summary_and_explain_work_on_an_imported_pytorch_model(torch, tmp_path):
    torch.manual_seed(6)
    model = torch_models(torch)["lenet5"]
    torch_export(torch, model, tmp_path / "lenet5.onnx")
    result = tinyconv("import", "lenet5.onnx", "lenet5.npz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    spec = ("INPUT(1,28,28) -> CONV(6,5,pad=2) -> MAXPOOL(2) -> CONV(16,5) -> MAXPOOL(2) -> "
            "FC(120) -> FC(84) -> FC(10)")
    assert spec in result.stdout and "--classes" in result.stdout

    summary = tinyconv("summary", "lenet5.npz", cwd=tmp_path)
    assert summary.returncode == 0, summary.stderr
    assert spec in summary.stdout and "Total params: 61,706" in summary.stdout

    # The first conv layer, read from the imported file, explained on a 4x4
    # patch: every value the explanation ends with is PyTorch's.
    conv = load_model(tmp_path / "lenet5.npz").model.layers[0]
    np.save(tmp_path / "filters.npy", conv.weight.data.astype(np.float64))
    np.save(tmp_path / "biases.npy", conv.bias.data.astype(np.float64))
    patch = np.round(np.random.default_rng(6).uniform(0, 1, (1, 4, 4)), 2)
    np.save(tmp_path / "patch.npy", patch)
    explained = tinyconv("explain", "conv", "--input", "patch.npy", "--filter", "filters.npy",
                         "--bias", "biases.npy", "--padding", conv.padding[0], cwd=tmp_path)
    assert explained.returncode == 0, explained.stderr
    lines = explained.stdout.splitlines()
    titles = [i for i, line in enumerate(lines) if line.startswith("Feature map ")]
    assert [lines[i] for i in titles] == [f"Feature map {k} (4x4):" for k in range(6)]
    printed = np.array([[row.split() for row in lines[i + 1:i + 5]] for i in titles], float)
    assert (printed > 0).sum() > 10  # ReLU leaves values to compare
    with torch.no_grad():
        want = torch.relu(model.conv1.double()(torch.from_numpy(patch[None]))).numpy()[0]
    assert np.abs(printed - want).max() <= 5e-5 + 1e-6  # printed to 4 decimals


# ------------------------------------------------------------ import: the rest of the graph

def make_graph(nodes, initializers, input_shape, output_size, name="graph", opset=OPSET):
    """A checked ONNX model from nodes and {name: array} initializers, input 'x', output 'y'."""
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", output_size])],
        [numpy_helper.from_array(np.asarray(array), key) for key, array in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    return model


def test_hand_written_graph_with_the_other_forms_imports_as_onnxruntime_runs_it(tmp_path):
    """MatMul+Add, Gemm with transB=0 and alpha and beta, SAME padding, a global pool,
    Identity, an ε other than 1e-5, a ratio, ceil_mode that changes nothing, and a
    Reshape to a constant shape: none of them as tinyconv writes them."""
    rng = np.random.default_rng(7)
    f32 = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    nodes = [
        helper.make_node("Identity", ["x"], ["a"]),
        helper.make_node("Conv", ["a", "w1", "b1"], ["c1"], auto_pad="SAME_UPPER",
                         kernel_shape=[3, 3]),
        helper.make_node("Tanh", ["c1"], ["t1"]),
        helper.make_node("MaxPool", ["t1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2],
                         ceil_mode=1),
        helper.make_node("BatchNormalization", ["p1", "g", "beta", "mean", "var"], ["n1"],
                         epsilon=1e-3),
        helper.make_node("Conv", ["n1", "w2"], ["c2"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Sigmoid", ["c2"], ["s2"]),
        helper.make_node("GlobalAveragePool", ["s2"], ["p2"]),
        helper.make_node("Reshape", ["p2", "shape"], ["v"]),
        helper.make_node("MatMul", ["v", "m"], ["mm"]),
        helper.make_node("Add", ["mm", "mb"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Dropout", ["r", "ratio"], ["d"]),
        helper.make_node("Gemm", ["d", "gw", "gb"], ["y"], alpha=0.5, beta=2.0),
    ]
    weights = {"w1": f32(4, 2, 3, 3), "b1": f32(4), "g": f32(4), "beta": f32(4),
               "mean": f32(4), "var": rng.uniform(0.5, 2, 4).astype(np.float32),
               "w2": f32(6, 4, 3, 3), "shape": np.array([-1, 6], np.int64), "m": f32(6, 5),
               "mb": f32(5), "ratio": np.array(0.25, np.float32), "gw": f32(5, 3),
               "gb": f32(3)}
    model = make_graph(nodes, weights, (2, 8, 8), 3)
    onnx.save(model, str(tmp_path / "model.onnx"))

    imported = import_onnx(tmp_path / "model.onnx")
    assert imported.spec == ("INPUT(2,8,8) -> CONV(4,3,pad=1,act=tanh) -> MAXPOOL(2) -> BN -> "
                             "CONV(6,3,pad=1,act=sigmoid) -> AVGPOOL(4) -> FC(5) -> "
                             "DROPOUT(0.25) -> FC(3)")
    x = f32(9, 2, 8, 8)
    (want,) = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"]).run(None, {"x": x})
    close_to_logits(imported.model.forward(x), want)


def test_weights_in_an_external_data_file_are_read(torch, tmp_path):
    torch.manual_seed(8)
    torch_export(torch, torch_models(torch)["lenet5"], tmp_path / "inline.onnx")
    model = onnx.load(str(tmp_path / "inline.onnx"))
    (tmp_path / "split").mkdir()
    onnx.save_model(model, str(tmp_path / "split" / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "split" / "weights.bin").stat().st_size == 61_706 * 4
    assert (tmp_path / "split" / "model.onnx").stat().st_size < 10_000

    inline = import_onnx(tmp_path / "inline.onnx").model.state_dict()
    split = import_onnx(tmp_path / "split" / "model.onnx").model.state_dict()
    assert inline.keys() == split.keys()
    assert all(np.array_equal(inline[key], split[key]) for key in inline)


# ------------------------------------------------------------ round trip

ROUND_TRIP_SPECS = [preset.spec for preset in PRESETS.values()] + [
    "INPUT(3,12,10,act=tanh) -> CONV(4,3,stride=2,pad=1) -> BN -> MAXPOOL(2,stride=1,pad=1) "
    "-> CONV(5,2,act=sigmoid) -> AVGPOOL(2,pad=1) -> FLATTEN -> BN -> FC(9,act=relu) -> "
    "DROPOUT(0.25) -> FC(4)",
]


@pytest.mark.parametrize("spec", ROUND_TRIP_SPECS)
def test_tinyconv_to_onnx_to_tinyconv_gives_bit_identical_parameters(spec, tmp_path):
    rng = np.random.default_rng(11)
    model = build(spec, rng=rng)
    randomize_batch_norms(model, rng)
    with model.evaluating():
        outputs = model.forward(np.zeros((1, *input_shape(spec)), np.float32)).shape[1]
    classes = [f"kind {k}" for k in range(outputs)]
    normalization = Normalization(tuple(rng.uniform(0, 1, input_shape(spec)[0])),
                                  tuple(rng.uniform(0.1, 1, input_shape(spec)[0])))
    save_model(tmp_path / "before.npz", model, spec, classes, normalization, {"epochs": 3})
    export_onnx(tmp_path / "before.npz", tmp_path / "model.onnx")
    import_onnx(tmp_path / "model.onnx", tmp_path / "after.npz")

    before, after = load_model(tmp_path / "before.npz"), load_model(tmp_path / "after.npz")
    assert after.spec == before.spec
    assert after.classes == classes and after.normalization == normalization
    assert after.metadata["epochs"] == 3
    old, new = before.model.state_dict(), after.model.state_dict()
    assert old.keys() == new.keys()
    for key in old:
        assert new[key].dtype == old[key].dtype and new[key].tobytes() == old[key].tobytes(), key


# ------------------------------------------------------------ bad input

def conv_weights(rng, *shape):
    return rng.normal(size=shape).astype(np.float32)


def refused_graphs():
    """name -> (an ONNX model tinyconv cannot represent, fragments its message must hold)."""
    rng = np.random.default_rng(3)
    head = {"w1": conv_weights(rng, 4, 1, 3, 3), "fw": conv_weights(rng, 3, 4 * 8 * 8)}
    tail = [helper.make_node("Flatten", ["z"], ["f"]),
            helper.make_node("Gemm", ["f", "fw"], ["y"], transB=1)]
    residual = make_graph([
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["a"], ["r"], name="relu1"),
        helper.make_node("Conv", ["r", "w2"], ["b"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["r", "b"], ["z"], name="skip"), *tail],
        {**head, "w2": conv_weights(rng, 4, 4, 3, 3)}, (1, 8, 8), 3)
    dilated = make_graph([
        helper.make_node("Conv", ["x", "w1"], ["z"], pads=[2, 2, 2, 2], dilations=[2, 2],
                         name="wide"), *tail], head, (1, 8, 8), 3)
    grouped = make_graph([
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Conv", ["a", "w2"], ["z"], pads=[1, 1, 1, 1], group=2,
                         name="grouped"), *tail],
        {**head, "w2": conv_weights(rng, 4, 2, 3, 3)}, (1, 8, 8), 3)
    unknown = make_graph([
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("LeakyRelu", ["a"], ["z"], name="leaky"), *tail], head, (1, 8, 8), 3)
    return {
        "residual": (residual, ["'skip' (Add)", "residual"]),
        "dilated": (dilated, ["'wide' (Conv)", "dilations [2, 2]"]),
        "grouped": (grouped, ["'grouped' (Conv)", "group=2"]),
        "unknown": (unknown, ["'leaky' (LeakyRelu)", "no layer for this operator"]),
    }


def assert_nothing_written(folder: Path, before: set) -> None:
    """No file appeared in ``folder``, not even a temporary one."""
    assert {path.name for path in folder.iterdir()} == before


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small tinyconv model file and its ONNX export."""
    folder = tmp_path_factory.mktemp("exported")
    spec = "INPUT(1,8,8) -> CONV(2,3) -> MAXPOOL(2) -> FC(3)"
    save_model(folder / "model.npz", build(spec, rng=0), spec, ["a", "b", "c"],
               Normalization((0.5,), (0.25,)))
    export_onnx(folder / "model.npz", folder / "model.onnx")
    return folder


def test_import_refuses_what_tinyconv_cannot_represent_in_one_line(tmp_path):
    for name, (model, fragments) in refused_graphs().items():
        onnx.save(model, str(tmp_path / f"{name}.onnx"))
        before = {path.name for path in tmp_path.iterdir()}
        result = tinyconv("import", f"{name}.onnx", f"{name}.npz", cwd=tmp_path)
        assert_bad_input(result, *fragments)
        assert_nothing_written(tmp_path, before)


def test_import_refuses_a_truncated_or_foreign_file_in_one_line(exported, tmp_path):
    data = (exported / "model.onnx").read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(data[:len(data) // 2])
    (tmp_path / "notes.onnx").write_text("these are my notes, not a model\n")
    (tmp_path / "model.npz").write_bytes((exported / "model.npz").read_bytes())
    for name, fragment in [("truncated.onnx", "truncated"), ("notes.onnx", "not ONNX"),
                           ("model.npz", "not ONNX"), ("missing.onnx", "does not exist")]:
        before = {path.name for path in tmp_path.iterdir()}
        assert_bad_input(tinyconv("import", name, "out.npz", cwd=tmp_path), name, fragment)
        assert_nothing_written(tmp_path, before)


def test_export_and_import_refuse_an_output_path_that_cannot_be_written(exported, tmp_path):
    (tmp_path / "taken").mkdir()
    model, onnx_file = exported / "model.npz", exported / "model.onnx"
    for command, source, out, fragment in [
            ("export", model, "missing/model.onnx", "cannot write missing/model.onnx: the "
                                                    "directory"),
            ("export", model, "taken", "taken: could not save it: Is a directory (nothing "
                                       "was written)"),
            ("import", onnx_file, "missing/model.npz", "cannot write missing/model.npz: the "
                                                       "directory"),
            ("import", onnx_file, "taken", "taken: could not save it: Is a directory (nothing "
                                          "was written)")]:
        before = {path.name for path in tmp_path.iterdir()}
        assert_bad_input(tinyconv(command, source, out, cwd=tmp_path), fragment)
        assert_nothing_written(tmp_path, before)
        assert list((tmp_path / "taken").iterdir()) == []


def test_tinyconv_imports_without_onnx_and_says_how_to_install_it(exported, tmp_path):
    code = ("import sys; sys.modules['onnx'] = None; import tinyconv; "
            "from tinyconv.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "export", str(exported / "model.npz"),
                             "model.onnx"], cwd=tmp_path, env=_env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert_bad_input(result, 'pip install "tinyconv[onnx]"')
    assert not (tmp_path / "model.onnx").exists()


def test_the_cli_exports_and_imports_with_class_names(exported, tmp_path):
    result = tinyconv("export", exported / "model.npz", "model.onnx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "opset 17, IR version 8" in result.stdout and "a, b, c" in result.stdout
    result = tinyconv("import", "model.onnx", "model.npz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert load_model(tmp_path / "model.npz").classes == ["a", "b", "c"]
    result = tinyconv("import", "model.onnx", "renamed.npz", "--classes", "x, y,z",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert load_model(tmp_path / "renamed.npz").classes == ["x", "y", "z"]
    assert_bad_input(tinyconv("import", "model.onnx", "bad.npz", "--classes", "x,y",
                              cwd=tmp_path), "3 scores", "2 class names")
    assert not (tmp_path / "bad.npz").exists()
