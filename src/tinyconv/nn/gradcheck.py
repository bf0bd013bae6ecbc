"""A numerical check of backpropagation: central differences in float64.

Backpropagation computes ∂E/∂x for every input and parameter in one
backward pass. A finite difference computes the same number the slow way,
``(E(x + ε) - E(x - ε)) / 2ε``, one element at a time, straight from the
definition of a derivative. Where the two agree, the backward code is right.
"""

from __future__ import annotations

import numpy as np

from ..checks import as_generator


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """``max|a - n| / max(max|a|, max|n|)``; 0 when both are all zeros.

    Scaling by the largest magnitude (rather than element by element) keeps
    gradients that are legitimately near zero from reporting huge errors.
    """
    scale = max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0))
    if scale == 0:
        return 0.0
    return float(np.abs(analytic - numeric).max() / scale)


def gradcheck(module, x, criterion=None, target=None, *, eps: float = 1e-6,
              rng=0) -> float:
    """Compare ``module``'s backward with central differences.

    The check runs in float64: the module's parameters are switched to
    float64 copies with fresh gradients for its duration, and afterwards each
    parameter gets back its own ``.data`` and ``.grad`` arrays, untouched.
    The objective is ``criterion.forward(module(x), target)`` when a
    criterion is given, otherwise ``Σ module(x) · R`` for a fixed random
    array R, which makes ``R`` the upstream δ and checks the layer for an
    arbitrary incoming gradient.

    The objective must be one fixed function of x and the weights, so every
    forward pass starts from the random state each dropout layer's ``rng``
    had when the check began (every pass draws the same masks), and from the
    batch-norm running statistics as they were. Afterwards both are as the
    caller left them: a check in training mode changes nothing.

    Every element of the input and of every parameter is perturbed by ±eps,
    so the cost is two forward passes per element: use small inputs.

    Args:
        module: a layer or a Sequential network (anything with forward,
            backward, named_parameters and zero_grad).
        x: input array; it is copied, never modified.
        criterion, target: an optional loss and its target.
        eps: the step ε. rng: seed or Generator for R.

    Returns:
        The largest relative error (:func:`relative_error`) over the input
        gradient and every parameter gradient.

    What to expect: with ε = 1e-6 in float64 the truncation error of the
    central difference is O(ε²) ≈ 1e-12 and the rounding error about
    1e-16 / ε ≈ 1e-10, so a correct backward gives 1e-8 or less; a wrong one
    gives 1e-2 or more. float32 is not used because its rounding error
    (about 1e-7 / ε) would swamp the difference for any useful ε. A ReLU or a
    max-pooling window whose input sits within ε of its kink or tie is not
    differentiable there and can show a large error: random inputs avoid it.
    So can a parameter whose gradient is zero by construction, such as a
    bias right before batch norm (which subtracts it again): both sides are
    then rounding noise.
    """
    x = np.array(x, dtype=np.float64)  # our own copy, perturbed in place below
    named = list(module.named_parameters())
    originals = [(p.data, p.grad) for _, p in named]
    # Modules with their own Generator (dropout) and their states, and the buffers' values.
    generators = [(m, m.rng.bit_generator.state) for m in module.modules()
                  if isinstance(getattr(m, "rng", None), np.random.Generator)]
    buffers = [(array, array.copy()) for _, array in module.named_buffers()]

    def hold_still() -> None:
        for owner, state in generators:
            owner.rng.bit_generator.state = state
        for array, saved in buffers:
            array[...] = saved

    for _, p in named:
        p.data = p.data.astype(np.float64)
        # Our own gradient array: zero_grad below must not clear the caller's.
        p.grad = np.zeros_like(p.data)
    try:
        upstream = None
        if criterion is None:
            upstream = as_generator(rng).standard_normal(module.forward(x).shape)

        def objective() -> float:
            hold_still()
            out = module.forward(x)
            if criterion is None:
                return float(np.sum(out * upstream))
            return float(criterion.forward(out, target))

        module.zero_grad()
        objective()
        grad_input = module.backward(upstream if criterion is None else criterion.backward())
        checks = [(x, grad_input)] + [(p.data, p.grad.copy()) for _, p in named]

        worst = 0.0
        for array, analytic in checks:
            numeric = np.zeros_like(array)
            for index in np.ndindex(array.shape):
                kept = array[index]
                array[index] = kept + eps
                plus = objective()
                array[index] = kept - eps
                minus = objective()
                array[index] = kept
                numeric[index] = (plus - minus) / (2 * eps)
            worst = max(worst, relative_error(analytic, numeric))
        return worst
    finally:
        hold_still()
        for (_, p), (data, grad) in zip(named, originals):
            p.data = data
            p.grad = grad
