"""Tests for lth_keras.layers.conv: MaskedConv2D against keras.layers.Conv2D and
a numpy reference. TensorFlow only (every masked convolution on every
backend: tests/layers/backends_test.py).
"""

import keras
import numpy as np
import pytest

import lth_keras


def rand(shape, seed=0, dtype="float32"):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def random_mask(shape, seed, keep=0.5):
    return (np.random.default_rng(seed).random(shape) < keep).astype("float32")


# ============================================================== MaskedConv2D

CONV_CASES = [
    (dict(filters=4, kernel_size=3), (2, 9, 9, 3)),
    (dict(filters=5, kernel_size=(3, 2), strides=2, padding="same", activation="relu"), (2, 9, 8, 3)),
    (dict(filters=4, kernel_size=3, dilation_rate=2, use_bias=False), (1, 10, 10, 2)),
    (dict(filters=4, kernel_size=1, groups=2), (2, 5, 5, 4)),
]


@pytest.mark.parametrize("kwargs,in_shape", CONV_CASES)
def test_masked_conv2d_output_shape_and_variables(kwargs, in_shape):
    layer = lth_keras.MaskedConv2D(**kwargs)
    y = layer(np.ones(in_shape, "float32"))
    plain = keras.layers.Conv2D(**kwargs)
    assert tuple(y.shape) == tuple(plain.compute_output_shape(in_shape))
    assert layer.mask.shape == layer.kernel.shape
    assert np.array_equal(layer.mask.numpy(), np.ones(layer.kernel.shape))
    assert not layer.mask.trainable
    assert [v.name for v in layer.non_trainable_weights] == ["mask"]
    (mw,) = layer.masked_weights()
    assert mw.kind == "conv" and mw.weight is layer.kernel and mw.mask is layer.mask


@pytest.mark.parametrize("kwargs,in_shape", CONV_CASES)
def test_masked_conv2d_with_ones_mask_equals_conv2d(kwargs, in_shape):
    x = rand(in_shape)
    conv, masked = keras.layers.Conv2D(**kwargs), lth_keras.MaskedConv2D(**kwargs)
    conv.build(in_shape)
    masked.build(in_shape)
    masked.kernel.assign(conv.kernel.numpy())
    if conv.use_bias:
        conv.bias.assign(rand(conv.bias.shape, 2))
        masked.bias.assign(conv.bias.numpy())
    assert np.array_equal(masked(x).numpy(), conv(x).numpy())
    # With a sparse mask it equals Conv2D holding kernel * mask.
    mask = random_mask(masked.kernel.shape, 3)
    masked.mask.assign(mask)
    conv.kernel.assign(masked.kernel.numpy() * mask)
    assert np.array_equal(masked(x).numpy(), conv(x).numpy())


def test_masked_conv2d_matches_numpy_reference():
    x = rand((2, 5, 5, 2))
    layer = lth_keras.MaskedConv2D(3, 3)
    layer.build(x.shape)
    layer.bias.assign(rand((3,), 1))
    mask = random_mask(layer.kernel.shape, 2)
    layer.mask.assign(mask)
    k = layer.kernel.numpy().astype(np.float64) * mask
    ref = np.zeros((2, 3, 3, 3))
    for i in range(3):
        for j in range(3):
            patch = x[:, i:i + 3, j:j + 3, :].astype(np.float64)
            ref[:, i, j, :] = np.einsum("bhwc,hwcf->bf", patch, k)
    ref += layer.bias.numpy()
    np.testing.assert_allclose(layer(x).numpy(), ref, rtol=1e-5, atol=1e-5)


def test_masked_conv2d_serialization():
    kwargs = dict(filters=6, kernel_size=(3, 3), strides=(2, 2), padding="same", activation="relu", name="conv")
    layer = lth_keras.MaskedConv2D(**kwargs)
    config = layer.get_config()
    assert config == keras.layers.Conv2D(**kwargs).get_config()
    clone = lth_keras.MaskedConv2D.from_config(config)
    assert type(clone) is lth_keras.MaskedConv2D and clone.get_config() == config
    assert keras.saving.get_registered_name(lth_keras.MaskedConv2D) == "lth_keras>MaskedConv2D"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is lth_keras.MaskedConv2D
