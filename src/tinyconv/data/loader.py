"""Feeding a dataset to training: validation split, normalisation, batches, augmentation.

Shape letters: N samples, B batch size, C channels, H height, W width.

Every random choice (the split, each epoch's order, each augmentation) is
drawn from a ``numpy.random.Generator`` the caller passes in; nothing here
touches global random state, so the same seed gives the same run.

A typical epoch::

    rng = np.random.default_rng(seed)
    train_idx, val_idx = train_val_split(len(data), 0.1, rng)
    train, val = data.subset(train_idx), data.subset(val_idx)
    norm = Normalization.fit(train.images)
    for x, y in batches(train, 128, shuffle=True, rng=rng, normalization=norm,
                        augment=Augment()):
        ...  # x float32 (B, C, H, W), y int64 (B,)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import check_int
from ..checks import as_generator

__all__ = ["train_val_split", "Normalization", "Augment", "batches", "shard_bounds"]


def train_val_split(n: int, val_fraction: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Split the indices 0..n-1 of a training set into training and validation parts.

    ``round(n · val_fraction)`` indices, drawn at random by ``rng`` (a
    Generator or an int seed), are held out for validation: the model never
    learns from them, and choices such as early stopping are made on them
    rather than on the test set. Returns ``(train_idx, val_idx)``, two sorted
    int64 arrays that are disjoint and together cover 0..n-1.
    """
    n = check_int(n, "n (the number of samples)")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    n_val = int(round(n * val_fraction))
    if n_val >= n:
        raise ValueError(f"val_fraction {val_fraction} of {n} samples leaves none to train on")
    order = as_generator(rng).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@dataclass(frozen=True)
