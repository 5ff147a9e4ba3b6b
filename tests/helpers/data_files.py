"""Data-set files in their real formats (IDX, CIFAR10 binary batches), written
into a test's tmp_path for the readers and the registry to read."""

import gzip
import os

import numpy as np

IDX_TYPE = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def write_idx(path, arr):
    arr = np.asarray(arr)
    if arr.dtype.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder(">"))
    header = bytes([0, 0, IDX_TYPE[arr.dtype], arr.ndim])
    header += np.asarray(arr.shape, ">u4").tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + arr.tobytes())


def write_mnist_dir(directory, n_train=300, n_test=50, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    os.makedirs(directory, exist_ok=True)
    for stem, arr in arrays.items():
        write_idx(os.path.join(directory, stem + (".gz" if gz else "")), arr)
    return arrays


def cifar_records(images_hwc, labels):
    """Encodes uint8 (N,32,32,3) images in the CIFAR10 binary record layout."""
    planes = images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), -1)
    return np.concatenate([labels[:, None].astype(np.uint8), planes], axis=1).tobytes()


def write_cifar_dir(directory, per_batch=40, n_test=30, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    xs, ys = [], []
    # Channels with very different statistics, to exercise per-channel stats.
    lo, hi = np.array([0, 100, 200]), np.array([50, 256, 230])

    def draw(n):
        x = rng.integers(lo, hi, (n, 32, 32, 3)).astype(np.uint8)
        return x, rng.integers(0, 10, n).astype(np.uint8)

    for i in range(1, 6):
        x, y = draw(per_batch)
        xs.append(x), ys.append(y)
        with open(os.path.join(directory, f"data_batch_{i}.bin"), "wb") as f:
            f.write(cifar_records(x, y))
    x_test, y_test = draw(n_test)
    with open(os.path.join(directory, "test_batch.bin"), "wb") as f:
        f.write(cifar_records(x_test, y_test))
    return np.concatenate(xs), np.concatenate(ys), x_test, y_test
