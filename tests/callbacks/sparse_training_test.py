"""StaticSparse, SET and RigL inside `model.fit` (`lth_keras.callbacks.sparse_training`), on every backend."""

import csv

import keras
import numpy as np
import pytest

import lth_keras
from lth_keras import layers as lth_layers

ZERO_INPUTS = 5  # the first inputs are always 0: nothing flows through their weights


def _data(n=256):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 20)).astype("float32")
    x[:, :ZERO_INPUTS] = 0
    y = (x[:, 5] + x[:, 6] > 0).astype("int32")
    return x, y


def _model(masked=False):
    keras.utils.set_random_seed(0)
    dense = lth_keras.MaskedDense if masked else keras.layers.Dense
    model = keras.Sequential([keras.Input((20,)), dense(32, activation="relu", name="hidden"), dense(2, name="out")])
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _state(model):
    masks = lth_layers.get_masks(model)
    kernels = lth_layers.get_masked_kernels(model)
    return masks, kernels


def _fit(model, callback, epochs=4):
    x, y = _data()
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[callback])


class _Watch(keras.callbacks.Callback):
    """The masks after every step."""

    def __init__(self):
        super().__init__()
        self.masks = []

    def on_train_batch_end(self, batch, logs=None):
        self.masks.append(lth_layers.get_masks(self.model))


@pytest.mark.parametrize("masked", [False, True])
def test_static_masks_are_drawn_at_erk_densities_and_never_change(masked):
    model = _model(masked)
    static = lth_keras.StaticSparse(0.8, verbose=0)
    watch = _Watch()
    x, y = _data()
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[static, watch])
    first = watch.masks[0]
    assert all(np.array_equal(m[n], first[n]) for m in watch.masks for n in first)
    masks, kernels = _state(model)
    total = sum(m.size for m in masks.values())
    assert sum(m.sum() for m in masks.values()) == pytest.approx(0.2 * total, abs=2)
    # ERK: the small output layer is denser than the hidden one.
    assert masks["out"].mean() > masks["hidden"].mean()
    assert all((kernels[n][masks[n] == 0] == 0).all() for n in masks)


@pytest.mark.parametrize("method", ["SET", "RigL"])
def test_dynamic_masks_keep_counts_keep_pruned_weights_at_zero_and_move_less_and_less(method, tmp_path):
    model = _model()
    callback = getattr(lth_keras, method)(0.8, update_frequency=4, drop_fraction=0.5, end_step=32, verbose=0)
    watch = _Watch()
    x, y = _data()
    model.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[callback, watch])
    counts = {n: m.sum() for n, m in watch.masks[0].items()}
    assert all({n: m.sum() for n, m in step.items()} == counts for step in watch.masks)
    changes = sum(not np.array_equal(a["hidden"], b["hidden"]) for a, b in zip(watch.masks, watch.masks[1:]))
    assert changes >= 5  # the masks really move
    masks, kernels = _state(model)
    assert all((kernels[n][masks[n] == 0] == 0).all() for n in masks)
    moved = [r["moved"] for r in callback.rows[1:]]
    assert [r["step"] for r in callback.rows[1:]] == list(range(4, 32, 4))  # 32 steps in all
    assert moved[0] > 0 and moved[-1] < moved[0] and moved == sorted(moved, reverse=True)
    callback.to_csv(tmp_path / "rows.csv")
    with open(tmp_path / "rows.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["moved"]) for r in rows] == [r["moved"] for r in callback.rows]


def test_rigl_never_grows_weights_of_always_zero_inputs_where_set_does():
    grown = {}
    for method in ("SET", "RigL"):
        model = _model()
        callback = getattr(lth_keras, method)(0.8, update_frequency=2, drop_fraction=0.5, end_step=64, verbose=0)
        watch = _Watch()
        x, y = _data()
        model.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[callback, watch])
        masks = [m["hidden"][:ZERO_INPUTS] for m in watch.masks]
        grown[method] = sum(int(((b == 1) & (a == 0)).sum()) for a, b in zip(masks, masks[1:]))
    assert grown["RigL"] == 0
    assert grown["SET"] > 0


def test_grown_weights_start_at_zero_with_fresh_optimizer_slots():
    model = _model()
    rigl = lth_keras.RigL(0.8, update_frequency=4, end_step=40, verbose=0)
    x, y = _data()
    before = {}

    class Check(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            before["masks"] = lth_layers.get_masks(self.model)

        def on_train_batch_end(self, batch, logs=None):
            masks = lth_layers.get_masks(self.model)
            if any(not np.array_equal(masks[n], before["masks"][n]) for n in masks):
                kernels = lth_layers.get_masked_kernels(self.model)
                grown = (masks["hidden"] == 1) & (before["masks"]["hidden"] == 0)
                assert grown.any() and (kernels["hidden"][grown] == 0).all()
                kernel = lth_layers.masked_weights(self.model)[0].weight
                from lth_keras.pruning import snapshots

                for slot in snapshots.slots_of(self.model.optimizer, kernel):
                    assert (keras.ops.convert_to_numpy(slot)[grown] == 0).all()
                before["checked"] = True

    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[rigl, Check()])
    assert before.get("checked")


def test_end_step_defaults_to_the_steps_fit_takes():
    model = _model()
    set_ = lth_keras.SET(0.5, update_frequency=4, verbose=0)
    _fit(model, set_, epochs=2)
    assert set_.end_step == 16


def test_bad_arguments_name_the_argument():
    for kwargs, name in [({"sparsity": 1.0}, "sparsity"), ({"sparsity": 0.5, "update_frequency": 0}, "update_frequency"),
                         ({"sparsity": 0.5, "drop_fraction": 2}, "drop_fraction"),
                         ({"sparsity": 0.5, "distribution": "random"}, "distribution")]:
        with pytest.raises(ValueError, match=f"`{name}`"):
            lth_keras.SET(**kwargs)
