"""Tests for lth_keras.pruning.pai: the examples SNIP and GraSP score on.

They come from the trial's data (`TrialState.data`, the runner's dataset);
`pai` once reloaded the dataset from disk when the trial had none.
"""

import types

import numpy as np
import pytest

from lth_keras.pruning import pai


def _data(n=50, classes=3):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    return types.SimpleNamespace(x_train=x, y_train=np.arange(n) % classes, num_classes=classes)


def test_scoring_examples_are_drawn_from_the_trials_data():
    data = _data()
    trial = types.SimpleNamespace(data=data, seed=3, config=None)
    x, y = pai._scoring_examples(trial)
    assert len(x) == pai.EXAMPLES_PER_CLASS * data.num_classes
    rows = {tuple(row) for row in data.x_train}
    assert all(tuple(row) in rows for row in x)
    np.testing.assert_array_equal(y, (x[:, 0] // 2).astype(int) % data.num_classes)
    again, _ = pai._scoring_examples(trial)
    np.testing.assert_array_equal(x, again)


def test_a_trial_without_data_is_refused_not_loaded_from_disk():
    config = types.SimpleNamespace(dataset="mnist", data_dir="/nonexistent", seed=0, validation_size=10,
                                   tfds_data_dir=None, synthetic_sizes=None)
    with pytest.raises(ValueError, match="trial has no `data`"):
        pai._scoring_examples(types.SimpleNamespace(data=None, seed=0, config=config))
