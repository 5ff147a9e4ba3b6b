"""Tests for lth_keras.datasets.readers: the IDX and CIFAR10 binary formats,
and the tensorflow-datasets source failing fast when offline.

Real-format files are written into tmp_path; tensorflow-datasets is never
contacted.
"""

import numpy as np
import pytest

from lth_keras import datasets
from lth_keras.datasets import readers
from tests.helpers.data_files import cifar_records, write_idx


# ------------------------------------------------------------------ IDX


@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize("dtype", [np.uint8, ">i4", ">f4"])
def test_idx_round_trip(tmp_path, suffix, dtype):
    rng = np.random.default_rng(1)
    arr = (rng.standard_normal((7, 5, 3)) * 100).astype(dtype)
    if np.dtype(dtype) == np.uint8:
        arr = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    path = str(tmp_path / ("x-idx3-ubyte" + suffix))
    write_idx(path, arr)
    got = datasets.read_idx(path)
    assert got.shape == (7, 5, 3)
    np.testing.assert_array_equal(got, arr)
    assert got.dtype.isnative


def test_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="magic"):
        datasets.read_idx(str(bad))
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + np.asarray([10], ">u4").tobytes() + b"\x00" * 3)
    with pytest.raises(ValueError, match="10"):
        datasets.read_idx(str(short))


# ------------------------------------------------------------------ CIFAR10


def test_cifar_batch_pixel_layout(tmp_path):
    images = np.zeros((2, 32, 32, 3), np.uint8)
    images[1, 3, 7, 0] = 11  # R at row 3, col 7
    images[1, 30, 2, 1] = 22  # G
    images[0, 0, 31, 2] = 33  # B
    rec = bytearray(cifar_records(images, np.array([4, 9])))
    # Independently of cifar_records: the byte offsets the format specifies.
    assert rec[3073 + 1 + 3 * 32 + 7] == 11
    assert rec[3073 + 1 + 1024 + 30 * 32 + 2] == 22
    assert rec[1 + 2048 + 31] == 33
    path = tmp_path / "b.bin"
    path.write_bytes(bytes(rec))
    x, y = datasets.read_cifar10_batch(str(path))
    assert x.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(y, [4, 9])
    assert x[1, 3, 7, 0] == 11 and x[1, 30, 2, 1] == 22 and x[0, 0, 31, 2] == 33
    assert x.sum() == 11 + 22 + 33

    path.write_bytes(bytes(rec[:-1]))
    with pytest.raises(ValueError, match="3073"):
        datasets.read_cifar10_batch(str(path))


def test_real_tfds_fails_fast_when_unprepared_and_offline(tmp_path, monkeypatch):
    # The real tfds path, with the reachability probe aimed at a closed
    # local port: must fail within seconds instead of retrying a download.
    monkeypatch.setattr(readers, "TFDS_PROBE_HOST", ("127.0.0.1", 1))
    with pytest.raises(datasets.DataUnavailableError) as e:
        datasets.load("cifar10", tfds_data_dir=str(tmp_path))
    msg = str(e.value)
    assert "tensorflow-datasets 'cifar10'" in msg and "not prepared" in msg
    assert str(tmp_path) in msg
