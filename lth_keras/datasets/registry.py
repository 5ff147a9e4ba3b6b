"""The datasets registry: what each dataset is, where it is found, and `load`.

`DATASETS` maps a name to a `DatasetSpec`; `load(name)` turns it into a
`Dataset` of float32 NHWC arrays with a seeded validation split held out of
the training set and per-channel standardisation computed on the remaining
training examples only (so neither validation nor test data leak into the
statistics).

Real datasets are looked for, in order, in:

1. ``data_dir`` if given (and nowhere else: an explicit directory that lacks
   the files is an error, not a reason to silently use different data);
2. for ``fashion_mnist``, the Debian package ``dataset-fashion-mnist``
   (`DEBIAN_FASHION_MNIST_DIR`);
3. tensorflow-datasets, which works online or from a prepared TFDS data dir.

The files are parsed by `lth_keras.datasets.readers` with numpy alone, so
loading needs no network and no TensorFlow.

Example:
    >>> from lth_keras import datasets
    >>> ds = datasets.load("synthetic", validation_size=200, seed=1)
    >>> ds.x_train.shape, ds.x_val.shape, ds.x_test.shape
    ((1000, 28, 28, 1), (200, 28, 28, 1), (200, 28, 28, 1))
    >>> ds.input_shape, ds.num_classes
    ((28, 28, 1), 10)
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from lth_keras.datasets import readers
from lth_keras.datasets.readers import CIFAR10_SUBDIR, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES, IDX_FILES, Raw


# --------------------------------------------------------------------------
# What a dataset is
# --------------------------------------------------------------------------

# Module-level so tests (and unusual installs) can point it elsewhere.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DEBIAN_FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"


class DataUnavailableError(Exception):
    """No source could provide a dataset; the message lists what was tried."""


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Normalised train/validation/test splits of one dataset.

    Images are float32 NHWC standardised with the per-channel mean/std of
    ``x_train``; labels are int32 in ``[0, num_classes)``. ``augment`` tells
    the training loop to apply `augment.augment_flip_crop` (CIFAR10); loading never
    augments.

    Example:
        >>> ds = load("synthetic", validation_size=100)
        >>> ds.input_shape, ds.x_train.dtype, ds.y_train.dtype
        ((28, 28, 1), dtype('float32'), dtype('int32'))
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    augment: bool
    source: str

    @property
    def input_shape(self) -> tuple:
        return tuple(int(d) for d in self.x_train.shape[1:])

    def __repr__(self) -> str:
        # The default repr would dump array contents.
        return (
            f"Dataset(name={self.name!r}, train={len(self.x_train)}, "
            f"val={len(self.x_val)}, test={len(self.x_test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"augment={self.augment}, source={self.source!r})"
        )


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Registry entry: what a dataset looks like and where to find it.

    ``read_dir(path)`` parses local files (raising `FileNotFoundError` when
    they are absent); ``system_dirs()`` lists well-known install locations,
    evaluated at load time so monkeypatched constants are honoured.
    """

    name: str
    input_shape: tuple
    num_classes: int
    augment: bool
    expected_files: tuple = ()
    read_dir: Callable[[str], Raw] | None = None
    system_dirs: Callable[[], tuple] = lambda: ()
    tfds_name: str | None = None
    hint: str = ""


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

_IDX_NAMES = ", ".join(s + ".gz" for s in IDX_FILES)

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        input_shape=(28, 28, 1),
        num_classes=10,
        augment=False,
        expected_files=tuple(s + "[.gz]" for s in IDX_FILES),
        read_dir=readers.read_idx_dir,
        tfds_name="mnist",
        hint=f"pass --data_dir=DIR containing {_IDX_NAMES} (gzipped or not)",
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        input_shape=(28, 28, 1),
        num_classes=10,
        augment=False,
        expected_files=tuple(s + "[.gz]" for s in IDX_FILES),
        read_dir=readers.read_idx_dir,
        system_dirs=lambda: (DEBIAN_FASHION_MNIST_DIR,),
        tfds_name="fashion_mnist",
        hint=(
            f"pass --data_dir=DIR containing {_IDX_NAMES} (gzipped or not); "
            f"or install the Debian package `apt-get install "
            f"{DEBIAN_FASHION_MNIST_PACKAGE}`"
        ),
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        input_shape=(32, 32, 3),
        num_classes=10,
        augment=True,
        expected_files=CIFAR10_TRAIN_FILES + (CIFAR10_TEST_FILE,),
        read_dir=readers.read_cifar10_dir,
        tfds_name="cifar10",
        hint=(
            "pass --data_dir=DIR containing "
            f"{', '.join(CIFAR10_TRAIN_FILES + (CIFAR10_TEST_FILE,))} "
            f"(directly or in {CIFAR10_SUBDIR}/, as in the official "
            "cifar-10-binary.tar.gz)"
        ),
    ),
    "synthetic": DatasetSpec(
        name="synthetic",
        input_shape=(28, 28, 1),
        num_classes=10,
        augment=False,
    ),
}

