"""Drop-and-grow, the mask update of SET and RigL (`lth_keras.pruning.drop_grow`)."""

import math

import numpy as np
import pytest

from lth_keras.pruning import drop_grow


def test_docstring_example():
    w = np.array([[0.9, -0.1], [0.0, 0.5]])
    mask = np.array([[1.0, 1.0], [0.0, 0.0]])
    grad = np.array([[0.0, 0.0], [0.3, 2.0]])
    new_mask, dropped, grown = drop_grow.drop_and_grow(w, mask, 1, grow_scores=np.abs(grad))
    np.testing.assert_array_equal(new_mask, [[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(dropped, [[False, True], [False, False]])
    np.testing.assert_array_equal(grown, [[False, False], [False, True]])


def test_counts_are_kept_and_dropped_weights_are_not_regrown_at_once():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(20, 30))
    mask = (rng.random((20, 30)) < 0.3).astype("float32")
    w *= mask
    new_mask, dropped, grown = drop_grow.drop_and_grow(w, mask, 50, grow_scores=drop_grow.random_scores(w.shape, rng))
    assert new_mask.sum() == mask.sum() and new_mask.dtype == mask.dtype
    assert dropped.sum() == grown.sum() == 50
    assert not (dropped & grown).any()
    assert (mask[dropped] == 1).all() and (mask[grown] == 0).all()
    # The dropped ones are the 50 smallest magnitudes among the active.
    active = np.abs(w[mask == 1])
    assert np.abs(w[dropped]).max() <= np.sort(active)[50]


def test_rigl_grows_only_where_the_gradient_is_nonzero_and_then_drops_no_more():
    w = np.array([1.0, 2.0, 3.0, 0.0, 0.0, 0.0])
    mask = np.array([1, 1, 1, 0, 0, 0], "float32")
    grad = np.array([0.5, 0.5, 0.5, 0.0, 0.7, 0.0])  # only one inactive position has a gradient
    new_mask, dropped, grown = drop_grow.drop_and_grow(w, mask, 2, grow_scores=np.abs(grad), require_positive=True)
    np.testing.assert_array_equal(grown, [False, False, False, False, True, False])
    np.testing.assert_array_equal(dropped, [True, False, False, False, False, False])
    assert new_mask.sum() == 3
    # SET would grow in the zero-gradient positions too.
    _, _, set_grown = drop_grow.drop_and_grow(w, mask, 2, grow_scores=np.array([0, 0, 0, 0.9, 0.1, 0.8]))
    assert set_grown[3] and set_grown[5]


def test_n_is_capped_by_active_and_inactive_weights():
    w = np.arange(1.0, 5.0)
    full = np.ones(4)
    new_mask, dropped, grown = drop_grow.drop_and_grow(w, full, 3, grow_scores=np.ones(4))
    assert dropped.sum() == grown.sum() == 0 and (new_mask == full).all()
    one_free = np.array([1, 1, 1, 0.0])
    _, dropped, grown = drop_grow.drop_and_grow(w * one_free, one_free, 3, grow_scores=np.ones(4))
    assert dropped.sum() == grown.sum() == 1


def test_ties_are_broken_by_position_so_updates_are_reproducible():
    w = np.array([0.5, 0.5, 0.5, 0.0, 0.0])
    mask = np.array([1, 1, 1, 0, 0.0])
    _, dropped, grown = drop_grow.drop_and_grow(w, mask, 1, grow_scores=np.array([0, 0, 0, 1.0, 1.0]))
    assert dropped.tolist() == [True, False, False, False, False]
    assert grown.tolist() == [False, False, False, True, False]


def test_cosine_decay_of_the_drop_fraction():
    assert drop_grow.drop_fraction_at(0, 0.3, 1000) == pytest.approx(0.3)
    assert drop_grow.drop_fraction_at(500, 0.3, 1000) == pytest.approx(0.15)
    assert drop_grow.drop_fraction_at(250, 0.3, 1000) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert drop_grow.drop_fraction_at(1000, 0.3, 1000) == 0.0
    assert drop_grow.drop_fraction_at(5000, 0.3, 1000) == 0.0
    fractions = [drop_grow.drop_fraction_at(t, 0.3, 1000) for t in range(0, 1000, 100)]
    assert fractions == sorted(fractions, reverse=True)


def test_update_steps_and_counts():
    assert [t for t in range(0, 501) if drop_grow.is_update_step(t, 100, 450)] == [100, 200, 300, 400]
    assert drop_grow.num_to_move(100, 0.3) == 30
    assert drop_grow.num_to_move(9, 0.3) == 2


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="same shape"):
        drop_grow.drop_and_grow(np.ones(3), np.ones(3), 1, grow_scores=np.ones(4))
