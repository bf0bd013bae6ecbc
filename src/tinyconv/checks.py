"""Checking what comes in, and the shape rules every layer obeys.

The lowest layer of tinyconv: it imports nothing but NumPy, so that the fast
path (:mod:`tinyconv.nn.functional`), the literal reference
(:mod:`tinyconv.tutorial.reference`), the data readers and the optimizers can
all share one set of checks without depending on each other. Each check
raises ``TypeError`` or ``ValueError`` with a message that names the argument,
says what was expected and what came.
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_float_array", "check_ndim", "check_grad", "pair", "check_int",
           "conv_output_size", "kernel_fits", "check_kernel_fits", "pool_padding_fits",
           "check_pool_padding", "as_generator"]


def as_float_array(value, name: str) -> np.ndarray:
    """Return ``value`` as a floating NumPy array, or raise a clear error.

    Floating arrays keep their dtype. Integer and boolean arrays (the
    tutorial's examples are written with integers) become float64, as NumPy's
    own ``mean`` does, so nothing is rounded. Anything else is refused.
    """
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__} "
                        f"that NumPy cannot read as one ({error})") from None
    if array.dtype.kind == "f":
        return array
    if array.dtype.kind in "biu":
        return array.astype(np.float64)
    raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")


def check_ndim(array: np.ndarray, ndim: int, layout: str, name: str) -> None:
    """Raise ``ValueError`` unless ``array`` has ``ndim`` dimensions."""
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions {layout}, "
                         f"got {array.ndim} dimensions with shape {array.shape}")


def check_grad(grad_out, shape: tuple[int, ...], dtype, name: str) -> np.ndarray:
    """Return ``grad_out`` as an array of ``dtype``, checking it has ``shape``.

    Backward functions take the gradient of whatever came after them; a wrong
    shape there would otherwise surface as a broadcast error deep in NumPy.
    """
    grad_out = as_float_array(grad_out, f"{name} grad_output")
    if grad_out.shape != tuple(shape):
        raise ValueError(f"{name} grad_output must have the output's shape {tuple(shape)}, "
                         f"got {grad_out.shape}")
    return grad_out.astype(dtype, copy=False)


def pair(value, name: str, minimum: int) -> tuple[int, int]:
    """Return ``value`` (an int or an (h, w) pair) as two ints >= ``minimum``.

    This is how ``kernel_size``, ``stride`` and ``padding`` are read, as in
    PyTorch: ``3`` means ``(3, 3)``.
    """
    values = (value, value) if isinstance(value, (int, np.integer)) else value
    try:
        values = tuple(values)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if len(values) != 2 or not all(isinstance(v, (int, np.integer))
                                   and not isinstance(v, bool) for v in values):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(values) < minimum:
        raise ValueError(f"{name} must be {_bound(minimum)}, got {value!r}")
    return int(values[0]), int(values[1])


def _bound(minimum: int) -> str:
    """How an error message says ``>= minimum``."""
    return {0: "non-negative", 1: "positive"}.get(minimum, f"at least {minimum}")


def check_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int >= ``minimum`` (positive by default), or raise.

    For counts such as ``in_channels`` or ``batch_size``: a float or a bool
    is a TypeError, a number too small a ValueError, each naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be {_bound(minimum)}, got {value}")
    return int(value)


def conv_output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Output width (or height) of a convolution or pooling: eq. 4.2 and 4.3.

    ``W2 = (W1 - F + 2P) / S + 1``. When ``W1 - F + 2P`` is not a multiple of
    ``S`` the division floors: the last columns that no window reaches are
    dropped, as in every major framework. Example from the tutorial:
    ``conv_output_size(5, 3, 2, 0) == 2``.
    """
    return (size - kernel_size + 2 * padding) // stride + 1


def kernel_fits(input_hw: tuple[int, int], kernel: tuple[int, int],
                padding: tuple[int, int]) -> bool:
    """Whether a KH x KW kernel fits inside the padded (H, W) input, so that
    eq. 4.2/4.3 give an output of at least one row and one column."""
    (h, w), (kh, kw), (ph, pw) = input_hw, kernel, padding
    return kh <= h + 2 * ph and kw <= w + 2 * pw


def pool_padding_fits(kernel: tuple[int, int], padding: tuple[int, int]) -> bool:
    """PyTorch's pooling rule: padding at most half the kernel (PH <= KH // 2,
    PW <= KW // 2), so that no window is made of padding alone."""
    return padding[0] <= kernel[0] // 2 and padding[1] <= kernel[1] // 2


def check_kernel_fits(input_hw: tuple[int, int], kernel: tuple[int, int],
                      padding: tuple[int, int], name: str) -> None:
    """Raise ``ValueError`` if a KH x KW kernel is larger than the padded (H, W) input.

    Eq. 4.2 would otherwise give an output size of zero or less.
    """
    (h, w), (kh, kw), (ph, pw) = input_hw, kernel, padding
    if not kernel_fits(input_hw, kernel, padding):
        raise ValueError(f"{name}: kernel {kh}x{kw} is larger than the padded input "
                         f"{h + 2 * ph}x{w + 2 * pw} (input {h}x{w}, padding {ph}, {pw})")


def check_pool_padding(kernel: tuple[int, int], padding: tuple[int, int], name: str) -> None:
    """Raise ``ValueError`` unless pooling padding is at most half the kernel.

    PyTorch's rule: with PH <= KH // 2 (and PW likewise) every window holds
    at least one real input and none is made of padding alone.
    """
    if not pool_padding_fits(kernel, padding):
        raise ValueError(f"{name}: padding should be at most half the kernel size, "
                         f"got padding {padding} for kernel_size {kernel}")


def as_generator(rng) -> np.random.Generator:
    """A Generator from a seed, a Generator, or None (fresh OS entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be an int seed, a numpy Generator or None, got {rng!r}")
