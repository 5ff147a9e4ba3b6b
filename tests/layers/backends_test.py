"""The built-in masked layers (dense, conv, embedding, attention), on every Keras backend.

Runs under KERAS_BACKEND=tensorflow (the default), jax and torch; CI runs
it once per backend, each in its own process. Nothing here may import
TensorFlow. Per layer, in the style of Keras's own layer tests: output
shape and equality with the plain layer, the mask's effect, a training
step, a `.keras` round trip and a `fold_masks` round trip.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import lth_keras
from lth_keras import layers as lth_layers
from tests.helpers import REPO


def rand(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def random_masks(model, seed=1, keep=0.5):
    rng = np.random.default_rng(seed)
    return {n: (rng.random(m.shape) < keep).astype("float32") for n, m in lth_layers.get_masks(model).items()}


# key: (masked class, plain class, constructor kwargs, input shape with batch)
SPECS = {
    "conv1d": (lth_keras.MaskedConv1D, keras.layers.Conv1D, dict(filters=4, kernel_size=3, padding="causal"), (2, 10, 3)),
    "conv2d": (lth_keras.MaskedConv2D, keras.layers.Conv2D, dict(filters=4, kernel_size=3, activation="relu"), (2, 8, 8, 3)),
    "conv3d": (lth_keras.MaskedConv3D, keras.layers.Conv3D, dict(filters=2, kernel_size=3), (1, 5, 5, 5, 2)),
    "conv2d_transpose": (
        lth_keras.MaskedConv2DTranspose, keras.layers.Conv2DTranspose, dict(filters=4, kernel_size=3, strides=2), (2, 6, 6, 3)
    ),
    "depthwise_conv2d": (
        lth_keras.MaskedDepthwiseConv2D, keras.layers.DepthwiseConv2D, dict(kernel_size=3, depth_multiplier=2), (2, 8, 8, 3)
    ),
    "separable_conv2d": (lth_keras.MaskedSeparableConv2D, keras.layers.SeparableConv2D, dict(filters=4, kernel_size=3), (2, 8, 8, 3)),
    "dense": (lth_keras.MaskedDense, keras.layers.Dense, dict(units=5, activation="tanh"), (2, 7)),
    "einsum_dense": (
        lth_keras.MaskedEinsumDense, keras.layers.EinsumDense, dict(equation="abc,cd->abd", output_shape=(4, 5), bias_axes="d"), (2, 4, 3)
    ),
    "embedding": (lth_keras.MaskedEmbedding, keras.layers.Embedding, dict(input_dim=20, output_dim=4), (2, 6)),
    "multi_head_attention": (
        lth_keras.MaskedMultiHeadAttention, keras.layers.MultiHeadAttention, dict(num_heads=2, key_dim=3), (2, 5, 6)
    ),
}

KINDS = {
    "conv1d": "conv", "conv2d": "conv", "conv3d": "conv", "conv2d_transpose": "conv", "depthwise_conv2d": "conv",
    "separable_conv2d": "conv", "dense": "dense", "einsum_dense": "dense", "embedding": "embedding",
    "multi_head_attention": "dense",
}


def make_input(key):
    shape = SPECS[key][3]
    if key == "embedding":
        return np.random.default_rng(0).integers(0, 20, size=shape).astype("int32")
    return rand(shape)


def single_layer_model(key, masked=True, name="layer"):
    masked_cls, plain_cls, kwargs, shape = SPECS[key]
    cls = masked_cls if masked else plain_cls
    dtype = "int32" if key == "embedding" else "float32"
    inputs = keras.Input(shape[1:], dtype=dtype)
    layer = cls(**kwargs, name=name)
    outputs = layer(inputs, inputs) if key == "multi_head_attention" else layer(inputs)
    return keras.Model(inputs, outputs)


def assert_same(a, b):
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


@pytest.mark.parametrize("key", sorted(SPECS))
def test_layer_equals_plain_layer_and_masks_its_kernels(key):
    x = make_input(key)
    plain = single_layer_model(key, masked=False)
    model = lth_keras.make_prunable(plain)  # masks in place on a copy
    assert type(model.get_layer("layer")) is type(plain.get_layer("layer"))
    assert_same(model(x), plain(x))
    weights = lth_layers.masked_weights(model)
    expected = {"separable_conv2d": 2, "multi_head_attention": 4}.get(key, 1)
    assert len(weights) == expected and all(mw.kind == KINDS[key] for mw in weights)
    lth_layers.set_masks(model, random_masks(model))
    assert 0.3 < lth_layers.fraction_remaining(model) < 0.7
    # The folded plain layer computes with kernel * mask: the mask acts.
    folded = lth_keras.fold_masks(model)
    assert not lth_layers.masked_layers(folded)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(folded(x)), keras.ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-6
    )
    assert np.abs(keras.ops.convert_to_numpy(model(x)) - keras.ops.convert_to_numpy(plain(x))).max() > 1e-4


@pytest.mark.parametrize("key", sorted(SPECS))
def test_output_shape_and_training_step_keep_pruned_weights_zero(key):
    x = make_input(key)
    model = single_layer_model(key)
    assert tuple(model(x).shape) == (x.shape[0],) + tuple(model.output_shape)[1:]
    lth_layers.set_masks(model, random_masks(model))
    masks = lth_layers.get_masks(model)
    before = lth_layers.get_masked_kernels(model)
    model.compile(keras.optimizers.SGD(0.1), "mse")
    target = np.ones(tuple(model(x).shape), "float32")
    model.train_on_batch(x, target)
    after = lth_layers.get_masked_kernels(model)
    for name, mask in masks.items():
        assert np.all(after[name][mask == 0] == 0), name
        assert not np.array_equal(after[name][mask == 1], before[name][mask == 1]), name


@pytest.mark.parametrize("key", sorted(SPECS))
def test_keras_round_trip_keeps_masks_and_outputs(key, tmp_path):
    x = make_input(key)
    model = single_layer_model(key)
    lth_layers.set_masks(model, random_masks(model, seed=3))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.get_layer("layer")) is SPECS[key][0]
    for name, mask in lth_layers.get_masks(model).items():
        assert_same(lth_layers.get_masks(loaded)[name], mask)
    assert_same(loaded(x), model(x))
    config = loaded.get_layer("layer").get_config()
    assert type(loaded.get_layer("layer")).from_config(config).get_config() == config


@pytest.mark.parametrize("key", sorted(SPECS))
def test_fold_masks_round_trip_loads_without_lth_keras_classes(key, tmp_path):
    x = make_input(key)
    model = single_layer_model(key)
    lth_layers.set_masks(model, random_masks(model, seed=4))
    folded = lth_keras.fold_masks(model)
    assert type(folded.get_layer("layer")) is SPECS[key][1]
    path = str(tmp_path / "plain.keras")
    folded.save(path)
    assert "lth_keras" not in open(path, "rb").read().decode("latin-1")
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-6
    )


def test_user_invented_kind_is_a_rates_key():
    model = keras.Sequential(
        [keras.Input((6,), dtype="int32"), lth_keras.MaskedEmbedding(50, 8, name="emb"), keras.layers.Flatten(),
         lth_keras.MaskedDense(3, name="out")]
    )
    lth_keras.callbacks.prune_model(model, rates={"embedding": 0.5}, output_layer=None)
    counts = lth_layers.count_weights(model)
    assert counts["emb"] == (200, 400) and counts["out"] == (144, 144)
    with pytest.raises(ValueError, match="Unknown key 'attention'"):
        lth_keras.callbacks.prune_model(model, rates={"attention": 0.5})


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="the check is for the other backends")
def test_import_does_not_import_tensorflow():
    # Only the import: Keras itself imports TensorFlow lazily (when it is
    # installed) the first time it serializes a config, on any backend.
    code = (
        "import sys, lth_keras, lth_keras.layers.prunable, lth_keras.callbacks, lth_keras.models; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("key", sorted(SPECS))
def test_premasked_fast_path_is_exact_once_pruned_weights_are_zero(key):
    # The Trainer traces its step inside `premasked`: every masked weight,
    # the attention projections included, must then be read as stored.
    x = make_input(key)
    model = single_layer_model(key)
    for i, mw in enumerate(lth_layers.masked_weights(model)):
        # Raw mask writes: the pruned entries still hold their values.
        mw.mask.assign((np.random.default_rng(i).random(mw.mask.shape) < 0.5).astype("float32"))
    reference = numpy_of(model(x))
    with lth_layers.premasked(model):
        stale = numpy_of(model(x))
    assert not np.allclose(stale, reference)
    lth_layers.apply_masks_to_weights(model)
    with lth_layers.premasked(model):
        np.testing.assert_array_equal(numpy_of(model(x)), reference)


def numpy_of(x):
    return keras.ops.convert_to_numpy(x)
