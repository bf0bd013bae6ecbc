"""Validation split, normalisation, batches and augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from tinyconv.data.datasets import Dataset
from tinyconv.data.loader import Augment, Normalization, batches, train_val_split


def toy_dataset(n: int = 23, channels: int = 1) -> Dataset:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, channels, 5, 4), dtype=np.uint8)
    return Dataset(images, np.arange(n) % 3, ["a", "b", "c"], "toy")


# -- train_val_split -----------------------------------------------------------------------

def test_split_is_disjoint_complete_and_sized():
    train, val = train_val_split(1000, 0.1, np.random.default_rng(0))
    assert len(val) == 100 and len(train) == 900
    assert not set(train) & set(val)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(1000))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    # A random draw, not simply the last tenth.
    assert val.max() - val.min() > 500


def test_split_is_deterministic_per_seed():
    first = train_val_split(500, 0.2, np.random.default_rng(7))
    again = train_val_split(500, 0.2, np.random.default_rng(7))
    other = train_val_split(500, 0.2, np.random.default_rng(8))
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])
    np.testing.assert_array_equal(train_val_split(500, 0.2, 7)[1], first[1])


def test_split_edges_and_bad_input():
    train, val = train_val_split(10, 0.0, 0)
    assert len(val) == 0 and len(train) == 10
    for n, fraction in ((10, 1.0), (10, -0.1), (0, 0.1), (1, 0.9)):
        with pytest.raises(ValueError):
            train_val_split(n, fraction, 0)
    with pytest.raises(TypeError, match=r"n \(the number of samples\) must be an int"):
        train_val_split(10.0, 0.1, 0)


# -- Normalization -------------------------------------------------------------------------

def test_fit_matches_numpy_per_channel():
    images = toy_dataset(50, channels=3).images
    norm = Normalization.fit(images, chunk=7)  # chunks that do not divide N
    scaled = images.astype(np.float64) / 255
    np.testing.assert_allclose(norm.mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(norm.std, scaled.std(axis=(0, 2, 3)), rtol=1e-9)
    assert all(type(v) is float for v in norm.mean + norm.std)
    out = norm(images)
    assert out.dtype == np.float32 and out.shape == images.shape
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-5)


def test_normalization_by_hand():
    norm = Normalization(mean=0.5, std=0.25)
    assert norm.mean == (0.5,) and norm.std == (0.25,)
    batch = np.array([0, 51, 255], np.uint8).reshape(1, 1, 1, 3)
    np.testing.assert_allclose(norm(batch).ravel(), [-2.0, -1.2, 2.0], rtol=1e-6)


def test_constant_channel_and_bad_input():
    flat = np.full((4, 1, 3, 3), 9, np.uint8)
    assert Normalization.fit(flat).std == (1.0,)
    with pytest.raises(ValueError, match="std positive"):
        Normalization((0.1,), (0.0,))
    with pytest.raises(ValueError, match="one value per channel"):
        Normalization((0.1, 0.2), (0.3,))
    with pytest.raises(ValueError, match="uint8 of shape"):
        Normalization.fit(flat.astype(np.float32))
    with pytest.raises(ValueError, match="3 channels"):
        Normalization((0.1,), (0.2,))(np.zeros((1, 3, 2, 2), np.uint8))


# -- batches -------------------------------------------------------------------------------

def test_an_epoch_covers_every_sample_once():
    data = toy_dataset(23)
    seen, sizes = [], []
    flat = data.images.reshape(len(data), -1).astype(np.float32) / 255
    for x, y in batches(data, 5, shuffle=True, rng=np.random.default_rng(0), normalization=None):
        assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape[1:] == (1, 5, 4)
        sizes.append(len(x))
        # Find each batch image in the dataset to learn which samples came.
        for image, label in zip(x.reshape(len(x), -1), y):
            index = int(np.flatnonzero((flat == image).all(axis=1))[0])
            assert data.labels[index] == label
            seen.append(index)
    assert sizes == [5, 5, 5, 5, 3]
    assert sorted(seen) == list(range(23))


def orders(data, rng, epochs=2):
    """The label sequences of ``epochs`` epochs (labels made unique to identify samples)."""
    return [np.concatenate([y for _, y in batches(data, 4, shuffle=True, rng=rng,
                                                  normalization=None)])
            for _ in range(epochs)]


def test_fresh_permutation_each_epoch_and_same_seed_same_order():
    data = Dataset(np.zeros((30, 1, 2, 2), np.uint8), np.arange(30), [str(i) for i in range(30)],
                   "ids")
    first, second = orders(data, np.random.default_rng(3))
    assert not np.array_equal(first, second)
    assert sorted(first) == sorted(second) == list(range(30))
    again = orders(data, np.random.default_rng(3))
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)


def test_no_shuffle_keeps_order_and_arrays_work():
    images = np.arange(6 * 4, dtype=np.uint8).reshape(6, 1, 2, 2)
    labels = np.arange(6)
    norm = Normalization((0.0,), (1.0,))
    got = list(batches((images, labels), 4, shuffle=False, normalization=norm))
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), labels)
    np.testing.assert_allclose(got[0][0], images[:4] / 255, rtol=1e-6)


def test_batches_refuse_bad_input():
    data = toy_dataset(4)
    with pytest.raises(TypeError, match="numpy Generator"):
        next(batches(data, 2, shuffle=True, rng=0))
    with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
        next(batches(data, 0, shuffle=False))
    with pytest.raises(TypeError, match="batch_size must be an int, got 2.5"):
        next(batches(data, 2.5, shuffle=False))
    with pytest.raises(ValueError, match="labels must have shape"):
        next(batches((data.images, data.labels[:3]), 2, shuffle=False))


# -- Augment -------------------------------------------------------------------------------

def tiny_image() -> np.ndarray:
    """A 1x1x4x5 image whose pixels are 1..20, so every position is recognisable."""
    return np.arange(1, 21, dtype=np.uint8).reshape(1, 1, 4, 5)


def test_shift_moves_down_and_right_with_zero_fill():
    image = tiny_image()
    down_right = Augment.apply(image, [1], [2], [False])
    expected = np.array([[0, 0, 0, 0, 0],
                         [0, 0, 1, 2, 3],
                         [0, 0, 6, 7, 8],
                         [0, 0, 11, 12, 13]], np.uint8)
    np.testing.assert_array_equal(down_right[0, 0], expected)
    up_left = Augment.apply(image, [-1], [-1], [False])
    expected = np.array([[7, 8, 9, 10, 0],
                         [12, 13, 14, 15, 0],
                         [17, 18, 19, 20, 0],
                         [0, 0, 0, 0, 0]], np.uint8)
    np.testing.assert_array_equal(up_left[0, 0], expected)
    np.testing.assert_array_equal(Augment.apply(image, [0], [0], [False]), image)


def test_flip_mirrors_left_right_before_the_shift():
    image = tiny_image()
    np.testing.assert_array_equal(Augment.apply(image, [0], [0], [True])[0, 0],
                                  image[0, 0, :, ::-1])
    flipped_then_shifted = Augment.apply(image, [0], [1], [True])[0, 0]
    np.testing.assert_array_equal(flipped_then_shifted[:, 1:], image[0, 0, :, :0:-1])
    np.testing.assert_array_equal(flipped_then_shifted[:, 0], 0)


def test_each_image_gets_its_own_transform():
    rng = np.random.default_rng(0)
    images = np.repeat(tiny_image(), 200, axis=0)
    augment = Augment(max_shift=2, hflip=True)
    dy, dx, flip = augment.draw(200, np.random.default_rng(5))
    assert set(dy) == set(dx) == {-2, -1, 0, 1, 2} and 0.3 < flip.mean() < 0.7
    out = Augment.apply(images, dy, dx, flip)
    for i in range(200):  # against np.roll plus zeroing, one image at a time
        reference = images[i, 0, :, ::-1] if flip[i] else images[i, 0]
        reference = np.roll(reference, (dy[i], dx[i]), axis=(0, 1))
        if dy[i] > 0:
            reference[:dy[i]] = 0
        elif dy[i] < 0:
            reference[dy[i]:] = 0
        if dx[i] > 0:
            reference[:, :dx[i]] = 0
        elif dx[i] < 0:
            reference[:, dx[i]:] = 0
        np.testing.assert_array_equal(out[i, 0], reference)
    called = augment(images, rng)
    assert called.shape == images.shape and called.dtype == np.uint8


def test_augmented_batches_keep_labels_and_shapes():
    data = toy_dataset(10)
    rng = np.random.default_rng(0)
    got = list(batches(data, 4, shuffle=True, rng=rng, normalization=None,
                       augment=Augment(max_shift=1, hflip=False)))
    assert [x.shape for x, _ in got] == [(4, 1, 5, 4), (4, 1, 5, 4), (2, 1, 5, 4)]
    assert sorted(np.concatenate([y for _, y in got])) == sorted(data.labels)
    no_change = Augment(max_shift=0, hflip=False)
    plain = list(batches(data, 4, shuffle=False, rng=rng, normalization=None, augment=no_change))
    np.testing.assert_array_equal(plain[0][0], data.images[:4] / np.float32(255))


def test_augment_bad_input():
    with pytest.raises(ValueError, match="max_shift must be non-negative, got -1"):
        Augment(max_shift=-1)
    with pytest.raises(TypeError, match="max_shift must be an int"):
        Augment(max_shift=1.5)
    with pytest.raises(ValueError, match="one value per image"):
        Augment.apply(tiny_image(), [0, 1], [0], [False])
