"""Tests for lth_keras.pruning.patterns: N:M masks on models, on every backend.

Runs under KERAS_BACKEND=tensorflow (the default), jax and torch (.ci/run);
nothing here may import TensorFlow. N:M masks are valid on every masked
layer type after pruning and after training, gradual pruning ramps to N:M
at the cap 1 - N/M, sparsity beyond the cap and ragged groups are refused,
and IMP rounds keep the pattern.
"""

import keras
import numpy as np
import pytest

import lth_keras
from lth_keras.pruning import gradual
from lth_keras import layers as lth_layers
from tests.helpers.gradual import compile_, data, numpy, rand, small_cnn, ZeroWatch


# --------------------------------------------------------------------------
# N:M patterns


def _one_layer_models():
    """One model per masked layer type, every input dimension a multiple of 4:
    (model, input batch, expected grouping axis of each masked weight)."""
    seq = lambda shape, layer: keras.Sequential([keras.Input(shape), layer])  # noqa: E731
    q = keras.Input((3, 8))
    mha_out = lth_keras.MaskedMultiHeadAttention(2, key_dim=4, name="mha")(q, q)
    return {
        "dense": (seq((8,), lth_keras.MaskedDense(4)), rand((4, 8)), [0]),
        "conv1d": (seq((6, 8), lth_keras.MaskedConv1D(4, 3)), rand((2, 6, 8)), [1]),
        "conv2d": (seq((6, 6, 8), lth_keras.MaskedConv2D(4, 3)), rand((2, 6, 6, 8)), [2]),
        "conv3d": (seq((4, 4, 4, 8), lth_keras.MaskedConv3D(4, 2)), rand((2, 4, 4, 4, 8)), [3]),
        "conv2d_transpose": (seq((4, 4, 8), lth_keras.MaskedConv2DTranspose(4, 3)), rand((2, 4, 4, 8)), [3]),
        "depthwise": (seq((6, 6, 8), lth_keras.MaskedDepthwiseConv2D(3)), rand((2, 6, 6, 8)), [2]),
        "separable": (seq((6, 6, 8), lth_keras.MaskedSeparableConv2D(4, 3, depth_multiplier=2)),
                      rand((2, 6, 6, 8)), [2, 2]),
        "einsum": (seq((3, 8), lth_keras.MaskedEinsumDense("abc,cd->abd", output_shape=(None, 4))),
                   rand((2, 3, 8)), [0]),
        "embedding": (seq((5,), lth_keras.MaskedEmbedding(10, 8)),
                      np.random.default_rng(0).integers(0, 10, (2, 5)).astype("int32"), [1]),
        "mha": (keras.Model(q, mha_out), rand((2, 3, 8)), [0, 0, 0, 1]),
    }


def _groups_ok(mask, axis, n=2, m=4):
    """Independent check: every M consecutive entries along `axis` keep <= N."""
    moved = np.moveaxis(np.asarray(mask) != 0, axis, -1)
    groups = moved.reshape(moved.shape[:-1] + (moved.shape[-1] // m, m))
    return bool(np.all(groups.sum(-1) <= n))


@pytest.mark.parametrize("kind", list(_one_layer_models()))
def test_two_four_masks_are_valid_on_every_layer_type_after_pruning_and_after_training(kind):
    keras.utils.set_random_seed(0)
    model, x, axes = _one_layer_models()[kind]
    model(x)
    weights = lth_layers.masked_weights(model)
    assert [gradual.pattern_axis(mw) for mw in weights] == axes
    lth_keras.callbacks.prune_model(model, 0.5, pattern="2:4", output_layer=None)
    for mw, axis in zip(weights, axes):
        mask = numpy(mw.mask)
        assert _groups_ok(mask, axis), mw.name
        assert np.count_nonzero(mask) == mask.size // 2, mw.name
    assert gradual.check_pattern(model, "2:4") == {}
    # Training: masks stay N:M and pruned weights stay 0.
    masks = lth_layers.get_masks(model)
    out = model(x)
    model.compile(keras.optimizers.Adam(1e-2), loss="mse")
    target = np.asarray(numpy(out)) + 1.0
    watch = ZeroWatch()
    gmp = lth_keras.GradualMagnitudePruning(pattern="2:4", end_step=2, frequency=1)
    model.fit(x, target, batch_size=2, epochs=3, callbacks=[gmp, watch], verbose=0)
    assert gradual.check_pattern(model, "2:4") == {}
    for name, mask in lth_layers.get_masks(model).items():
        np.testing.assert_array_equal(mask, masks[name])
    assert not watch.bad, watch.bad


def _mlp_and_data():
    """A compiled 16-32-4 prunable MLP and 64 examples, seeded."""
    keras.utils.set_random_seed(0)
    model = lth_keras.make_prunable(keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4)]))
    compile_(model)
    return model, rand((64, 16)), np.random.default_rng(0).integers(0, 4, 64).astype("int32")


