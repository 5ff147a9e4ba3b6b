"""Tests for lth_keras.layers: masked layers, the MaskedLayer protocol,
model-level mask helpers, fold_masks and `.keras` round trips.

Per layer, in the style of Keras's own layer tests: output shape, a training
step, serialization; plus equality with the plain Keras layer.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import _lenet as L
import lth_keras
from lth_keras import layers as lth_layers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


# User-defined prunable layers (the MaskedLayer protocol).


@keras.saving.register_keras_serializable(package="lth_layers_test")
class UserMaskedLinear(lth_keras.MaskedLayer, keras.layers.Layer):
    """A layer written from scratch and made prunable through MaskedLayer."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_normal", name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
        self.add_mask("kernel")

    def call(self, inputs):
        return keras.ops.matmul(inputs, self.masked("kernel")) + self.bias

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="lth_layers_test")
class TwoMaskCell(lth_keras.MaskedLayer, keras.layers.Layer):
    """Masks two weights: names become '<layer>/<weight>'."""

    pruning_kind = "recurrent"

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 3), name="kernel")
        self.recurrent = self.add_weight(shape=(3, 3), name="recurrent")
        self.add_mask("kernel")
        self.add_mask("recurrent", "rec_mask")

    def call(self, inputs):
        h = keras.ops.matmul(inputs, self.masked("kernel"))
        return keras.ops.matmul(h, self.masked("recurrent"))




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


@pytest.mark.parametrize("make", ["dense", "conv"])
def test_training_step_keeps_pruned_weights_at_zero(make):
    keras.utils.set_random_seed(0)
    if make == "dense":
        model = keras.Sequential([keras.Input((6,)), lth_keras.MaskedDense(8, activation="relu", name="a"), lth_keras.MaskedDense(3, name="b")])
        x = rand((16, 6))
    else:
        model = keras.Sequential([keras.Input((6, 6, 2)), lth_keras.MaskedConv2D(4, 3, activation="relu", name="a"), keras.layers.Flatten(), lth_keras.MaskedDense(3, name="b")])
        x = rand((16, 6, 6, 2))
    y = np.arange(16) % 3
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    masks = {name: random_mask(m.shape, i) for i, (name, m) in enumerate(lth_layers.get_masks(model).items())}
    lth_layers.set_masks(model, masks)
    before = lth_layers.get_masked_kernels(model)
    for name in masks:
        assert np.all(before[name][masks[name] == 0] == 0)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    after = lth_layers.get_masked_kernels(model)
    for name, mask in masks.items():
        assert np.array_equal(lth_layers.get_masks(model)[name], mask)  # masks are not trained
        assert np.all(after[name][mask == 0] == 0)
        assert np.all(after[name][mask == 1] != before[name][mask == 1])  # survivors trained


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


# ============================================================== MaskedLayer protocol


def test_user_masked_layer_protocol():
    layer = UserMaskedLinear(3, name="user")
    x = rand((4, 5))
    y = layer(x)
    assert tuple(y.shape) == (4, 3)
    assert layer.kernel_mask.shape == (5, 3) and not layer.kernel_mask.trainable
    (mw,) = layer.masked_weights()
    assert (mw.name, mw.kind) == ("user", "dense")
    assert mw.weight is layer.kernel and mw.mask is layer.kernel_mask
    mask = random_mask((5, 3), 1)
    layer.kernel_mask.assign(mask)
    np.testing.assert_allclose(layer(x).numpy(), x @ (layer.kernel.numpy() * mask) + layer.bias.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="unmasked_class"):
        layer.unmasked_layer()


def test_layer_with_two_masks_names_them_by_weight():
    model = keras.Sequential([keras.Input((4,)), TwoMaskCell(name="cell"), lth_keras.MaskedDense(2, name="out")])
    names = [(mw.name, mw.kind) for mw in lth_layers.masked_weights(model)]
    assert names == [("cell/kernel", "recurrent"), ("cell/recurrent", "recurrent"), ("out", "dense")]
    cell = model.get_layer("cell")
    assert cell.rec_mask.shape == (3, 3) and cell.kernel_mask.shape == (4, 3)
    # A layer name in include/exclude matches all its masked weights.
    assert [mw.name for mw in lth_layers.masked_weights(model, exclude=["cell"])] == ["out"]
    assert [mw.name for mw in lth_layers.masked_weights(model, include=["cell/rec*"])] == ["cell/recurrent"]


def test_docstring_masked_depthwise_conv2d():
    x = rand((2, 6, 6, 3))
    layer = L.MaskedDepthwiseConv2D(3, depth_multiplier=2, padding="same")
    plain = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")
    plain.build(x.shape)
    layer.build(x.shape)
    layer.kernel.assign(plain.kernel.numpy())
    plain.bias.assign(rand(plain.bias.shape, 1))
    layer.bias.assign(plain.bias.numpy())
    assert np.array_equal(layer(x).numpy(), plain(x).numpy())
    mask = random_mask(layer.kernel.shape, 2)
    layer.kernel_mask.assign(mask)
    plain.kernel.assign(layer.kernel.numpy() * mask)
    assert np.array_equal(layer(x).numpy(), plain(x).numpy())
    (mw,) = layer.masked_weights()
    assert mw.kind == "conv" and mw.mask is layer.kernel_mask
    folded = layer.unmasked_layer()
    assert type(folded) is keras.layers.DepthwiseConv2D


