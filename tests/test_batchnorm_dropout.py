"""Batch normalisation and dropout: equal to PyTorch, gradient-checked, seeded."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tinyconv import BatchNorm1d, BatchNorm2d, Dropout, gradcheck
from tinyconv import functional as F


def _bn_pair(torch, layer_cls, torch_cls, c, rng):
    """A tinyconv BN layer (float64) and a torch BN with the same random gamma, beta."""
    ours = layer_cls(c, eps=1e-3, momentum=0.2, dtype=np.float64)
    ours.weight.data = rng.normal(1.0, 0.5, c)
    ours.bias.data = rng.normal(0.0, 0.5, c)
    theirs = torch_cls(c, eps=1e-3, momentum=0.2)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.data))
        theirs.bias.copy_(torch.from_numpy(ours.bias.data))
    return ours, theirs


# Each channel of the 4x3x5x6 float64 input is 960 bytes: blocks of 1000
# bytes hold one channel, of 2000 bytes two (and then the one left over).
@pytest.mark.parametrize("block_bytes", [F.BLOCK_BYTES, 1000, 2000])
@pytest.mark.parametrize("shape, layer_cls, torch_name", [
    ((4, 3, 5, 6), BatchNorm2d, "BatchNorm2d"),
    ((7, 5), BatchNorm1d, "BatchNorm1d"),
])
def test_batch_norm_matches_torch_in_train_and_eval(torch, shape, layer_cls, torch_name,
                                                    block_bytes, monkeypatch):
    monkeypatch.setattr(F, "BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(0)
    ours, theirs = _bn_pair(torch, layer_cls, getattr(torch.nn, torch_name), shape[1], rng)
    # Two training steps move the running statistics twice (unbiased variance).
    for step in range(2):
        x = rng.normal(2.0, 3.0, shape)
        upstream = rng.normal(size=shape)
        ours.zero_grad()
        out = ours.forward(x)
        grad_x = ours.backward(upstream)
        tx = torch.tensor(x, requires_grad=True)
        theirs.weight.grad = theirs.bias.grad = None
        tout = theirs(tx)
        tout.backward(torch.from_numpy(upstream))
        np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12)

    ours.eval()
    theirs.eval()
    x = rng.normal(1.0, 2.0, shape)
    upstream = rng.normal(size=shape)
    tx = torch.tensor(x, requires_grad=True)
    tout = theirs(tx)
    tout.backward(torch.from_numpy(upstream))
    np.testing.assert_allclose(ours.forward(x), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.backward(upstream), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    # Evaluation leaves the running statistics alone.
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-12)


def test_batch_norm_state_dict_holds_running_statistics():
    layer = BatchNorm2d(3)
    layer.forward(np.random.default_rng(1).normal(5.0, 1.0, (2, 3, 4, 4)).astype(np.float32))
    state = layer.state_dict()
    assert sorted(state) == ["bias", "running_mean", "running_var", "weight"]
    assert np.all(state["running_mean"] > 0.4)  # 0.1 of the way towards ~5


@pytest.mark.parametrize("layer, shape", [
    (BatchNorm2d(3), (3, 3, 2, 3)),
    (BatchNorm1d(4), (5, 4)),
])
def test_batch_norm_gradcheck_in_training(layer, shape):
    rng = np.random.default_rng(2)
    layer.weight.data = rng.normal(1.0, 0.3, layer.num_features).astype(np.float32)
    layer.bias.data = rng.normal(0.0, 0.3, layer.num_features).astype(np.float32)
    assert gradcheck(layer, rng.normal(size=shape)) < 1e-6


def test_batch_norm_gradcheck_in_evaluation():
    layer = BatchNorm2d(2)
    layer.running_mean[...] = [0.5, -1.0]
    layer.running_var[...] = [2.0, 0.25]
    layer.eval()
    assert gradcheck(layer, np.random.default_rng(3).normal(size=(2, 2, 3, 3))) < 1e-6


def test_batch_norm_keeps_float32():
    layer = BatchNorm2d(3)
    x = np.random.default_rng(4).normal(size=(2, 3, 4, 4)).astype(np.float32)
    out = layer.forward(x)
    grad = layer.backward(np.ones_like(out))
    assert out.dtype == grad.dtype == np.float32
    assert layer.weight.grad.dtype == layer.running_var.dtype == np.float32


def test_batch_norm_normalises_each_channel():
    # The functional form is batch last: (C, H, W, N).
    x = np.random.default_rng(5).normal(3.0, 4.0, (2, 3, 3, 8))
    out, _ = F.batch_norm2d_forward(x, np.ones(2), np.zeros(2))
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(1, 2, 3)), 1, rtol=1e-4)


def test_batch_norm_bad_input():
    layer = BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"4 dimensions \(N, C, H, W\)"):
        layer.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"expected 3 channels on axis 1, got input shape \(2, 4"):
        layer.forward(np.zeros((2, 4, 3, 3)))
    with pytest.raises(ValueError, match="more than one value per channel"):
        BatchNorm1d(3).forward(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"2 dimensions \(N, C\)"):
        BatchNorm1d(3).forward(np.zeros((2, 3, 1, 1)))
    with pytest.raises(ValueError, match="num_features must be positive"):
        BatchNorm2d(0)
    with pytest.raises(ValueError, match="momentum must be in"):
        BatchNorm2d(3, momentum=1.5)
    with pytest.raises(RuntimeError, match="before forward"):
        BatchNorm2d(3).backward(np.zeros((2, 3, 1, 1)))
    with pytest.raises(ValueError, match="both mean and var"):
        F.batch_norm2d_forward(np.zeros((2, 3, 1, 1)), np.ones(3), mean=np.zeros(3))


def _shared_batch_norm(x, weight, bias, grad_out, bounds):
    """Batch norm of x (C, H, W, N) split by columns among threads, one per
    (start, stop) in ``bounds``, whose ``gather`` stacks every thread's array
    as MPI's Allgather would; returns (out, grad_x, grad_weight, grad_bias) put
    back together (the workers' parameter gradients summed)."""
    barrier, parts = threading.Barrier(len(bounds)), [None] * len(bounds)
    results = [None] * len(bounds)

    def worker(rank, start, stop):
        def gather(array):
            parts[rank] = array.copy()
            barrier.wait()
            every = np.stack(parts)
            barrier.wait()
            return every
        out, cache = F.batch_norm2d_forward(x[..., start:stop], weight, bias, gather=gather)
        results[rank] = (out, *F.batch_norm2d_backward(grad_out[..., start:stop], cache, gather))

    threads = [threading.Thread(target=worker, args=(rank, *b)) for rank, b in enumerate(bounds)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outs, grads_x, grads_w, grads_b = zip(*results)
    return (np.concatenate(outs, axis=-1), np.concatenate(grads_x, axis=-1),
            sum(grads_w), sum(grads_b))


# float64: channel 0's mean is 50,000 times its spread, where E[x²] - mean²
# would lose all but about 7 digits of the variance. float32 carries only
# 7 digits to begin with, so its mean is 50 times the spread.
@pytest.mark.parametrize("dtype, offset, spread, tolerance", [(np.float64, 500.0, 0.01, 1e-9),
                                                              (np.float32, 5.0, 0.1, 1e-4)])
@pytest.mark.parametrize("bounds", [[(0, 3), (3, 7)], [(0, 0), (0, 5), (5, 7)],
                                    [(0, 1), (1, 2), (2, 7)]])
def test_batch_norm_shared_among_workers_equals_one_process(dtype, offset, spread, tolerance,
                                                            bounds):
    """The workers' one allgather of counts, means and squares gives the whole
    batch's statistics, also for a mean far from zero and for empty or
    one-column shares; each result is compared relative to its largest value."""
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, (3, 4, 5, 7)) * np.array([spread, 1.0, 30.0])[:, None, None, None]
    x = (x + np.array([offset, -2.0, 0.0])[:, None, None, None]).astype(dtype)
    weight, bias = rng.normal(1.0, 0.3, 3), rng.normal(0.0, 0.3, 3)
    grad_out = rng.normal(size=x.shape).astype(dtype)
    want, cache = F.batch_norm2d_forward(x, weight, bias)
    want_grads = F.batch_norm2d_backward(grad_out, cache)
    got = _shared_batch_norm(x, weight, bias, grad_out, bounds)
    for ours, theirs in zip(got, (want, *want_grads)):
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=tolerance * np.abs(theirs).max())


