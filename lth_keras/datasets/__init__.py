"""Datasets: the registry, readers of the files on disk, splits and normalisation.

- `registry`: `DATASETS`, `load` (validation split, normalisation), `Dataset`.
- `readers`: IDX and CIFAR-10 files, tensorflow-datasets.
- `augment`: the flip + pad/crop augmentation of the CIFAR-10 runs.
"""

from lth_keras.datasets.augment import augment_flip_crop
from lth_keras.datasets.readers import (
    CIFAR10_SUBDIR,
    CIFAR10_TEST_FILE,
    CIFAR10_TRAIN_FILES,
    IDX_FILES,
    TFDS_PROBE_HOST,
    TFDS_PROBE_TIMEOUT_S,
    read_cifar10_batch,
    read_cifar10_dir,
    read_idx,
    read_idx_dir,
)
from lth_keras.datasets.registry import (
    DATASETS,
    DEBIAN_FASHION_MNIST_DIR,
    DEBIAN_FASHION_MNIST_PACKAGE,
    DEFAULT_VALIDATION_SIZE,
    SYNTHETIC_SIZES,
    VALIDATION_SIZES,
    DataUnavailableError,
    Dataset,
    DatasetSpec,
    default_validation_size,
    load,
)

__all__ = [
    "CIFAR10_SUBDIR",
    "CIFAR10_TEST_FILE",
    "CIFAR10_TRAIN_FILES",
    "DATASETS",
    "DEBIAN_FASHION_MNIST_DIR",
    "DEBIAN_FASHION_MNIST_PACKAGE",
    "DEFAULT_VALIDATION_SIZE",
    "DataUnavailableError",
    "Dataset",
    "DatasetSpec",
    "IDX_FILES",
    "SYNTHETIC_SIZES",
    "TFDS_PROBE_HOST",
    "TFDS_PROBE_TIMEOUT_S",
    "VALIDATION_SIZES",
    "augment_flip_crop",
    "default_validation_size",
    "load",
    "read_cifar10_batch",
    "read_cifar10_dir",
    "read_idx",
    "read_idx_dir",
]
