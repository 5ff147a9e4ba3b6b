"""Tests for lth_keras.layers.weights: the model-level mask helpers.

masked_layers and masked_weights (order, nesting, include/exclude),
set/get masks, count_weights, fraction_remaining, apply_masks_to_weights, and
the `premasked` fast path.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import lth_keras
from lth_keras import layers as lth_layers
from tests.helpers.user_layers import UserMaskedLinear
from tests.helpers.small_models import random_mask, small_model


def rand(shape, seed=0, dtype="float32"):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)




def test_masked_layers_and_weights_in_model_order_including_nested():
    inner = keras.Sequential([keras.Input((5,)), lth_keras.MaskedDense(4, name="inner_fc")], name="inner")
    inp = keras.Input((6, 6, 2))
    x = lth_keras.MaskedConv2D(3, 3, name="conv")(inp)
    x = keras.layers.Flatten()(x)
    x = lth_keras.MaskedDense(5, name="fc")(x)
    x = inner(x)
    model = keras.Model(inp, x)
    assert [layer.name for layer in lth_layers.masked_layers(model)] == ["conv", "fc", "inner_fc"]
    assert [mw.name for mw in lth_layers.masked_weights(model)] == ["conv", "fc", "inner_fc"]
    assert lth_layers.masked_layers(model.get_layer("fc"))[0].name == "fc"


def test_masked_weights_include_exclude_patterns_and_errors():
    model = small_model()
    names = lambda **kw: [mw.name for mw in lth_layers.masked_weights(model, **kw)]  # noqa: E731
    assert names() == ["conv", "fc", "out"]
    assert names(include=["conv", "out"]) == ["conv", "out"]
    assert names(exclude=["out"]) == ["conv", "fc"]
    assert names(include=["f*", "c*"]) == ["conv", "fc"]
    with pytest.raises(ValueError, match="nothere"):
        lth_layers.masked_weights(model, include=["nothere"])
    with pytest.raises(ValueError, match="plain"):  # not a masked layer
        lth_layers.masked_weights(model, exclude=["plain"])
    with pytest.raises(ValueError, match="string"):
        lth_layers.masked_weights(model, exclude="out")


def test_unbuilt_layer_raises():
    with pytest.raises(ValueError, match="not built"):
        lth_layers.masked_weights(keras.Sequential([lth_keras.MaskedDense(3, name="fc")]))


def test_set_get_count_fraction_and_apply():
    model = small_model()
    totals = {"conv": 3 * 3 * 2 * 3, "fc": 48 * 5, "out": 4 * 2}
    assert lth_layers.count_weights(model) == {n: (t, t) for n, t in totals.items()}
    assert lth_layers.fraction_remaining(model) == 1.0
    masks = {"conv": random_mask((3, 3, 2, 3), 1), "fc": random_mask((48, 5), 2)}
    kernels_before = lth_layers.get_masked_kernels(model)
    lth_layers.set_masks(model, masks)  # "out" not given: kept
    got = lth_layers.get_masks(model)
    assert np.array_equal(got["conv"], masks["conv"]) and np.array_equal(got["fc"], masks["fc"])
    assert np.array_equal(got["out"], np.ones((4, 2)))
    kernels = lth_layers.get_masked_kernels(model)
    for name, mask in masks.items():
        assert np.all(kernels[name][mask == 0] == 0)
        assert np.array_equal(kernels[name][mask == 1], kernels_before[name][mask == 1])
    alive = {n: int(masks[n].sum()) if n in masks else t for n, t in totals.items()}
    assert lth_layers.count_weights(model) == {n: (alive[n], t) for n, t in totals.items()}
    assert lth_layers.fraction_remaining(model) == sum(alive.values()) / sum(totals.values())
    # get_* return copies.
    got["out"][:] = 0
    assert lth_layers.get_masks(model)["out"].sum() == 8
    # apply_masks_to_weights zeroes weights pruned by a raw mask assign.
    layer = model.get_layer("out")
    layer.mask.assign(np.array([[0, 1]] * 4, "float32"))
    assert np.any(layer.kernel.numpy()[:, 0] != 0)
    lth_layers.apply_masks_to_weights(model)
    assert np.all(layer.kernel.numpy()[:, 0] == 0) and np.all(layer.kernel.numpy()[:, 1] != 0)
    with pytest.raises(ValueError, match="bogus"):
        lth_layers.set_masks(model, {"bogus": np.ones(2)})
    with pytest.raises(ValueError, match="shape"):
        lth_layers.set_masks(model, {"fc": np.ones((5, 48))})
    with pytest.raises(ValueError):
        lth_layers.fraction_remaining(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]))


def test_premasked_reads_stored_weights_and_is_exact_once_pruned_ones_are_zero():
    model = keras.Sequential([
        keras.Input((6, 6, 2)), lth_keras.MaskedConv2D(4, 3, name="c"), keras.layers.Flatten(),
        lth_keras.MaskedDense(5, name="d"), UserMaskedLinear(3, name="u"),
    ])
    x = rand((4, 6, 6, 2), seed=3)
    for i, mw in enumerate(lth_layers.masked_weights(model)):
        # Masks assigned directly: pruned entries still hold their old values.
        mw.mask.assign(random_mask(mw.mask.shape, i))
    reference = model(x).numpy()
    with lth_layers.premasked(model):
        stale = model(x).numpy()
    assert not np.allclose(stale, reference)  # the switch really drops the product
    lth_layers.apply_masks_to_weights(model)
    with lth_layers.premasked(model):
        exact = model(x).numpy()
        traced = tf.function(lambda t: model(t))
        traced_inside = traced(x).numpy()
    np.testing.assert_array_equal(exact, reference)
    np.testing.assert_array_equal(traced_inside, reference)
    # Outside the context every layer multiplies by its mask again.
    assert not any(getattr(l, "_lth_premasked", False) for l in lth_layers.masked_layers(model))
    model.layers[0].kernel.assign(rand(model.layers[0].kernel.shape, seed=9))
    with_stale_values = model(x).numpy()
    lth_layers.apply_masks_to_weights(model)
    np.testing.assert_array_equal(with_stale_values, model(x).numpy())