def test_gradual_pattern_ramps_then_is_n_m_at_the_cap():
    model, x, y = _mlp_and_data()
    gmp = lth_keras.GradualMagnitudePruning(pattern="2:4", end_step=6, frequency=2)
    watch = ZeroWatch()
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[gmp, watch], verbose=0)
    sizes = {mw.name: int(np.prod(mw.mask.shape)) for mw in lth_layers.masked_weights(model)}
    for record in gmp.updates:
        for name, reached in record["sparsity_per_layer"].items():
            assert abs(reached - record["target_per_layer"][name]) * sizes[name] <= 1.0
    assert gmp.updates[-1]["sparsity"] == 0.5
    assert gradual.check_pattern(model, "2:4") == {}
    assert not watch.bad


def test_sparsity_beyond_the_cap_and_ragged_groups_are_refused():
    model = small_cnn()  # conv has 4 input channels, fc 288 inputs, out 16
    compile_(model)
    x, y = data(16)
    with pytest.raises(ValueError, match="cap 0.5"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[lth_keras.GradualMagnitudePruning(0.6, end_step=2, pattern="2:4")])
    with pytest.raises(ValueError, match=r"not a multiple of M=8.*exclude=\['conv'\]"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[lth_keras.GradualMagnitudePruning(0.5, end_step=2, pattern="4:8")])
    with pytest.raises(ValueError, match="cap"):
        lth_keras.callbacks.prune_model(model, 0.2, pattern="1:2", output_layer=None)
        lth_keras.callbacks.prune_model(model, 0.5, pattern="1:2", output_layer=None)


def test_imp_rounds_keep_the_pattern_and_refuse_rounds_past_the_cap():
    model, x, y = _mlp_and_data()
    imp = lth_keras.IterativeMagnitudePruning(0.3, round_steps=8, output_layer=None, pattern="2:4", verbose=0)
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[imp], verbose=0)
    masks = lth_layers.get_masks(model)
    # 30% pruned, and no group of 4 along the input axis is below 2.
    for name, mask in masks.items():
        groups = np.moveaxis(mask != 0, 0, -1).reshape(-1, 4).sum(-1)
        assert groups.min() >= 2 and np.count_nonzero(mask) == mask.size - round(0.3 * mask.size), name
    with pytest.raises(ValueError, match="cap 0.5"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[
            lth_keras.IterativeMagnitudePruning(0.3, round_steps=8, output_layer=None, pattern="2:4", verbose=0)])
    keras.utils.set_random_seed(0)
    model = lth_keras.make_prunable(keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4)]))
    compile_(model)
    imp = lth_keras.IterativeMagnitudePruning(0.5, round_steps=8, output_layer=None, pattern="2:4", verbose=0)
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[imp], verbose=0)
    assert gradual.check_pattern(model, "2:4") == {} and lth_layers.fraction_remaining(model) == 0.5
