"""Tests for lth_keras.layers.dense: MaskedDense against keras.layers.Dense.

In the style of Keras's own layer tests: output shape and variables, equality
with the plain layer (mixed precision too), the mask's effect and gradient,
serialization. TensorFlow only (the layers on every backend:
tests/layers/backends_test.py).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import lth_keras


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def rand(shape, seed=0, dtype="float32"):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def random_mask(shape, seed, keep=0.5):
    return (np.random.default_rng(seed).random(shape) < keep).astype("float32")


# ============================================================== MaskedDense


@pytest.mark.parametrize("in_shape,units", [((4, 6), 3), ((2, 5, 7), 4), ((1, 1), 1)])
def test_masked_dense_output_shape_and_variables(in_shape, units):
    layer = lth_keras.MaskedDense(units)
    y = layer(np.ones(in_shape, "float32"))
    assert tuple(y.shape) == in_shape[:-1] + (units,)
    assert layer.compute_output_shape(in_shape) == in_shape[:-1] + (units,)
    assert layer.mask.shape == (in_shape[-1], units)
    assert np.array_equal(layer.mask.numpy(), np.ones((in_shape[-1], units)))
    assert not layer.mask.trainable
    assert [v.name for v in layer.trainable_weights] == ["kernel", "bias"]
    assert [v.name for v in layer.non_trainable_weights] == ["mask"]
    assert isinstance(layer, keras.layers.Dense) and isinstance(layer, lth_keras.MaskedLayer)
    (mw,) = layer.masked_weights()
    assert mw.name == layer.name and mw.kind == "dense"
    assert mw.weight is layer.kernel and mw.mask is layer.mask


@pytest.mark.parametrize(
    "kwargs,in_shape",
    [({"units": 5}, (8, 6)), ({"units": 5, "activation": "relu", "use_bias": False}, (8, 6)), ({"units": 3, "activation": "tanh"}, (2, 4, 6))],
)
def test_masked_dense_with_ones_mask_equals_dense(kwargs, in_shape):
    x = rand(in_shape)
    dense, masked = keras.layers.Dense(**kwargs), lth_keras.MaskedDense(**kwargs)
    dense.build(in_shape)
    masked.build(in_shape)
    dense.kernel.assign(rand(dense.kernel.shape, 1))
    masked.kernel.assign(dense.kernel.numpy())
    if dense.use_bias:
        dense.bias.assign(rand(dense.bias.shape, 2))
        masked.bias.assign(dense.bias.numpy())
    assert np.array_equal(masked(x).numpy(), dense(x).numpy())


def test_masked_dense_with_ones_mask_equals_dense_mixed_precision(mixed_precision):
    x = rand((8, 6))
    dense, masked = keras.layers.Dense(5), lth_keras.MaskedDense(5)
    dense.build((8, 6))
    masked.build((8, 6))
    masked.kernel.assign(dense.kernel.numpy())
    masked.bias.assign(rand((5,), 2))
    dense.bias.assign(masked.bias.numpy())
    assert masked.kernel.dtype == "float32" and masked.mask.dtype == "float32"
    y = masked(x)
    assert y.dtype == "float16"
    assert np.array_equal(y.numpy(), dense(x).numpy())


def test_masked_dense_pruned_mask_matches_reference():
    x = rand((7, 6))
    layer = lth_keras.MaskedDense(4, activation="relu")
    layer.build((7, 6))
    layer.bias.assign(rand((4,), 3))
    kernel, mask = layer.kernel.numpy(), random_mask((6, 4), 4)
    layer.mask.assign(mask)  # raw mask only: the kernel keeps its pruned values
    ref = np.maximum(x.astype(np.float64) @ (kernel * mask) + layer.bias.numpy(), 0)
    np.testing.assert_allclose(layer(x).numpy(), ref, rtol=1e-5, atol=1e-6)
    # Bit-identical to a plain Dense holding kernel * mask.
    dense = keras.layers.Dense(4, activation="relu")
    dense.build((7, 6))
    dense.kernel.assign(kernel * mask)
    dense.bias.assign(layer.bias.numpy())
    assert np.array_equal(layer(x).numpy(), dense(x).numpy())
    # All-zero mask: only the bias is left.
    layer.mask.assign(np.zeros((6, 4)))
    assert np.array_equal(layer(x).numpy(), np.broadcast_to(np.maximum(layer.bias.numpy(), 0), (7, 4)))


def test_masked_dense_gradient_of_pruned_entries_is_zero():
    layer = lth_keras.MaskedDense(4)
    x = rand((5, 6))
    layer.build((5, 6))
    mask = random_mask((6, 4), 5)
    layer.mask.assign(mask)
    with tf.GradientTape() as tape:
        loss = keras.ops.sum(keras.ops.square(layer(x)))
    grad_kernel, grad_bias = tape.gradient(loss, [layer.kernel, layer.bias])
    grad_kernel = grad_kernel.numpy()
    assert np.all(grad_kernel[mask == 0] == 0)
    assert np.all(grad_kernel[mask == 1] != 0)
    assert np.all(grad_bias.numpy() != 0)


def test_masked_dense_serialization():
    kwargs = dict(units=7, activation="relu", use_bias=False, kernel_initializer="glorot_normal", name="fc")
    layer = lth_keras.MaskedDense(**kwargs)
    config = layer.get_config()
    dense_config = keras.layers.Dense(**kwargs).get_config()
    assert config == dense_config
    clone = lth_keras.MaskedDense.from_config(config)
    assert type(clone) is lth_keras.MaskedDense and clone.get_config() == config
    assert keras.saving.get_registered_name(lth_keras.MaskedDense) == "lth_keras>MaskedDense"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is lth_keras.MaskedDense and restored.get_config() == config