class Normalization:
    """Maps uint8 pixels to float32 with mean 0 and standard deviation 1 per channel.

    ``mean`` and ``std`` are per-channel tuples of plain floats in units of
    the pixel scaled to [0, 1] (Fashion-MNIST's training set: mean ≈ 0.286,
    std ≈ 0.353), so a model file can store them as they are. A batch
    becomes ``(pixel / 255 - mean[c]) / std[c]``.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self):
        mean = tuple(float(m) for m in np.atleast_1d(self.mean))
        std = tuple(float(s) for s in np.atleast_1d(self.std))
        if len(mean) != len(std):
            raise ValueError(f"mean and std need one value per channel each, "
                             f"got {len(mean)} and {len(std)}")
        if not all(np.isfinite(mean)) or not all(np.isfinite(s) and s > 0 for s in std):
            raise ValueError(f"mean must be finite and std positive, got mean {mean}, std {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def fit(cls, images, chunk: int = 4096) -> Normalization:
        """Measure the per-channel mean and std of uint8 ``images`` (N, C, H, W).

        Pass the training images only, never the test images. A channel that
        is constant gets std 1, so it is shifted but not blown up. The sums
        run in float64 over chunks of ``chunk`` images, which keeps memory
        small for 60,000 images.
        """
        images = _check_uint8_nchw(images, "images")
        if len(images) == 0:
            raise ValueError("cannot fit a normalization to 0 images")
        channels = images.shape[1]
        total, total_sq = np.zeros(channels), np.zeros(channels)
        for start in range(0, len(images), chunk):
            part = images[start:start + chunk].astype(np.float64) / 255.0
            total += part.sum(axis=(0, 2, 3))
            total_sq += np.square(part).sum(axis=(0, 2, 3))
        count = images.size // channels
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        return cls(tuple(mean), tuple(np.where(std > 1e-6, std, 1.0)))

    def __call__(self, batch) -> np.ndarray:
        """The uint8 batch (B, C, H, W) as normalised float32 (B, C, H, W)."""
        batch = _check_uint8_nchw(batch, "batch")
        if batch.shape[1] != len(self.mean):
            raise ValueError(f"batch has {batch.shape[1]} channels, the normalization "
                             f"{len(self.mean)}")
        mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        return (batch.astype(np.float32) * np.float32(1 / 255) - mean) / std


@dataclass(frozen=True)
class Augment:
    """Random small shifts and horizontal flips, drawn per image.

    Each image moves by (dy, dx), each drawn uniformly from
    -max_shift..max_shift (positive dy moves it down, positive dx right);
    pixels moved in from outside are 0, the black background of
    Fashion-MNIST, which is why augmentation runs on uint8 images before
    normalisation. With ``hflip`` each image is also mirrored left-right with
    probability 1/2. Shifted and flipped clothes are still the same clothes,
    so the model learns not to care about a garment's exact position.
    """

    max_shift: int = 2
    hflip: bool = True

    def __post_init__(self):
        check_int(self.max_shift, "max_shift", 0)

    def draw(self, n: int, rng: np.random.Generator):
        """Random ``(dy, dx, flip)`` for ``n`` images: int arrays (n,) and a bool array (n,)."""
        dy = rng.integers(-self.max_shift, self.max_shift + 1, size=n)
        dx = rng.integers(-self.max_shift, self.max_shift + 1, size=n)
        flip = rng.random(n) < 0.5 if self.hflip else np.zeros(n, dtype=bool)
        return dy, dx, flip

    def __call__(self, images, rng: np.random.Generator) -> np.ndarray:
        """``images`` (B, C, H, W) shifted and flipped at random; a new array of the same dtype."""
        return self.apply(images, *self.draw(len(images), rng))

    @staticmethod
    def apply(images, dy, dx, flip) -> np.ndarray:
        """Mirror the images where ``flip``, then shift image i by (dy[i], dx[i]) with zero fill.

        Vectorised over the batch: the loops run over the distinct shift
        values only (at most 2·max_shift + 1 per axis), each moving all the
        images that share it with one slice assignment.
        """
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"images must be (B, C, H, W), got shape {images.shape}")
        dy, dx, flip = np.asarray(dy), np.asarray(dx), np.asarray(flip, bool)
        if not dy.shape == dx.shape == flip.shape == (len(images),):
            raise ValueError(f"dy, dx and flip need one value per image, {len(images)}; got "
                             f"shapes {dy.shape}, {dx.shape} and {flip.shape}")
        mirrored = np.where(flip[:, None, None, None], images[..., ::-1], images)
        return _shift_each(_shift_each(mirrored, dy, axis=2), dx, axis=3)


def _shift_each(images: np.ndarray, shifts: np.ndarray, axis: int) -> np.ndarray:
    """Image i of ``images`` moved by ``shifts[i]`` along ``axis``, zero filled."""
    out = np.empty_like(images)
    for shift in np.unique(shifts):
        chosen = np.flatnonzero(shifts == shift)
        out[chosen] = _shift(images[chosen], int(shift), axis)
    return out


def _shift(images: np.ndarray, shift: int, axis: int) -> np.ndarray:
    """``images`` moved by ``shift`` pixels along ``axis`` (2: down, 3: right), zero filled."""
    out = np.zeros_like(images)
    size = images.shape[axis]
    if abs(shift) >= size:
        return out
    source = [slice(None)] * 4
    target = [slice(None)] * 4
    source[axis] = slice(max(0, -shift), size - max(0, shift))
    target[axis] = slice(max(0, shift), size - max(0, -shift))
    out[tuple(target)] = images[tuple(source)]
    return out


def data_size(data) -> int:
    """The number of images in a Dataset or an (images, labels) pair."""
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise TypeError(f"data must be a Dataset or an (images, labels) pair, "
                            f"got a sequence of {len(data)} items")
        return len(data[1])
    return len(data)


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """Worker ``rank``'s share of a batch of ``n`` among ``size`` workers: (start, stop).

    Contiguous and as even as can be: rank r takes samples
    ⌊n·r/size⌋ .. ⌊n·(r+1)/size⌋ - 1, so shares differ by at most one sample
    (and are empty when n < size), and the shares of ranks 0..size-1 cover
    the batch in order.
    """
    return n * rank // size, n * (rank + 1) // size


def batches(data, batch_size: int, *, shuffle: bool, rng=None, normalization=None,
            augment: Augment | None = None, shard: tuple[int, int] | None = None):
    """Yield ``(x, y)`` batches covering every sample of ``data`` exactly once.

    ``data`` is a :class:`tinyconv.data.datasets.Dataset` or an ``(images, labels)``
    pair with images uint8 (N, C, H, W). ``x`` is float32 (B, C, H, W),
    augmented by ``augment`` (if given) and then normalised by
    ``normalization`` (``None``: pixels scaled to [0, 1]); ``y`` is int64
    (B,). The last batch holds the N mod batch_size samples left over, if any.

    With ``shuffle`` the order is a fresh permutation drawn from ``rng`` at
    each call, that is each epoch. ``rng`` must then be a
    ``numpy.random.Generator`` (not a seed, which would repeat one order
    every epoch); the same Generator state gives the same batches.

    ``shard = (rank, size)`` yields only worker ``rank``'s share of each
    batch (:func:`shard_bounds`) of ``batch_size`` images: the order and the
    augmentation are still drawn for the whole batch, so every worker draws
    the same numbers and each image is augmented as one process would.
    """
    images, labels = (data.images, data.labels) if hasattr(data, "images") else data
    images = _check_uint8_nchw(images, "images")
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
    check_int(batch_size, "batch_size")
    if (shuffle or augment is not None) and not isinstance(rng, np.random.Generator):
        raise TypeError(f"shuffling and augmenting need rng to be a numpy Generator "
                        f"(np.random.default_rng(seed)), got {rng!r}")
    order = rng.permutation(len(images)) if shuffle else np.arange(len(images))
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        part = slice(None) if shard is None else slice(*shard_bounds(len(chosen), *shard))
        x = images[chosen[part]]
        if augment is not None:
            x = augment.apply(x, *(draw[part] for draw in augment.draw(len(chosen), rng)))
        if normalization is None:
            x = x.astype(np.float32) / np.float32(255.0)
        else:
            x = normalization(x)
        yield x, labels[chosen[part]].astype(np.int64)


def _check_uint8_nchw(images, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"{name} must be uint8 of shape (N, C, H, W), "
                         f"got {images.dtype} of shape {images.shape}")
    return images
