"""Optimizers and schedules against torch.optim, step by step, in float64."""

from __future__ import annotations

import numpy as np
import pytest

from tinyconv.nn.layers import Parameter
from tinyconv.training.optim import SGD, Adam, CosineLR, StepLR

SHAPES = [(3, 2, 3, 3), (3,), (4, 5)]
STEPS = 6


def _start(seed=0):
    """Initial weights and a list of gradients per step, all float64."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=shape) for shape in SHAPES]
    grads = [[rng.normal(size=shape) for shape in SHAPES] for _ in range(STEPS)]
    return weights, grads


def _run_tinyconv(make, weights, grads):
    params = [Parameter(w.copy()) for w in weights]
    optimizer = make(params)
    for step_grads in grads:
        optimizer.zero_grad()
        for param, grad in zip(params, step_grads):
            param.grad += grad
        optimizer.step()
    return [p.data for p in params], optimizer


def _run_torch(torch, make, weights, grads):
    tensors = [torch.tensor(w, requires_grad=True) for w in weights]
    optimizer = make(tensors)
    for step_grads in grads:
        optimizer.zero_grad()
        for tensor, grad in zip(tensors, step_grads):
            tensor.grad = torch.tensor(grad)
        optimizer.step()
    return [t.detach().numpy() for t in tensors]


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=5e-4),
]

ADAM_CASES = [
    dict(),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=0.003, weight_decay=0.1),
]


@pytest.mark.parametrize("kwargs", SGD_CASES)
def test_sgd_equals_torch(torch, kwargs):
    weights, grads = _start()
    ours, _ = _run_tinyconv(lambda p: SGD(p, **kwargs), weights, grads)
    theirs = _run_torch(torch, lambda p: torch.optim.SGD(p, **kwargs), weights, grads)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kwargs", ADAM_CASES)
def test_adam_equals_torch(torch, kwargs):
    weights, grads = _start()
    ours, _ = _run_tinyconv(lambda p: Adam(p, **kwargs), weights, grads)
    theirs = _run_torch(torch, lambda p: torch.optim.Adam(p, **kwargs), weights, grads)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_plain_sgd_is_the_gradient_descent_rule():
    param = Parameter(np.array([1.0, -2.0]))
    param.grad += np.array([0.5, 4.0])
    SGD([param], lr=0.1).step()
    np.testing.assert_array_equal(param.data, [1.0 - 0.05, -2.0 - 0.4])


def test_float32_parameters_stay_float32():
    param = Parameter(np.ones(3, np.float32))
    param.grad += 1
    for optimizer in (SGD([param], 0.1, momentum=0.9, weight_decay=0.1), Adam([param])):
        optimizer.step()
        optimizer.step()
        assert param.data.dtype == np.float32
        assert all(v.dtype == np.float32 for s in optimizer.state for k, v in s.items()
                   if k != "step")


@pytest.mark.parametrize("make", [lambda p: SGD(p, 0.05, momentum=0.9, nesterov=True),
                                  lambda p: Adam(p, 0.01)])
def test_state_dict_resumes_exactly(make):
    """Three steps, save, three more in a new optimizer == six steps in one."""
    weights, grads = _start(1)
    straight, _ = _run_tinyconv(make, weights, grads)
    halfway, first = _run_tinyconv(make, weights, grads[:3])
    state = first.state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in state.values())
    params = [Parameter(w.copy()) for w in halfway]
    second = make(params)
    second.load_state_dict(state)
    for step_grads in grads[3:]:
        second.zero_grad()
        for param, grad in zip(params, step_grads):
            param.grad += grad
        second.step()
    for a, b in zip(straight, params):
        np.testing.assert_array_equal(a, b.data)


def test_state_dict_is_a_copy():
    param = Parameter(np.zeros(2))
    param.grad += 1
    optimizer = SGD([param], 0.1, momentum=0.9)
    optimizer.step()
    state = optimizer.state_dict()
    optimizer.step()
    np.testing.assert_array_equal(state["state/0/momentum_buffer"], [1.0, 1.0])


def test_load_state_dict_refuses_what_does_not_fit():
    params = [Parameter(np.zeros((2, 3)))]
    params[0].grad += 1
    adam = Adam(params)
    adam.step()
    with pytest.raises(ValueError, match="does not know"):
        SGD(params, 0.1, momentum=0.9).load_state_dict(adam.state_dict())
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*needs \(4,\)"):
        Adam([Parameter(np.zeros(4))]).load_state_dict(adam.state_dict())
    with pytest.raises(ValueError, match="only 1 parameters"):
        Adam([Parameter(np.zeros((2, 3)))]).load_state_dict(
            {"lr": np.array(0.1), "state/5/exp_avg": np.zeros((2, 3))})


@pytest.mark.parametrize("call, error, match", [
    (lambda p: SGD(p, lr=-0.1), ValueError, "lr must be"),
    (lambda p: SGD(p, lr="0.1"), TypeError, "lr must be a number"),
    (lambda p: SGD(p, lr=0.1, momentum=1.0), ValueError, "momentum"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), ValueError, "nesterov"),
    (lambda p: SGD(p, lr=float("nan")), ValueError, "finite"),
    (lambda p: Adam(p, betas=0.9), TypeError, "betas"),
    (lambda p: Adam(p, eps=0), ValueError, "eps"),
    (lambda p: SGD([], lr=0.1), ValueError, "no parameters"),
    (lambda p: SGD([np.zeros(2)], lr=0.1), TypeError, "Parameters"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call([Parameter(np.zeros(2))])


def _torch_lrs(torch, make_schedule, epochs):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    schedule = make_schedule(optimizer)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return lrs


def _our_lrs(make_schedule, epochs):
    optimizer = SGD([Parameter(np.zeros(1))], lr=0.1)
    schedule = make_schedule(optimizer)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.lr)
        schedule.step()
    return lrs


def test_step_lr_equals_torch(torch):
    theirs = _torch_lrs(torch, lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.5), 10)
    np.testing.assert_allclose(_our_lrs(lambda o: StepLR(o, 3, gamma=0.5), 10), theirs,
                               rtol=1e-12)


@pytest.mark.parametrize("min_lr", [0.0, 0.001])
def test_cosine_lr_equals_torch(torch, min_lr):
    theirs = _torch_lrs(torch, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(
        o, T_max=7, eta_min=min_lr), 8)
    ours = _our_lrs(lambda o: CosineLR(o, 7, min_lr=min_lr), 8)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-15)


def test_cosine_lr_stays_at_min_after_the_end():
    optimizer = SGD([Parameter(np.zeros(1))], lr=0.1)
    schedule = CosineLR(optimizer, 2, min_lr=0.01)
    for _ in range(5):
        schedule.step()
    assert optimizer.lr == pytest.approx(0.01)


def test_schedule_state_dict_restores_the_rate():
    first = SGD([Parameter(np.zeros(1))], lr=0.1)
    schedule = CosineLR(first, 10)
    for _ in range(4):
        schedule.step()
    second = SGD([Parameter(np.zeros(1))], lr=0.1)
    restored = CosineLR(second, 10)
    restored.load_state_dict(schedule.state_dict())
    assert second.lr == first.lr
    schedule.step()
    restored.step()
    assert second.lr == first.lr


@pytest.mark.parametrize("make, error, match", [
    (lambda o: StepLR(o, 0), ValueError, r"step_size \(epochs\) must be positive, got 0"),
    (lambda o: StepLR(o, 2.0), TypeError, r"step_size \(epochs\) must be an int, got 2.0"),
    (lambda o: CosineLR(o, -1), ValueError, "total_epochs must be positive, got -1"),
    (lambda o: CosineLR(o, True), TypeError, "total_epochs must be an int, got True"),
])
def test_schedule_bad_epochs(make, error, match):
    with pytest.raises(error, match=match):
        make(SGD([Parameter(np.zeros(1))], lr=0.1))
