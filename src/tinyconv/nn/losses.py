"""Loss functions. ``criterion.forward(prediction, target)`` returns the loss
as a float; ``criterion.backward()`` returns d loss / d prediction, the δ
that starts backpropagation."""

from __future__ import annotations

from . import functional as F

__all__ = ["CrossEntropyLoss", "MSELoss"]


class _Loss:
    """Keeps the forward's cache so that ``backward()`` needs no argument."""

    _forward = _backward = None

    def __init__(self):
        self._cache = None

    def forward(self, prediction, target) -> float:
        loss, self._cache = type(self)._forward(prediction, target)
        return loss

    def __call__(self, prediction, target) -> float:
        return self.forward(prediction, target)

    def backward(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return type(self)._backward(self._cache)

    def __repr__(self):
        return f"{type(self).__name__}()"


class CrossEntropyLoss(_Loss):
    """Softmax and cross-entropy on logits, averaged over the batch.

    Shape: logits (N, classes), target (N,) integer labels in [0, classes).
    backward() is (softmax - onehot) / N, shape (N, classes).
    """

    _forward = staticmethod(F.cross_entropy_forward)
    _backward = staticmethod(F.cross_entropy_backward)


class MSELoss(_Loss):
    """Mean squared error over every element; prediction and target alike in shape."""

    _forward = staticmethod(F.mse_forward)
    _backward = staticmethod(F.mse_backward)
