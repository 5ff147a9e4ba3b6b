"""Tests for lth_keras.datasets.

Real-format files (IDX, CIFAR10 binary batches) are written into tmp_path;
only the slow test reads the real Debian Fashion-MNIST. tensorflow-datasets
is never contacted: `readers.load_tfds` is replaced where a test reaches that source.
"""

import gzip
import os

import numpy as np
import pytest

from lth_keras import datasets
from lth_keras.datasets import readers, registry

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


@pytest.fixture
def no_tfds(monkeypatch):
    """Makes the tensorflow-datasets source fail fast, recording calls."""
    calls = []

    def fail(name, data_dir):
        calls.append((name, data_dir))
        raise ConnectionError("offline in tests")

    monkeypatch.setattr(readers, "load_tfds", fail)
    return calls


def to_raw_uint8(ds):
    """Undoes normalisation of random uint8 data (which spans 0..255) to
    identify examples: returns flattened uint8 train, val, test rows."""
    allx = np.concatenate([ds.x_train, ds.x_val, ds.x_test]).astype(np.float64)
    lo, hi = allx.min(), allx.max()
    back = [np.rint((x - lo) / (hi - lo) * 255).astype(np.uint8).reshape(len(x), -1)
            for x in (ds.x_train, ds.x_val, ds.x_test)]
    return tuple(back)


def row_keys(x):
    return {r.tobytes() for r in x.reshape(len(x), -1)}


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


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_data_dir(tmp_path, gz, no_tfds):
    raw = write_mnist_dir(tmp_path, n_train=300, n_test=50, gz=gz)
    ds = datasets.load("mnist", data_dir=str(tmp_path), validation_size=60, seed=3)
    assert not no_tfds
    assert ds.x_train.shape == (240, 28, 28, 1) and ds.x_train.dtype == np.float32
    assert ds.x_val.shape == (60, 28, 28, 1)
    assert ds.x_test.shape == (50, 28, 28, 1)
    assert ds.y_train.dtype == np.int32 and ds.input_shape == (28, 28, 1)
    assert ds.num_classes == 10 and not ds.augment
    assert str(tmp_path) in ds.source

    # Normalisation uses the statistics of the *training split* only.
    tr, va, te = to_raw_uint8(ds)
    np.testing.assert_array_equal(te, raw["t10k-images-idx3-ubyte"].reshape(50, -1))
    kept = tr.astype(np.float64)
    expected = (raw["t10k-images-idx3-ubyte"][..., None] - kept.mean()) / kept.std()
    np.testing.assert_allclose(ds.x_test, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ds.y_test, raw["t10k-labels-idx1-ubyte"])
    assert abs(float(ds.x_val.mean())) > 1e-6 or abs(float(ds.x_val.std()) - 1) > 1e-6


def test_debian_dir_used_for_fashion_mnist(tmp_path, monkeypatch, no_tfds):
    write_mnist_dir(tmp_path / "deb", n_train=120, n_test=20, gz=False)
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "deb"))
    ds = datasets.load("fashion_mnist", validation_size=20)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (100, 20, 20)
    assert str(tmp_path / "deb") in ds.source
    assert not no_tfds
    # ... but only for fashion_mnist.
    with pytest.raises(datasets.DataUnavailableError):
        datasets.load("mnist", validation_size=20)


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


@pytest.mark.parametrize("subdir", [False, True])
def test_cifar10_from_data_dir(tmp_path, subdir, no_tfds):
    where = tmp_path / "cifar-10-batches-bin" if subdir else tmp_path
    x_train, y_train, x_test, y_test = write_cifar_dir(where)
    ds = datasets.load("cifar10", data_dir=str(tmp_path), validation_size=50, seed=0)
    assert ds.x_train.shape == (150, 32, 32, 3) and ds.x_val.shape == (50, 32, 32, 3)
    assert ds.x_test.shape == (30, 32, 32, 3)
    assert ds.augment and ds.input_shape == (32, 32, 3)
    np.testing.assert_array_equal(ds.y_test, y_test)
    # Per-channel normalisation from the training split only.
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(ds.x_train.std(axis=(0, 1, 2)), 1, atol=1e-4)
    assert not np.allclose(ds.x_val.mean(axis=(0, 1, 2)), 0, atol=1e-6)
    # Each channel is an exact affine map of its raw values, with its own
    # scale (the raw channels' spreads differ ~5x).
    for c in range(3):
        slope, icpt = np.polyfit(x_test[..., c].ravel(), ds.x_test[..., c].ravel(), 1)
        np.testing.assert_allclose(
            ds.x_test[..., c], slope * x_test[..., c] + icpt, atol=1e-4)
        assert abs(slope * x_train[..., c].std() - 1) < 0.05


# ------------------------------------------------------------------ splits


