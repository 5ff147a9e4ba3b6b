"""`lth_keras.callbacks._fit`: what the two pruning callbacks share."""

import csv

import keras
import pytest

import lth_keras
from lth_keras.callbacks import _fit


def test_write_rows_csv_takes_the_union_of_columns_in_first_seen_order(tmp_path):
    path = str(tmp_path / "rows.csv")
    _fit.write_rows_csv(path, [{"round": 0, "pm/a": 100.0}, {"round": 1, "pm/b": 50.0, "pm/a": 80.0}])
    with open(path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["round", "pm/a", "pm/b"]
    assert [float(v) if v else None for v in rows[2]] == [1.0, 80.0, 50.0]


def test_is_built_looks_inside_the_model():
    inner = keras.Sequential([keras.layers.Dense(2)])
    outer = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])
    assert _fit.is_built(outer)
    unbuilt = keras.Sequential([inner])
    assert not _fit.is_built(unbuilt)


def test_an_unbuilt_model_is_refused_with_how_to_build_it():
    # Called directly: JAX's and PyTorch's fit build the model before any callback.
    model = keras.Sequential([lth_keras.MaskedDense(2)])
    model.compile("sgd", "mse")
    gmp = lth_keras.GradualMagnitudePruning(0.5, end_step=2, frequency=1)
    gmp.set_model(model)
    with pytest.raises(ValueError, match="GradualMagnitudePruning needs a built model: call it on a batch"):
        gmp.on_train_begin()