SYNTHETIC_SIZES = (1200, 200)

# Examples held out for validation when none is asked for: the paper's 5000,
# and for the synthetic set (1200 training examples) 200, so that it runs
# with every flag at its default.
DEFAULT_VALIDATION_SIZE = 5000
VALIDATION_SIZES = {"synthetic": 200}


def default_validation_size(name: str) -> int:
    """The validation split `load` holds out by default for dataset `name`.

    Example:
        >>> default_validation_size("mnist"), default_validation_size("synthetic")
        (5000, 200)
    """
    return VALIDATION_SIZES.get(name, DEFAULT_VALIDATION_SIZE)


def _unavailable(name: str, tried: list[str], spec: DatasetSpec) -> DataUnavailableError:
    lines = [f"Could not load dataset {name!r}. Sources tried:"]
    lines += [f"  {i}. {t}" for i, t in enumerate(tried, 1)]
    how = [spec.hint] if spec.hint else []
    if spec.tfds_name:
        how.append(
            "or run online so tensorflow-datasets can download "
            f"{spec.tfds_name!r} (or pass tfds_data_dir pointing at a TFDS "
            "data dir where it is already prepared)"
        )
    lines.append("To supply the data: " + "; ".join(how) + ".")
    return DataUnavailableError("\n".join(lines))


def _load_real(spec: DatasetSpec, data_dir: str | None, tfds_data_dir: str | None):
    """Returns (raw arrays, source description), trying each source in turn."""
    if data_dir is not None:
        try:
            return spec.read_dir(data_dir), f"files in {data_dir}"
        except (OSError, ValueError) as e:
            # An explicit data_dir is the user's choice of data: never fall
            # back to something else behind their back.
            raise _unavailable(
                spec.name,
                [f"data_dir {data_dir!r}: {type(e).__name__}: {e}; expected "
                 f"{', '.join(spec.expected_files)}"],
                spec,
            ) from e

    tried = []
    for directory in spec.system_dirs():
        try:
            return spec.read_dir(directory), f"idx files in {directory}"
        except (OSError, ValueError) as e:
            tried.append(f"{directory}: {type(e).__name__}: {e}")

    if spec.tfds_name:
        where = tfds_data_dir or "its default data dir"
        try:
            raw = readers.raw_from_tfds(readers.load_tfds(spec.tfds_name, tfds_data_dir))
            return raw, f"tensorflow-datasets {spec.tfds_name!r} ({where})"
        except Exception as e:  # tfds raises many types; report, don't crash
            msg = str(e).strip().splitlines()
            tried.append(
                f"tensorflow-datasets {spec.tfds_name!r} ({where}): "
                f"{type(e).__name__}: {msg[0] if msg else ''}"
            )
    raise _unavailable(spec.name, tried, spec)


def _synthetic(shape: tuple, sizes: tuple, num_classes: int, seed: int) -> Raw:
    """Class templates plus pixel noise, so labels are a learnable function
    of the inputs. Templates are blocky (coarse grid upsampled) rather than
    white noise so both MLPs and small convnets pick them up quickly."""
    rng = np.random.default_rng([seed, 0x5EED])
    h, w, c = shape
    gh, gw = max(1, h // 4), max(1, w // 4)
    coarse = rng.standard_normal((num_classes, gh, gw, c))
    rows = np.arange(h) * gh // h
    cols = np.arange(w) * gw // w
    templates = coarse[:, rows][:, :, cols]
    # Signal strength scaled with dimension so difficulty is roughly the same
    # for any shape: a nearest-mean classifier gets most, not all, right.
    scale = 7.0 / np.sqrt(2.0 * h * w * c)

    def draw(n):
        y = rng.integers(0, num_classes, size=n)
        x = scale * templates[y] + rng.standard_normal((n, h, w, c))
        return x.astype(np.float32), y

    x_train, y_train = draw(sizes[0])
    x_test, y_test = draw(sizes[1])
    return Raw(x_train, y_train, x_test, y_test)


# --------------------------------------------------------------------------
# Splitting and normalisation
# --------------------------------------------------------------------------


def _channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    # Chunked float64 sums: exact enough, without a float64 copy of CIFAR.
    c = x.shape[-1]
    s, ss = np.zeros(c), np.zeros(c)
    for i in range(0, len(x), chunk):
        block = x[i : i + chunk].astype(np.float64).reshape(-1, c)
        s += block.sum(axis=0)
        ss += np.square(block).sum(axis=0)
    n = x.size // c
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean**2, 0.0))
    std[std < 1e-8] = 1.0  # constant channel: centre it, don't divide by 0
    return mean, std