def test_validation_split_disjoint_and_seeded():
    kw = dict(validation_size=300, synthetic_sizes=(1000, 50))
    a = datasets.load("synthetic", seed=0, **kw)
    a2 = datasets.load("synthetic", seed=0, **kw)
    np.testing.assert_array_equal(a.x_val, a2.x_val)
    np.testing.assert_array_equal(a.y_train, a2.y_train)
    tr, va = row_keys(a.x_train), row_keys(a.x_val)
    assert len(tr) == 700 and len(va) == 300 and not tr & va


def test_validation_split_differs_per_seed(tmp_path, no_tfds):
    raw = write_mnist_dir(tmp_path, n_train=200, n_test=10)
    raw_rows = raw["train-images-idx3-ubyte"].reshape(200, -1)
    index = {r.tobytes(): i for i, r in enumerate(raw_rows)}
    val_sets = {}
    for seed in (0, 1, 0):
        ds = datasets.load("mnist", data_dir=str(tmp_path), validation_size=50, seed=seed)
        tr, va, _ = to_raw_uint8(ds)
        tr_idx = [index[r.tobytes()] for r in tr]
        va_idx = [index[r.tobytes()] for r in va]
        assert len(set(va_idx)) == 50 and len(set(tr_idx)) == 150
        assert sorted(tr_idx + va_idx) == list(range(200))
        np.testing.assert_array_equal(ds.y_val, raw["train-labels-idx1-ubyte"][va_idx])
        np.testing.assert_array_equal(ds.y_train, raw["train-labels-idx1-ubyte"][tr_idx])
        if seed in val_sets:
            assert val_sets[seed] == va_idx  # deterministic
        val_sets[seed] = va_idx
    assert set(val_sets[0]) != set(val_sets[1])


@pytest.mark.parametrize("bad", [-1, 1000, 5000, 2.5])
def test_validation_size_checked(bad):
    with pytest.raises(ValueError, match="validation_size"):
        datasets.load("synthetic", validation_size=bad, synthetic_sizes=(1000, 10))


def test_validation_size_zero_allowed():
    ds = datasets.load("synthetic", validation_size=0, synthetic_sizes=(100, 10))
    assert ds.x_train.shape[0] == 100 and ds.x_val.shape == (0, 28, 28, 1)


# ------------------------------------------------------------------ errors


def test_unknown_name():
    with pytest.raises(ValueError, match="name") as e:
        datasets.load("imagenet")
    for known in ("mnist", "fashion_mnist", "cifar10", "synthetic"):
        assert known in str(e.value)
    assert set(datasets.DATASETS) == {"mnist", "fashion_mnist", "cifar10", "synthetic"}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mnist", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
        ("fashion_mnist", ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]),
        ("cifar10", ["data_batch_1.bin", "data_batch_5.bin", "test_batch.bin"]),
    ],
)
def test_data_dir_without_files_does_not_fall_back(tmp_path, name, expected, no_tfds, monkeypatch):
    # A usable Debian dir exists, yet an explicit data_dir must win.
    write_mnist_dir(tmp_path / "deb", n_train=20, n_test=5)
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "deb"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(datasets.DataUnavailableError) as e:
        datasets.load(name, data_dir=str(empty))
    msg = str(e.value)
    assert str(empty) in msg
    for f in expected:
        assert f in msg
    assert "--data_dir" in msg
    assert not no_tfds


def test_corrupt_data_dir_is_unavailable(tmp_path):
    write_mnist_dir(tmp_path, n_train=20, n_test=5)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x07" * 20))
    with pytest.raises(datasets.DataUnavailableError, match="magic"):
        datasets.load("mnist", data_dir=str(tmp_path), validation_size=5)


