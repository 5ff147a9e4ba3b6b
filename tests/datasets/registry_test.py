"""Tests for lth_keras.datasets.registry: `load` for each data set and source.

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
from tests.helpers.data_files import write_cifar_dir, write_mnist_dir


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