# ============================================================== model-level helpers


def small_model():
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            lth_keras.MaskedConv2D(3, 3, name="conv"),
            keras.layers.Flatten(),
            lth_keras.MaskedDense(5, activation="relu", name="fc"),
            keras.layers.Dense(4, name="plain"),
            lth_keras.MaskedDense(2, name="out"),
        ]
    )


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


# ============================================================== fold_masks


def check_folded(model, x):
    masks, kernels = lth_layers.get_masks(model), lth_layers.get_masked_kernels(model)
    folded = lth_layers.fold_masks(model)
    assert not lth_layers.masked_layers(folded)
    kinds = [type(layer).__name__ for layer in folded.layers]
    assert "MaskedDense" not in kinds and "MaskedConv2D" not in kinds
    assert np.array_equal(folded(x).numpy(), model(x).numpy())
    for layer in lth_layers.masked_layers(model):
        plain = folded.get_layer(layer.name)
        assert type(plain) is layer.unmasked_class
        assert np.array_equal(plain.kernel.numpy(), kernels[layer.name] * masks[layer.name])
    assert "lth_keras" not in json.dumps(folded.get_config())
    return folded


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


def test_fold_masks_sequential_gives_plain_layers_with_identical_outputs():
    model = small_model()
    for i, layer in enumerate(lth_layers.masked_layers(model)):
        layer.mask.assign(random_mask(layer.mask.shape, i))  # raw: kernels keep pruned values
    check_folded(model, rand((3, 6, 6, 2)))


def test_fold_masks_functional():
    inp = keras.Input((6, 6, 2))
    x = lth_keras.MaskedConv2D(3, 3, name="conv")(inp)
    x = keras.layers.Flatten()(x)
    out = lth_keras.MaskedDense(2, name="out")(x)
    model = keras.Model(inp, out)
    lth_layers.set_masks(model, {"conv": random_mask((3, 3, 2, 3), 1), "out": random_mask((48, 2), 2)})
    check_folded(model, rand((3, 6, 6, 2)))


def test_fold_masks_subclassed_model():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = lth_keras.MaskedDense(2)

        def call(self, x):
            return self.fc(x)

    model = Net()
    x = rand((4, 3))
    model(x)
    lth_layers.set_masks(model, {model.fc.name: random_mask((3, 2), 1)})
    folded = lth_layers.fold_masks(model)
    assert type(folded) is Net and type(folded.fc) is keras.layers.Dense
    assert folded.name == model.name
    np.testing.assert_array_equal(folded(x).numpy(), model(x).numpy())
    np.testing.assert_array_equal(folded.fc.kernel.numpy(), model.fc.kernel.numpy() * model.fc.mask.numpy())


# ============================================================== .keras round trip in a fresh process

USER_MODULE = '''
import keras
import lth_keras


@keras.saving.register_keras_serializable(package="lth_user")
class ScaledMaskedDense(lth_keras.MaskedDense):
    """A user subclass of MaskedDense with its own constructor argument."""

    def __init__(self, units, scale=1.0, **kwargs):
        super().__init__(units, **kwargs)
        self.scale = float(scale)

    def call(self, inputs, training=None):
        return super().call(inputs, training=training) * self.scale

    def get_config(self):
        config = super().get_config()
        config["scale"] = self.scale
        return config


@keras.saving.register_keras_serializable(package="lth_user")
class MaskedConvNet(keras.Model):
    def __init__(self, classes=5, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.conv = lth_keras.MaskedConv2D(4, 3, activation="relu", name="conv")
        self.flatten = keras.layers.Flatten()
        self.head = ScaledMaskedDense(classes, scale=3.0, name="head")

    def call(self, inputs):
        return self.head(self.flatten(self.conv(inputs)))

    def get_config(self):
        return {"classes": self.classes, "name": self.name}
'''

CHILD = '''
import json, sys
import numpy as np
import keras
import lth_keras
from lth_keras import layers as L
import lth_user_layers

work = sys.argv[1]
report = {}
for variant in json.load(open(work + "/variants.json")):
    exp = np.load(f"{work}/{variant}.npz")
    model = keras.saving.load_model(f"{work}/{variant}.keras")
    masks, kernels = L.get_masks(model), L.get_masked_kernels(model)
    names = sorted(k[len("mask::"):] for k in exp.files if k.startswith("mask::"))
    n_vars = int(exp["n_vars"])
    out = model(exp["x"]).numpy()
    report[variant] = {
        "names": sorted(masks),
        "masks": all(np.array_equal(masks[n], exp["mask::" + n]) for n in names),
        "kernels": all(np.array_equal(kernels[n], exp["kernel::" + n]) for n in names),
        "variables": len(model.weights) == n_vars and all(
            np.array_equal(v.numpy(), exp[f"var::{i}"]) for i, v in enumerate(model.weights)),
        "outputs": bool(np.array_equal(out, exp["y"])),
        "out_dtype": str(out.dtype),
        "scales": [l.scale for l in L.masked_layers(model) if isinstance(l, lth_user_layers.ScaledMaskedDense)],
        "classes": sorted({type(l).__name__ for l in L.masked_layers(model)}),
        "policies": sorted({l.dtype_policy.name for l in L.masked_layers(model)}),
        "model_class": type(model).__name__,
    }
json.dump(report, open(work + "/report.json", "w"))
'''