def _normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    out = x.astype(np.float32)  # a copy, so in-place ops below are safe
    out -= mean.astype(np.float32)
    out /= std.astype(np.float32)
    return out


def _check_raw(raw: Raw, spec: DatasetSpec, input_shape: tuple, source: str) -> None:
    for split, x, y in (("train", raw.x_train, raw.y_train), ("test", raw.x_test, raw.y_test)):
        if tuple(x.shape[1:]) != tuple(input_shape):
            raise ValueError(
                f"{spec.name} from {source}: {split} images have shape "
                f"{x.shape[1:]}, expected {input_shape}"
            )
        if y.shape != (len(x),):
            raise ValueError(
                f"{spec.name} from {source}: {len(x)} {split} images but "
                f"labels of shape {y.shape}"
            )
        if y.size and (y.min() < 0 or y.max() >= spec.num_classes):
            raise ValueError(
                f"{spec.name} from {source}: {split} labels outside "
                f"[0, {spec.num_classes})"
            )


def load(
    name: str,
    *,
    data_dir: str | None = None,
    seed: int = 0,
    validation_size: int | None = None,
    tfds_data_dir: str | None = None,
    synthetic_shape: tuple | None = None,
    synthetic_sizes: tuple[int, int] | None = None,
) -> Dataset:
    """Loads a registered dataset, holds out a validation split, normalises.

    ``validation_size`` training examples (default:
    `default_validation_size`, 5000, or 200 for ``"synthetic"``), chosen by a
    permutation seeded with ``seed``, become ``x_val``/``y_val``; mean/std per channel come from
    the rest. Both splits keep the original file order. ``synthetic_shape``
    (H, W, C) and ``synthetic_sizes`` (n_train incl. validation, n_test;
    default (1200, 200)) apply to ``"synthetic"`` only, whose data is also
    determined by ``seed``.

    Raises:
        ValueError: unknown ``name``, bad ``validation_size``, or synthetic
            options given for a real dataset.
        DataUnavailableError: no source has the data.

    Example:
        >>> ds = load("synthetic", validation_size=200, synthetic_shape=(32, 32, 3))
        >>> ds.x_train.shape
        (1000, 32, 32, 3)
    """
    if name not in DATASETS:
        raise ValueError(f"name={name!r} is not a known dataset; known: {sorted(DATASETS)}")
    spec = DATASETS[name]

    if name == "synthetic":
        shape = tuple(int(d) for d in (synthetic_shape or spec.input_shape))
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"synthetic_shape must be (H, W, C) positive ints, got {synthetic_shape}")
        sizes = tuple(int(n) for n in (synthetic_sizes or SYNTHETIC_SIZES))
        if len(sizes) != 2 or min(sizes) < 1:
            raise ValueError(f"synthetic_sizes must be (n_train, n_test) positive ints, got {synthetic_sizes}")
        raw = _synthetic(shape, sizes, spec.num_classes, seed)
        source = f"synthetic class templates + noise (seed={seed})"
    else:
        if synthetic_shape is not None or synthetic_sizes is not None:
            raise ValueError(
                f"synthetic_shape/synthetic_sizes only apply to 'synthetic', not {name!r}"
            )
        shape = spec.input_shape
        raw, source = _load_real(spec, data_dir, tfds_data_dir)
    _check_raw(raw, spec, shape, source)

    n = len(raw.x_train)
    if validation_size is None:
        validation_size = default_validation_size(name)
    if not isinstance(validation_size, (int, np.integer)) or not 0 <= validation_size < n:
        raise ValueError(
            f"validation_size must be an int in [0, {n}) for {name!r} "
            f"({n} training examples from {source}), got {validation_size!r}"
        )
    perm = np.random.default_rng(seed).permutation(n)
    val_idx = np.sort(perm[:validation_size])
    train_idx = np.sort(perm[validation_size:])

    # Index the raw (often uint8) arrays before converting, to keep peak
    # memory near one float32 copy of the data.
    x_train_raw = raw.x_train[train_idx]
    mean, std = _channel_stats(x_train_raw)
    return Dataset(
        name=name,
        x_train=_normalise(x_train_raw, mean, std),
        y_train=raw.y_train[train_idx].astype(np.int32),
        x_val=_normalise(raw.x_train[val_idx], mean, std),
        y_val=raw.y_train[val_idx].astype(np.int32),
        x_test=_normalise(raw.x_test, mean, std),
        y_test=raw.y_test.astype(np.int32),
        num_classes=spec.num_classes,
        augment=spec.augment,
        source=source,
    )
