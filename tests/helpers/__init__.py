"""What several test modules share, imported as ``from tests.helpers import lenet as L``.

- `lenet`: LeNet-300-100 of masked layers, synthetic data, recorder callbacks.
- `tiny_model`: a 784-12-10 masked MLP registered as "tiny_mlp", for fixtures.
- `custom_models`: build callables for ``--model=tests.helpers.custom_models:<name>``.
- `user_layers`: layers written from scratch through the MaskedLayer protocol.
- `gradual`: a small CNN, data and `ZeroWatch`, for gradual and N:M pruning
  (no TensorFlow: they run on every backend).
- `data_files`: IDX and CIFAR10 binary files written for the data-set tests.
- `faults`: a disk that fills up and a lock held by another process.
- `csv_experiments`: CSV-only experiment directories (summary.csv, curve.csv)
  and a figures/ directory with its manifest, for the plots and figures.
- `runs`: small real experiments and the binary's command line, shared by
  a module's tests and its program's.
- `small_models`: a Sequential of masked and plain layers, random masks.

``REPO`` is the repository's root (``python -m`` and the scripts run from it).
"""

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
