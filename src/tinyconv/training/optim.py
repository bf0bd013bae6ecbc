"""Optimizers and learning-rate schedules.

After backpropagation has added ∂E/∂w into every parameter's ``.grad``
(FORMULAS.md, "Training: backpropagation", step 3), an optimizer's
``step()`` moves each weight against its gradient. Plain gradient descent is
``w ← w - lr · ∂E/∂w``; :class:`SGD` adds momentum and weight decay, and
:class:`Adam` scales each weight's step by running moments of its gradient.
Both follow PyTorch's ``torch.optim`` update rules exactly (the test suite
compares them step by step), so hyperparameters carry over.

An optimizer keeps its state per parameter (the momentum buffer, Adam's
moments), in the parameters' dtype. ``state_dict()`` returns that state as
plain NumPy arrays keyed like ``"state/3/exp_avg"`` (parameter 3), which an
``.npz`` checkpoint stores without pickling; ``load_state_dict`` puts it back.

A schedule changes the optimizer's ``lr`` once per epoch: call its
``step()`` at the end of every epoch.
"""

from __future__ import annotations

import math

import numpy as np

from ..checks import check_int
from ..nn.layers import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "StepLR", "CosineLR"]


def _check_number(value, name: str, low: float, high: float = math.inf,
                  high_open: bool = False) -> float:
    """``value`` as a finite float in [low, high] (or [low, high)), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    too_high = value >= high if high_open else value > high
    if not math.isfinite(value) or value < low or too_high:
        interval = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value}")
    return value


class Optimizer:
    """What SGD and Adam share: the parameters, ``lr``, per-parameter state.

    Args:
        params: the Parameters to update, e.g. ``model.parameters()``.
        lr: the learning rate, a number ≥ 0.
    """

    #: Names of the per-parameter state arrays, in the order they are created.
    state_names: tuple[str, ...] = ()

    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError("the optimizer got no parameters to update")
        for index, param in enumerate(self.params):
            if not isinstance(param, Parameter):
                raise TypeError(f"the optimizer updates Parameters, got "
                                f"{type(param).__name__} at position {index}")
        self.lr = lr
        self.state: list[dict[str, np.ndarray]] = [{} for _ in self.params]

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = _check_number(value, "lr", 0.0)

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero before the next backward."""
        for param in self.params:
            param.grad[...] = 0

    def step(self) -> None:
        """Update every parameter from its ``.grad``."""
        for param, state in zip(self.params, self.state):
            self._update(param, state)

    def _update(self, param: Parameter, state: dict) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{"lr": ..., "state/<i>/<name>": array}``: copies, safe to keep."""
        state = {"lr": np.array(self.lr)}
        for index, per_param in enumerate(self.state):
            for name, value in per_param.items():
                state[f"state/{index}/{name}"] = np.array(value, copy=True)
        return state

    def load_state_dict(self, state) -> None:
        """Restore what :meth:`state_dict` returned (from a checkpoint, say).

        The state must belong to an optimizer of this kind over parameters of
        the same shapes; otherwise a ValueError says what does not fit and
        nothing changes.
        """
        if "lr" not in state:
            raise ValueError("optimizer state has no 'lr'")
        restored: list[dict[str, np.ndarray]] = [{} for _ in self.params]
        for key, value in state.items():
            if key == "lr":
                continue
            parts = key.split("/")
            if (len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit()
                    or parts[2] not in self.state_names):
                raise ValueError(f"optimizer state has an entry {key!r} that "
                                 f"{type(self).__name__} does not know")
            index, name = int(parts[1]), parts[2]
            if index >= len(self.params):
                raise ValueError(f"optimizer state is for parameter {index}, but there are "
                                 f"only {len(self.params)} parameters")
            value = np.asarray(value)
            expected = () if name == "step" else self.params[index].shape
            if value.shape != expected:
                raise ValueError(f"optimizer state {key!r} has shape {value.shape}, "
                                 f"parameter {index} needs {expected}")
            dtype = value.dtype if name == "step" else self.params[index].data.dtype
            restored[index][name] = np.array(value, dtype=dtype, copy=True)
        self.lr = float(state["lr"])
        self.state = restored

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr}, {len(self.params)} parameters)"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, as ``torch.optim.SGD``.

    For each parameter w with gradient g:

    - weight decay (an L2 penalty ½·λ·|w|² added to the loss):
      g ← g + λ·w;
    - momentum μ: a velocity v ← μ·v + g (v = g at the first step);
      g ← v, or g ← g + μ·v with Nesterov's look-ahead;
    - w ← w - lr·g.

    Args:
        params: the Parameters to update. lr: learning rate.
        momentum: μ in [0, 1). nesterov: Nesterov momentum (needs μ > 0).
        weight_decay: λ ≥ 0.
    """

    state_names = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum = _check_number(momentum, "momentum", 0.0, 1.0, high_open=True)
        self.weight_decay = _check_number(weight_decay, "weight_decay", 0.0)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov momentum needs momentum > 0, got momentum 0")
        self.nesterov = bool(nesterov)

    def _update(self, param, state):
        grad = param.grad
        if self.weight_decay:
            grad = grad + self.weight_decay * param.data
        if self.momentum:
            if "momentum_buffer" in state:
                velocity = state["momentum_buffer"]
                velocity *= self.momentum
                velocity += grad
            else:
                velocity = state["momentum_buffer"] = np.array(grad, copy=True)
            grad = grad + self.momentum * velocity if self.nesterov else velocity
        param.data -= self.lr * grad


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015), as ``torch.optim.Adam``.

    For each parameter w with gradient g, at step t = 1, 2, ...:

    - weight decay (L2, added to the gradient as in PyTorch's Adam): g ← g + λ·w;
    - first and second moments: m ← β1·m + (1-β1)·g, v ← β2·v + (1-β2)·g²;
    - w ← w - lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + ε). The two
      corrections undo the moments' bias towards their zero start.

    Args:
        params: the Parameters to update. lr: learning rate (1e-3).
        betas: (β1, β2), each in [0, 1). eps: ε > 0. weight_decay: λ ≥ 0.
    """

    state_names = ("step", "exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_check_number(betas[0], "beta1", 0.0, 1.0, high_open=True),
                      _check_number(betas[1], "beta2", 0.0, 1.0, high_open=True))
        self.eps = _check_number(eps, "eps", 0.0)
        if self.eps == 0:
            raise ValueError("eps must be positive, got 0.0")
        self.weight_decay = _check_number(weight_decay, "weight_decay", 0.0)

    def _update(self, param, state):
        beta1, beta2 = self.betas
        grad = param.grad
        if self.weight_decay:
            grad = grad + self.weight_decay * param.data
        if not state:
            state["step"] = np.array(0, dtype=np.int64)
            state["exp_avg"] = np.zeros_like(param.data)
            state["exp_avg_sq"] = np.zeros_like(param.data)
        state["step"] += 1
        step = int(state["step"])
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg *= beta1
        exp_avg += (1 - beta1) * grad
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        step_size = self.lr / (1 - beta1 ** step)
        denominator = np.sqrt(exp_avg_sq) / math.sqrt(1 - beta2 ** step) + self.eps
        param.data -= step_size * exp_avg / denominator


class _Schedule:
    """A learning rate that depends only on the number of finished epochs.

    The rate for epoch ``e`` (0-based) is ``lr_at(e)``; ``base_lr`` is the
    optimizer's ``lr`` when the schedule is made. ``step()`` at the end of
    each epoch moves on and writes the new rate into ``optimizer.lr``.
    """

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"a schedule needs a tinyconv optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self) -> None:
        """Finish an epoch: set the optimizer's rate for the next one."""
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"base_lr": np.array(self.base_lr), "last_epoch": np.array(self.last_epoch)}

    def load_state_dict(self, state) -> None:
        """Restore what :meth:`state_dict` returned, and the optimizer's rate with it."""
        missing = {"base_lr", "last_epoch"} - set(state)
        if missing:
            raise ValueError(f"schedule state lacks {sorted(missing)}")
        self.base_lr = float(state["base_lr"])
        self.last_epoch = int(state["last_epoch"])
        self.optimizer.lr = self.lr_at(self.last_epoch)


class StepLR(_Schedule):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs, as ``torch``'s StepLR:
    ``lr = base_lr · gamma^(epoch // step_size)``."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        self.step_size = check_int(step_size, "step_size (epochs)")
        self.gamma = _check_number(gamma, "gamma", 0.0)
        if self.gamma == 0:
            raise ValueError("gamma must be positive, got 0.0")

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineLR(_Schedule):
    """Cosine annealing from ``base_lr`` down to ``min_lr`` over ``total_epochs``,
    as ``torch``'s CosineAnnealingLR with ``T_max = total_epochs``:

    ``lr = min_lr + (base_lr - min_lr) · (1 + cos(π · epoch / total_epochs)) / 2``.

    The rate falls slowly at first, fastest mid-way and gently at the end;
    after ``total_epochs`` it stays at ``min_lr`` (PyTorch would climb back up).
    """

    def __init__(self, optimizer, total_epochs, min_lr=0.0):
        super().__init__(optimizer)
        self.total_epochs = check_int(total_epochs, "total_epochs")
        self.min_lr = _check_number(min_lr, "min_lr", 0.0, self.base_lr)

    def lr_at(self, epoch):
        progress = min(epoch, self.total_epochs) / self.total_epochs
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2