def build_variant(variant, user):
    conv_input = keras.Input((8, 8, 3))
    if variant == "sequential_dense":
        return keras.Sequential(
            [keras.Input((12,)), lth_keras.MaskedDense(8, activation="relu", name="fc1"), user.ScaledMaskedDense(5, scale=3.0, name="head")]
        )
    if variant in ("sequential_conv", "mixed_float16"):
        return keras.Sequential(
            [
                conv_input,
                lth_keras.MaskedConv2D(4, 3, activation="relu", name="conv1"),
                lth_keras.MaskedConv2D(6, 3, padding="same", name="conv2"),
                keras.layers.Flatten(),
                lth_keras.MaskedDense(7, activation="relu", name="fc"),
                user.ScaledMaskedDense(5, scale=3.0, name="head"),
            ]
        )
    if variant == "functional":
        x = lth_keras.MaskedConv2D(4, 3, activation="relu", name="conv")(conv_input)
        x = keras.layers.Flatten()(x)
        return keras.Model(conv_input, user.ScaledMaskedDense(5, scale=3.0, name="head")(x))
    if variant == "subclassed":
        return user.MaskedConvNet(classes=5, name="convnet")
    raise AssertionError(variant)


VARIANTS = ("sequential_dense", "sequential_conv", "functional", "subclassed", "mixed_float16")


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    """Saves every variant with sparse masks, loads all in ONE fresh process."""
    work = tmp_path_factory.mktemp("roundtrip")
    (work / "lth_user_layers.py").write_text(USER_MODULE)
    (work / "child.py").write_text(CHILD)
    sys.path.insert(0, str(work))
    try:
        import lth_user_layers as user

        expected_config = {}
        for i, variant in enumerate(VARIANTS):
            keras.utils.set_random_seed(i)
            if variant == "mixed_float16":
                keras.mixed_precision.set_dtype_policy("mixed_float16")
            try:
                model = build_variant(variant, user)
                x = rand((3, 12) if variant == "sequential_dense" else (3, 8, 8, 3), 10 + i)
                model(x)
                masks = {mw.name: random_mask(mw.mask.shape, 20 + j) for j, mw in enumerate(lth_layers.masked_weights(model))}
                lth_layers.set_masks(model, masks)
                for v in model.weights:  # non-zero biases, so a lost bias shows
                    if v.path.endswith("bias"):
                        v.assign(rand(v.shape, 30))
                arrays = {"x": x, "y": model(x).numpy(), "n_vars": np.array(len(model.weights))}
                for mw in lth_layers.masked_weights(model):
                    arrays["mask::" + mw.name] = mw.mask.numpy()
                    arrays["kernel::" + mw.name] = mw.weight.numpy()
                for j, v in enumerate(model.weights):
                    arrays[f"var::{j}"] = v.numpy()
                np.savez(work / f"{variant}.npz", **arrays)
                model.save(work / f"{variant}.keras")
                expected_config[variant] = {
                    "names": sorted(masks),
                    "classes": sorted({type(layer).__name__ for layer in lth_layers.masked_layers(model)}),
                    "model_class": type(model).__name__,
                    "pruned": {n: int((m == 0).sum()) for n, m in masks.items()},
                }
            finally:
                keras.mixed_precision.set_dtype_policy("float32")
    finally:
        sys.path.remove(str(work))
    (work / "variants.json").write_text(json.dumps(list(VARIANTS)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(work), REPO] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("KERAS_BACKEND", "tensorflow")
    proc = subprocess.run(
        [sys.executable, str(work / "child.py"), str(work)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((work / "report.json").read_text()), expected_config


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_keras_round_trip_in_fresh_process(round_trip, variant):
    report, expected = round_trip
    got, exp = report[variant], expected[variant]
    assert all(n > 0 for n in exp["pruned"].values())  # masks really sparse
    assert got["names"] == exp["names"]
    assert got["classes"] == exp["classes"]
    assert got["model_class"] == exp["model_class"]
    assert got["masks"], "masks changed"
    assert got["kernels"], "kernels changed"
    assert got["variables"], "variables changed"
    assert got["outputs"], "outputs changed"
    assert got["scales"] == [3.0], "the subclass's own constructor argument was lost"
    if variant == "mixed_float16":
        assert got["policies"] == ["mixed_float16"] and got["out_dtype"] == "float16"
    else:
        assert got["policies"] == ["float32"] and got["out_dtype"] == "float32"


def test_global_policy_restored_after_round_trip_fixture(round_trip):
    assert keras.config.dtype_policy().name == "float32"
