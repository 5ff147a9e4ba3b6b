"""The sparse-training core on a model's masked weights (`lth_keras.pruning.dynamic`), on every backend."""

import keras
import numpy as np
import pytest

import lth_keras
from lth_keras import layers as lth_layers
from lth_keras.pruning import drop_grow, dynamic, erk


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20,)), lth_keras.MaskedDense(32, activation="relu", name="hidden"),
                              lth_keras.MaskedDense(4, name="out")])
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _trained(model, steps=3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 20)).astype("float32")
    y = rng.integers(0, 4, 64).astype("int32")
    model.fit(x, y, batch_size=64 // steps, epochs=1, verbose=0)
    return model


def _np(v):
    return keras.ops.convert_to_numpy(v)


def test_draw_masks_keeps_the_erk_counts_and_depends_only_on_the_seed():
    weights = lth_layers.masked_weights(_model())
    masks = dynamic.draw_masks(weights, 0.2, seed=3)
    shapes = {mw.name: tuple(mw.weight.shape) for mw in weights}
    counts = erk.kept_counts(shapes, erk.erk_densities(shapes, 0.2))
    assert {n: int(m.sum()) for n, m in masks.items()} == counts
    assert all(set(np.unique(m)) <= {0.0, 1.0} for m in masks.values())
    again = dynamic.draw_masks(weights, 0.2, seed=3)
    other = dynamic.draw_masks(weights, 0.2, seed=4)
    assert all(np.array_equal(masks[n], again[n]) for n in masks)
    assert any(not np.array_equal(masks[n], other[n]) for n in masks)
    uniform = dynamic.draw_masks(weights, 0.2, distribution="uniform", seed=3)
    assert {n: int(m.sum()) for n, m in uniform.items()} == {n: round(0.2 * m.size) for n, m in uniform.items()}


def test_assign_masks_zeroes_the_pruned_weights_only():
    model = _model()
    weights = lth_layers.masked_weights(model)
    before = {mw.name: _np(mw.weight) for mw in weights}
    masks = dynamic.draw_masks(weights, 0.3, seed=0)
    dynamic.assign_masks(weights, {"hidden": masks["hidden"]})
    hidden = weights[0]
    np.testing.assert_array_equal(_np(hidden.mask), masks["hidden"])
    np.testing.assert_array_equal(_np(hidden.weight), before["hidden"] * masks["hidden"])
    np.testing.assert_array_equal(_np(weights[1].weight), before["out"])  # not named: untouched
    assert _np(weights[1].mask).all()


@pytest.mark.parametrize("by_gradient", [False, True])
def test_an_update_drops_the_smallest_keeps_counts_and_zeroes_moved_slots(by_gradient):
    model = _trained(_model())
    weights = lth_layers.masked_weights(model)
    dynamic.assign_masks(weights, dynamic.draw_masks(weights, 0.3, seed=0))
    model = _trained(model)  # Adam's moments are now nonzero at the active weights
    old = {mw.name: (_np(mw.mask).copy(), _np(mw.weight).copy()) for mw in weights}
    scores = [np.random.default_rng(i).normal(size=mw.weight.shape) for i, mw in enumerate(weights)]
    fraction, moved = dynamic.update(weights, model.optimizer, 10, drop_fraction=0.5, end_step=100,
                                     grow_scores=scores if by_gradient else None, rng=np.random.default_rng(0))
    assert fraction == pytest.approx(drop_grow.drop_fraction_at(10, 0.5, 100))
    total = 0
    for i, mw in enumerate(weights):
        mask, weight = old[mw.name]
        new = _np(mw.mask)
        # Capped by the inactive positions: a dropped weight is not regrown in the same update.
        n = min(drop_grow.num_to_move(int(mask.sum()), fraction), int((mask == 0).sum()))
        dropped, grown = (mask == 1) & (new == 0), (mask == 0) & (new == 1)
        assert dropped.sum() == grown.sum() == n and new.sum() == mask.sum()
        # The dropped are the smallest active magnitudes.
        assert np.abs(weight[dropped]).max() <= np.abs(weight[(mask == 1) & ~dropped]).min()
        if by_gradient and ((mask == 0) & ~grown).any():
            assert np.abs(scores[i][grown]).min() >= np.abs(scores[i][(mask == 0) & ~grown]).max()
        # Pruned weights are 0, grown ones start at 0, the others kept their values.
        now = _np(mw.weight)
        assert not now[new == 0].any() and not now[grown].any()
        np.testing.assert_array_equal(now[(new == 1) & ~grown], weight[(new == 1) & ~grown])
        for slot in lth_keras.pruning.snapshots.slots_of(model.optimizer, mw.weight):
            value = _np(slot)
            assert not value[dropped | grown].any()
            assert value[(new == 1) & ~grown].any()
        total += n
    assert moved == total > 0


def test_no_update_moves_anything_from_the_end_step_on():
    model = _trained(_model())
    weights = lth_layers.masked_weights(model)
    dynamic.assign_masks(weights, dynamic.draw_masks(weights, 0.3, seed=0))
    masks = [_np(mw.mask).copy() for mw in weights]
    assert dynamic.update(weights, model.optimizer, 100, drop_fraction=0.5, end_step=100,
                          rng=np.random.default_rng(0)) == (0.0, 0)
    assert all(np.array_equal(m, _np(mw.mask)) for m, mw in zip(masks, weights))