def test_all_sources_fail_lists_each(tmp_path, monkeypatch, no_tfds):
    monkeypatch.setattr(registry, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(datasets.DataUnavailableError) as e:
        datasets.load("fashion_mnist", tfds_data_dir=str(tmp_path / "tfds"))
    msg = str(e.value)
    assert str(tmp_path) + ":" in msg and "train-images-idx3-ubyte" in msg
    assert "tensorflow-datasets 'fashion_mnist'" in msg and "offline in tests" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--data_dir" in msg
    assert "online" in msg
    assert no_tfds == [("fashion_mnist", str(tmp_path / "tfds"))]

    with pytest.raises(datasets.DataUnavailableError) as e:
        datasets.load("cifar10")
    msg = str(e.value)
    assert "tensorflow-datasets 'cifar10'" in msg and "ConnectionError" in msg
    assert "test_batch.bin" in msg and "apt-get" not in msg


def test_tfds_style_result_accepted(monkeypatch):
    rng = np.random.default_rng(0)
    fake = {
        "train": (rng.integers(0, 256, (80, 28, 28, 1), dtype=np.uint8),
                  rng.integers(0, 10, 80).astype(np.int64)),
        "test": (rng.integers(0, 256, (15, 28, 28, 1), dtype=np.uint8),
                 rng.integers(0, 10, 15).astype(np.int64)),
    }
    monkeypatch.setattr(readers, "load_tfds", lambda name, data_dir: fake)
    ds = datasets.load("mnist", validation_size=10)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (70, 10, 15)
    assert ds.y_test.dtype == np.int32
    np.testing.assert_array_equal(ds.y_test, fake["test"][1])
    assert "tensorflow-datasets" in ds.source

    fake["test"] = (fake["test"][0][:, :27], fake["test"][1])
    with pytest.raises(ValueError, match="shape"):
        datasets.load("mnist", validation_size=10)


def test_real_tfds_fails_fast_when_unprepared_and_offline(tmp_path, monkeypatch):
    # The real tfds path, with the reachability probe aimed at a closed
    # local port: must fail within seconds instead of retrying a download.
    monkeypatch.setattr(readers, "TFDS_PROBE_HOST", ("127.0.0.1", 1))
    with pytest.raises(datasets.DataUnavailableError) as e:
        datasets.load("cifar10", tfds_data_dir=str(tmp_path))
    msg = str(e.value)
    assert "tensorflow-datasets 'cifar10'" in msg and "not prepared" in msg
    assert str(tmp_path) in msg


def test_synthetic_options_rejected_for_real_data():
    with pytest.raises(ValueError, match="synthetic"):
        datasets.load("mnist", synthetic_sizes=(10, 10))


# ------------------------------------------------------------------ synthetic


def test_synthetic_shapes_and_determinism():
    ds = datasets.load("synthetic", validation_size=200)
    assert ds.x_train.shape == (1000, 28, 28, 1) and ds.x_test.shape == (200, 28, 28, 1)
    assert ds.num_classes == 10 and set(np.unique(ds.y_train)) == set(range(10))
    again = datasets.load("synthetic", validation_size=200)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    other = datasets.load("synthetic", validation_size=200, seed=1)
    assert not np.array_equal(ds.x_test, other.x_test)

    c = datasets.load("synthetic", validation_size=10, synthetic_shape=(32, 32, 3),
                      synthetic_sizes=(50, 7))
    assert c.x_train.shape == (40, 32, 32, 3) and c.x_test.shape == (7, 32, 32, 3)
    assert c.input_shape == (32, 32, 3)
    np.testing.assert_allclose(c.x_train.mean(axis=(0, 1, 2)), 0, atol=1e-4)

    default = datasets.load("synthetic")  # the synthetic default holds out 200 of 1200
    assert (len(default.x_train), len(default.x_val)) == (1000, 200)
    with pytest.raises(ValueError, match="validation_size"):
        datasets.load("synthetic", validation_size=5000)  # >= 1200 examples


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_synthetic_labels_learnable(shape):
    ds = datasets.load("synthetic", validation_size=200, synthetic_shape=shape)
    means = np.stack([ds.x_train[ds.y_train == k].mean(0) for k in range(10)])
    d = ((ds.x_test[:, None] - means[None]) ** 2).reshape(len(ds.x_test), 10, -1).sum(-1)
    acc = (d.argmin(1) == ds.y_test).mean()
    assert acc > 0.6, acc


# ------------------------------------------------------------------ tf pipeline


def test_augment_flip_crop():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 8, 8, 2)).astype(np.float32)
    seed = tf.constant([3, 4])
    a = datasets.augment_flip_crop(x, seed).numpy()
    b = datasets.augment_flip_crop(tf.constant(x), seed).numpy()
    c = datasets.augment_flip_crop(x, tf.constant([5, 6])).numpy()
    assert a.shape == x.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)

    # Every output is a (possibly flipped) 8x8 window of the zero-padded input.
    flips, offsets = set(), set()
    for i in range(len(x)):
        matches = []
        for flip in (False, True):
            src = np.pad(x[i, :, ::-1] if flip else x[i], ((4, 4), (4, 4), (0, 0)))
            for dy in range(9):
                for dx in range(9):
                    if np.array_equal(src[dy:dy + 8, dx:dx + 8], a[i]):
                        matches.append((flip, dy, dx))
        assert matches, f"image {i} is not a flip+crop of its input"
        flips.add(matches[0][0]), offsets.add(matches[0][1:])
    assert flips == {False, True}  # per-image randomness, not one per batch
    assert len(offsets) > 3

    traced = tf.function(datasets.augment_flip_crop)(tf.constant(x), seed).numpy()
    np.testing.assert_array_equal(traced, a)


# ------------------------------------------------------------------ real data


@pytest.mark.slow
@pytest.mark.skipif(
    not os.path.isdir(datasets.DEBIAN_FASHION_MNIST_DIR),
    reason=f"{datasets.DEBIAN_FASHION_MNIST_DIR} absent "
    "(apt-get install dataset-fashion-mnist to run this test)",
)
def test_real_fashion_mnist(no_tfds):
    ds = datasets.load("fashion_mnist")
    assert not no_tfds
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (55000, 5000, 10000)
    assert ds.input_shape == (28, 28, 1) and ds.x_train.dtype == np.float32
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert y.dtype == np.int32 and y.min() == 0 and y.max() == 9
    assert abs(float(ds.x_train.mean())) < 1e-3 and abs(float(ds.x_train.std()) - 1) < 1e-3
    assert datasets.DEBIAN_FASHION_MNIST_DIR in ds.source
