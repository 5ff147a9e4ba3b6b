"""Readers of the datasets' files: IDX (MNIST), CIFAR-10 batches, TFDS.

Each reader returns a `Raw`: unsplit, unnormalised train and test arrays,
images NHWC in the file's own dtype. Files are parsed with numpy alone, so
reading needs no network and no TensorFlow; tensorflow-datasets is imported
only when `load_tfds` is called. `lth_keras.datasets.registry` decides which
reader to try for a dataset, and splits and normalises what it returns.

Example:
    >>> raw = read_idx_dir("/usr/share/datasets/fashion-mnist")  # doctest: +SKIP
    >>> raw.x_train.shape, raw.x_train.dtype                             # doctest: +SKIP
    ((60000, 28, 28, 1), dtype('uint8'))
"""

from __future__ import annotations

import gzip
import os
from typing import NamedTuple

import numpy as np

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"
CIFAR10_SUBDIR = "cifar-10-batches-bin"

_CIFAR_SIDE = 32
_CIFAR_RECORD = 1 + 3 * _CIFAR_SIDE * _CIFAR_SIDE

# IDX type codes (third magic byte). Multi-byte types are big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class Raw(NamedTuple):
    """Unsplit, unnormalised arrays: images NHWC (any numeric dtype)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# --------------------------------------------------------------------------
# File formats
# --------------------------------------------------------------------------


def read_idx(path: str) -> np.ndarray:
    """Parses one IDX file (gzipped if the name ends in ``.gz``).

    Format: magic ``00 00 <type> <ndim>``, then ``ndim`` big-endian uint32
    dimensions, then the data in row-major order.

    Example:
        >>> read_idx("/usr/share/datasets/fashion-mnist/"
        ...          "t10k-labels-idx1-ubyte.gz").shape  # doctest: +SKIP
        (10000,)
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type 0x{type_code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    count = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != count * dtype.itemsize:
        raise ValueError(
            f"{path}: header says {dims} x {dtype.itemsize} bytes, "
            f"file has {len(data) - header} data bytes"
        )
    arr = np.frombuffer(data, dtype, count=count, offset=header).reshape(dims)
    # Native byte order, and writable (frombuffer on bytes is read-only).
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _find_idx(directory: str, stem: str) -> str | None:
    # Also accept the "train-images.idx3-ubyte" spelling some mirrors use.
    dotted = stem.replace("-idx", ".idx")
    for name in (stem + ".gz", stem, dotted + ".gz", dotted):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def read_idx_dir(directory: str) -> Raw:
    """Reads MNIST-style IDX train/t10k images and labels from a directory."""
    paths = {stem: _find_idx(directory, stem) for stem in IDX_FILES}
    missing = [stem + "[.gz]" for stem, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(f"{directory}: missing {', '.join(missing)}")
    x_train, y_train, x_test, y_test = (read_idx(paths[s]) for s in IDX_FILES)
    for x, path in ((x_train, paths[IDX_FILES[0]]), (x_test, paths[IDX_FILES[2]])):
        if x.ndim != 3:
            raise ValueError(f"{path}: expected (N, H, W) images, got {x.shape}")
    return Raw(x_train[..., None], y_train, x_test[..., None], y_test)


def read_cifar10_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Parses a CIFAR10 binary batch into (uint8 NHWC images, uint8 labels).

    Each record is 1 label byte then 3072 pixel bytes: the 1024 red values,
    then green, then blue, each a row-major 32x32 plane.
    """
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _CIFAR_RECORD:
        raise ValueError(
            f"{path}: size {raw.size} is not a positive multiple of the "
            f"{_CIFAR_RECORD}-byte CIFAR10 record"
        )
    records = raw.reshape(-1, _CIFAR_RECORD)
    images = records[:, 1:].reshape(-1, 3, _CIFAR_SIDE, _CIFAR_SIDE)
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1)), records[:, 0].copy()


def read_cifar10_dir(directory: str) -> Raw:
    """Reads CIFAR10 binary batches from ``directory`` or its
    ``cifar-10-batches-bin`` subfolder (as unpacked from the official tarball)."""
    names = CIFAR10_TRAIN_FILES + (CIFAR10_TEST_FILE,)
    for candidate in (directory, os.path.join(directory, CIFAR10_SUBDIR)):
        if all(os.path.isfile(os.path.join(candidate, n)) for n in names):
            break
    else:
        raise FileNotFoundError(
            f"{directory} (or its {CIFAR10_SUBDIR}/ subfolder): missing "
            f"some of {', '.join(names)}"
        )
    train = [read_cifar10_batch(os.path.join(candidate, n)) for n in CIFAR10_TRAIN_FILES]
    x_test, y_test = read_cifar10_batch(os.path.join(candidate, CIFAR10_TEST_FILE))
    return Raw(
        np.concatenate([x for x, _ in train]),
        np.concatenate([y for _, y in train]),
        x_test,
        y_test,
    )


# --------------------------------------------------------------------------
# tensorflow-datasets
# --------------------------------------------------------------------------

# Reachability check before a tfds download: offline, tfds retries for
# minutes before failing. Set to None to skip the check.
TFDS_PROBE_HOST = ("storage.googleapis.com", 443)
TFDS_PROBE_TIMEOUT_S = 5.0


def load_tfds(name: str, data_dir: str | None):
    """The ``train`` and ``test`` splits of a tensorflow-datasets dataset.

    Isolated so that tests can replace it: a real call may try to download.
    Offline and unprepared, it fails within `TFDS_PROBE_TIMEOUT_S` seconds.

    Args:
        name: the TFDS name, e.g. ``"mnist"``.
        data_dir: a TFDS data dir (None: TFDS's default).

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}``, tensors
        or arrays; `raw_from_tfds` turns it into a `Raw`.

    Raises:
        ConnectionError: not prepared in ``data_dir`` and offline.

    Example:
        >>> raw = raw_from_tfds(load_tfds("mnist", None))  # doctest: +SKIP
    """
    import tensorflow_datasets as tfds  # slow import; only when needed

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared() and TFDS_PROBE_HOST is not None:
        import socket

        try:
            socket.create_connection(TFDS_PROBE_HOST, timeout=TFDS_PROBE_TIMEOUT_S).close()
        except OSError as e:
            raise ConnectionError(
                f"not prepared in {builder.data_dir} and offline "
                f"({TFDS_PROBE_HOST[0]} unreachable: {e})"
            ) from e
    return tfds.load(name, data_dir=data_dir, batch_size=-1, as_supervised=True)


def raw_from_tfds(result) -> Raw:
    """`load_tfds`'s mapping of (image, label) pairs as numpy `Raw` arrays.

    Raises:
        ValueError: ``result`` has no ``train`` and ``test`` pairs.

    Example:
        >>> z = np.zeros((2, 1, 1, 1))
        >>> raw_from_tfds({"train": (z, [0, 1]), "test": (z, [1, 0])}).y_test
        array([1, 0])
    """
    try:
        x_train, y_train = result["train"]
        x_test, y_test = result["test"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            "expected a mapping with 'train' and 'test' (image, label) pairs"
        ) from e
    return Raw(*(np.asarray(a) for a in (x_train, y_train, x_test, y_test)))
