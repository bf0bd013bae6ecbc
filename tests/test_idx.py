"""The IDX reader and writer: round trips, every kind of damaged file, the real files."""

from __future__ import annotations

import gzip
import struct
import tracemalloc

import numpy as np
import pytest

from tinyconv.data.idx import MAX_GZIP_RATIO, IdxError, read_idx, write_idx


def idx_bytes(type_code: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    """An IDX file written out by hand from the format's definition."""
    return bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("name", ["data.idx", "data.idx.gz"])
def test_round_trip(tmp_path, dtype, name):
    array = (np.arange(2 * 3 * 4).reshape(2, 3, 4) * 7 - 20).astype(dtype)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == array.dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_writer_matches_the_format_byte_for_byte(tmp_path):
    write_idx(tmp_path / "a", np.array([[1, 2, 3], [4, 5, 6]], np.int16))
    expected = idx_bytes(0x0B, (2, 3), struct.pack(">6h", 1, 2, 3, 4, 5, 6))
    assert (tmp_path / "a").read_bytes() == expected
    write_idx(tmp_path / "a.gz", np.array([[1, 2, 3], [4, 5, 6]], np.int16))
    assert gzip.decompress((tmp_path / "a.gz").read_bytes()) == expected


def test_gzip_is_detected_by_content_not_name(tmp_path):
    payload = idx_bytes(0x08, (2, 2), bytes([1, 2, 3, 4]))
    (tmp_path / "plain.gz").write_bytes(payload)
    (tmp_path / "packed").write_bytes(gzip.compress(payload))
    for name in ("plain.gz", "packed"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), [[1, 2], [3, 4]])


@pytest.mark.parametrize("content, message", [
    (b"", "only 0 bytes"),
    (b"\x00\x00", "only 2 bytes"),
    (b"PK\x03\x04" + bytes(20), "expected 00 00 <type> <ndim>"),
    (b"\x01\x00\x08\x01" + bytes(5), "expected 00 00 <type> <ndim>"),
    (idx_bytes(0x07, (3,), bytes(3)), "unknown IDX data type code 0x07"),
    (idx_bytes(0x08, (), b""), "0 dimensions"),
    (bytes([0, 0, 8, 3]) + struct.pack(">2I", 10, 28), "truncated IDX header"),
    (idx_bytes(0x08, (10, 28, 28), bytes(10 * 28 * 28 - 1)), "truncated"),
    (idx_bytes(0x08, (10, 28, 28), bytes(10 * 28 * 28 + 1)), "too long"),
    (idx_bytes(0x0C, (5,), bytes(5)), "truncated"),
    (idx_bytes(0x08, (3, 4), bytes(10)), "dimensions (3, 4)"),
])
def test_damaged_files_say_what_is_wrong(tmp_path, content, message):
    for path, data in ((tmp_path / "bad", content), (tmp_path / "bad.gz", gzip.compress(content))):
        path.write_bytes(data)
        with pytest.raises(IdxError) as caught:
            read_idx(path)
        assert str(path) in str(caught.value)
        assert message in str(caught.value)


def test_cut_gzip_stream(tmp_path):
    packed = gzip.compress(idx_bytes(0x08, (100,), bytes(range(100))))
    (tmp_path / "cut.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(IdxError, match="gzip data is damaged or cut short"):
        read_idx(tmp_path / "cut.gz")


def test_idx_error_is_a_value_error_and_missing_file_is_file_not_found(tmp_path):
    assert issubclass(IdxError, ValueError)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nothing-here")


def test_writer_refuses_what_idx_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="dtype uint16"):
        write_idx(tmp_path / "a", np.zeros(3, np.uint16))
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "a", np.uint8(3))
    assert list(tmp_path.iterdir()) == []


def test_real_fashion_mnist_files(fashion_mnist_dir):
    images = read_idx(fashion_mnist_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(fashion_mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    # Fashion-MNIST's test set has exactly 1000 images of each of its ten classes.
    np.testing.assert_array_equal(np.bincount(labels), [1000] * 10)
    train_labels = read_idx(fashion_mnist_dir / "train-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(np.bincount(train_labels), [6000] * 10)


def test_a_gzip_bomb_is_refused_before_it_is_unpacked(tmp_path):
    """128 MiB of zero pixels gzip to about 128 KB: far more than real data unpacks to."""
    size = 128 << 20
    packer = gzip.GzipFile(tmp_path / "bomb.gz", "wb", mtime=0)
    packer.write(bytes([0, 0, 0x08, 1]) + struct.pack(">I", size))
    block = bytes(1 << 20)
    for _ in range(size >> 20):
        packer.write(block)
    packer.close()
    on_disk = (tmp_path / "bomb.gz").stat().st_size
    assert on_disk < size // 500
    tracemalloc.start()
    try:
        with pytest.raises(IdxError, match=rf"need 134,217,736 bytes in all, more than "
                                           rf"{MAX_GZIP_RATIO} times the gzipped file's "
                                           rf"{on_disk:,} bytes: a gzip bomb"):
            read_idx(tmp_path / "bomb.gz")
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_what_the_file_holds(tmp_path):
    """A header that declares 4 GB ahead of 10 real bytes allocates nothing for them."""
    declared = idx_bytes(0x0E, (1 << 16, 1 << 13), bytes(10))
    for path, data in ((tmp_path / "big", declared), (tmp_path / "big.gz",
                                                      gzip.compress(declared))):
        path.write_bytes(data)
        tracemalloc.start()
        try:
            with pytest.raises(IdxError, match=r"dimensions \(65536, 8192\) of float64 need "
                                               r"4,294,967,308 bytes in all"):
                read_idx(path)
            assert tracemalloc.get_traced_memory()[1] < 1 << 20
        finally:
            tracemalloc.stop()