def test_dropout_is_identity_in_evaluation_and_for_p_zero():
    x = np.random.default_rng(6).normal(size=(4, 5)).astype(np.float32)
    layer = Dropout(0.5, rng=0).eval()
    np.testing.assert_array_equal(layer.forward(x), x)
    np.testing.assert_array_equal(layer.backward(x), x)
    layer = Dropout(0.0, rng=0)
    np.testing.assert_array_equal(layer.forward(x), x)
    np.testing.assert_array_equal(layer.backward(x), x)


def test_dropout_scales_kept_values_and_backward_reuses_the_mask():
    p = 0.25
    x = np.random.default_rng(7).uniform(1.0, 2.0, (50, 40)).astype(np.float32)
    layer = Dropout(p, rng=8)
    out = layer.forward(x)
    assert out.dtype == np.float32
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-6)
    # About p of the 2,000 values are dropped (binomial sd ~ 19).
    assert abs((~kept).mean() - p) < 0.05
    grad = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(grad != 0, kept)
    np.testing.assert_allclose(grad[kept], 1 / (1 - p), rtol=1e-6)


def test_dropout_masks_come_from_its_rng():
    x = np.ones((6, 7))
    first = Dropout(0.5, rng=9).forward(x)
    np.testing.assert_array_equal(Dropout(0.5, rng=9).forward(x), first)
    layer = Dropout(0.5, rng=10)
    assert not np.array_equal(layer.forward(x), first)
    layer.rng = np.random.default_rng(9)  # how a trainer re-seeds it
    np.testing.assert_array_equal(layer.forward(x), first)


def test_dropout_bad_input():
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\), got 1"):
        Dropout(1.0)
    with pytest.raises(ValueError, match=r"got -0.1"):
        Dropout(-0.1)
    with pytest.raises(TypeError, match="p must be a number"):
        Dropout("0.5")
    with pytest.raises(TypeError, match="rng must be"):
        Dropout(0.5, rng="seed")
    with pytest.raises(TypeError, match="rng must be a numpy Generator"):
        F.dropout_forward(np.ones(3), 0.5, 3)
    layer = Dropout(0.5, rng=0)
    layer.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"output's shape \(2, 3\), got \(3, 2\)"):
        layer.backward(np.ones((3, 2)))
