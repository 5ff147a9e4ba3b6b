"""Tests for lth_keras.layers.prunable: make_prunable and fold_masks on every
kind of model, on every backend.

Runs under KERAS_BACKEND=tensorflow (the default), jax and torch; nothing
here may import TensorFlow. For each kind of model (Sequential, functional,
nested, subclassed, a transformer block, keras.applications networks):
outputs before pruning equal the original's; one global prune at 50% leaves
P_m within one weight of the expected count with pruned weights exactly 0;
two IMP rounds in `model.fit` reset the survivors to θ0 bit for bit;
`fold_masks` gives the masked model's outputs.
"""

import json
import warnings

import keras
import numpy as np
import pytest

import lth_keras
from lth_keras import callbacks as lth_callbacks
from lth_keras import layers as lth_layers
from lth_keras import pruning
from tests.helpers.small_models import random_mask, small_model

IMAGE = (32, 32, 3)
TOKENS = 8


def rand(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def sequential():
    return keras.Sequential(
        [
            keras.Input(IMAGE),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="sequential_net",
    )


def functional():
    inputs = keras.Input(IMAGE)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    a = keras.layers.Conv2D(8, 3, padding="same")(x)
    b = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.Add()([a, b])
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="functional_net")


def nested():
    backbone = keras.Sequential(
        [keras.Input(IMAGE), keras.layers.Conv2D(8, 3, strides=2), keras.layers.SeparableConv2D(8, 3)], name="backbone"
    )
    inputs = keras.Input(IMAGE)
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="nested_net")


class SubclassedNet(keras.Model):
    """Plain layers created in __init__, a list of them included."""

    def __init__(self, num_classes=10, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.stem = keras.layers.Conv2D(8, 3, strides=2, activation="relu")
        self.norm = keras.layers.BatchNormalization()
        self.blocks = [keras.layers.Conv2D(8, 3, padding="same", activation="relu") for _ in range(2)]
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(num_classes)

    def call(self, x, training=False):
        x = self.norm(self.stem(x), training=training)
        for block in self.blocks:
            x = block(x)
        return self.head(self.pool(x))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def subclassed():
    model = SubclassedNet(name="subclassed_net")
    model(rand((1, *IMAGE)))
    return model


def transformer():
    tokens = keras.Input((TOKENS,), dtype="int32")
    x = keras.layers.Embedding(50, 16)(tokens)
    attention = keras.layers.MultiHeadAttention(2, key_dim=8, name="attention")(x, x)
    x = keras.layers.LayerNormalization()(keras.layers.Add()([x, attention]))
    ff = keras.layers.Dense(32, activation="relu")(x)
    ff = keras.layers.Dense(16)(ff)
    x = keras.layers.LayerNormalization()(keras.layers.Add()([x, ff]))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(10)(x), name="transformer_block")


def mobilenet_v2():
    return keras.applications.MobileNetV2(input_shape=IMAGE, alpha=0.35, weights=None, classes=10, classifier_activation=None)


def resnet50():
    return keras.applications.ResNet50(input_shape=IMAGE, weights=None, classes=10, classifier_activation=None)


def efficientnet_b0():
    return keras.applications.EfficientNetB0(input_shape=IMAGE, weights=None, classes=10, classifier_activation=None)


BUILDERS = {
    "sequential": sequential,
    "functional": functional,
    "nested": nested,
    "subclassed": subclassed,
    "transformer": transformer,
    "mobilenet_v2": mobilenet_v2,
    "resnet50": resnet50,
    "efficientnet_b0": efficientnet_b0,
}
HEAVY = {"resnet50", "efficientnet_b0"}
KINDS = [pytest.param(k, marks=pytest.mark.slow) if k in HEAVY else k for k in BUILDERS]


def inputs_for(kind, n=4, seed=0):
    if kind == "transformer":
        return np.random.default_rng(seed).integers(0, 50, size=(n, TOKENS)).astype("int32")
    return rand((n, *IMAGE), seed)


_CACHE = {}


def original_and_prunable(kind):
    """One original and one converted model per kind and process: the heavy
    networks are built once."""
    if kind not in _CACHE:
        keras.utils.set_random_seed(0)
        original = BUILDERS[kind]()
        _CACHE[kind] = (original, lth_keras.make_prunable(original))
    return _CACHE[kind]


def fresh_prunable(kind):
    """A prunable copy nobody else prunes or trains."""
    original, _ = original_and_prunable(kind)
    return lth_keras.make_prunable(original)


def non_mask_variables(model):
    masks = {id(mw.mask) for mw in lth_layers.masked_weights(model)}
    return [v for v in model.weights if id(v) not in masks]


@pytest.mark.parametrize("kind", KINDS)
def test_outputs_and_weights_equal_the_originals(kind):
    original, model = original_and_prunable(kind)
    x = inputs_for(kind)
    np.testing.assert_array_equal(numpy(model(x)), numpy(original(x)))
    assert not lth_layers.masked_layers(original), "the original must be left as it was"
    ours = non_mask_variables(model)
    assert len(ours) == len(original.weights)
    for a, b in zip(ours, original.weights):
        np.testing.assert_array_equal(numpy(a), numpy(b))
    assert lth_layers.fraction_remaining(model) == 1.0
    assert lth_layers.masked_weights(model)


@pytest.mark.parametrize("kind", KINDS)
def test_global_prune_at_half_then_fold(kind):
    model = fresh_prunable(kind)
    counts = lth_layers.count_weights(model)
    total = sum(t for _, t in counts.values())
    lth_callbacks.prune_model(model, 0.5, scope="global")
    remaining = sum(r for r, _ in lth_layers.count_weights(model).values())
    assert abs(remaining - (total - pruning.num_to_prune(total, 0.5))) <= 1
    masks, kernels = lth_layers.get_masks(model), lth_layers.get_masked_kernels(model)
    for name, mask in masks.items():
        assert np.all(kernels[name][mask == 0] == 0.0), name
    if kind == "mobilenet_v2":
        depthwise = [mw for mw in lth_layers.masked_weights(model) if isinstance(mw.layer, keras.layers.DepthwiseConv2D)]
        assert len(depthwise) == 17
        assert all(np.count_nonzero(masks[mw.name] == 0) for mw in depthwise)
    if kind == "transformer":
        projections = [f"attention/{p}" for p in ("query", "key", "value", "attention_output")]
        for name in projections:
            assert 0 < np.count_nonzero(masks[name]) < masks[name].size, name
    x = inputs_for(kind, seed=1)
    folded = lth_keras.fold_masks(model)
    assert not lth_layers.masked_layers(folded)
    np.testing.assert_allclose(numpy(folded(x)), numpy(model(x)), rtol=1e-5, atol=1e-5)


class _Probe(keras.callbacks.Callback):
    """Records the weights right after the first round ends (after IMP)."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.values = [np.array(numpy(v)) for v in self.model.weights]


@pytest.mark.parametrize("kind", KINDS)
def test_two_imp_rounds_in_fit_reset_survivors_to_theta0(kind):
    model = fresh_prunable(kind)
    theta0 = [np.array(numpy(v)) for v in model.weights]
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = inputs_for(kind, n=8, seed=2), np.arange(8) % 10
    imp = lth_keras.IterativeMagnitudePruning(rates=0.5, scope="global", round_epochs=1, verbose=0)
    probe = _Probe()
    model.fit(x, y, batch_size=4, epochs=2, callbacks=[imp, probe], verbose=0)
    assert [r["round"] for r in imp.rounds] == [0, 1]
    assert imp.rounds[1]["pm"] == pytest.approx(50.0, abs=0.01)
    by_id = {id(v): i for i, v in enumerate(model.weights)}
    masked_ids = set()
    for mw in lth_layers.masked_weights(model):
        i, m = by_id[id(mw.weight)], by_id[id(mw.mask)]
        masked_ids.add(i)
        mask = probe.values[m]
        np.testing.assert_array_equal(probe.values[i], np.where(mask != 0, theta0[i], 0.0))
    for i, (after, before) in enumerate(zip(probe.values, theta0)):
        if i not in masked_ids and model.weights[i].trainable:
            np.testing.assert_array_equal(after, before)


def test_exclude_leaves_layers_dense_and_checks_patterns():
    original, _ = original_and_prunable("mobilenet_v2")
    model = lth_keras.make_prunable(original, exclude=["Conv1", "block_1*"])
    names = {mw.layer.name for mw in lth_layers.masked_weights(model)}
    assert "Conv1" not in names and not any(n.startswith("block_1") for n in names)
    assert "block_2_depthwise" in names and type(model.get_layer("Conv1")) is keras.layers.Conv2D
    with pytest.raises(ValueError, match="no_such_layer"):
        lth_keras.make_prunable(original, exclude=["no_such_layer"])
    with pytest.raises(ValueError, match="list"):
        lth_keras.make_prunable(original, exclude="Conv1")


class ScaledDense(keras.layers.Dense):
    """A user's Dense subclass: masked in place, its own call kept."""

    def call(self, inputs):
        return 2.0 * super().call(inputs)


class OwnKernel(keras.layers.Layer):
    """A user's layer with a kernel of its own: nothing lth_keras knows."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 4), name="kernel")

    def call(self, inputs):
        return keras.ops.matmul(inputs, self.kernel)


def test_unmaskable_layers_are_named_in_one_warning_and_subclasses_keep_their_call():
    inputs = keras.Input((5, 3))
    x = keras.layers.LSTM(4)(inputs)
    x = OwnKernel(name="own_1")(x)
    x = OwnKernel(name="own_2")(x)
    x = ScaledDense(4, name="scaled")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prunable = lth_keras.make_prunable(model)
    messages = [str(w.message) for w in caught if "make_prunable" in str(w.message)]
    assert len(messages) == 1
    assert "OwnKernel (own_1, own_2)" in messages[0] and "LSTM" not in messages[0]
    assert [mw.name for mw in lth_layers.masked_weights(prunable)] == [
        "lstm/kernel", "lstm/recurrent_kernel", "scaled", "out"]
    x = rand((2, 5, 3))
    np.testing.assert_array_equal(numpy(prunable(x)), numpy(model(x)))
    # Pruning the subclass's whole kernel leaves its bias, doubled by its own call.
    masks = lth_layers.get_masks(prunable)
    lth_layers.set_masks(prunable, {"scaled": np.zeros_like(masks["scaled"])})
    scaled = prunable.get_layer("scaled")
    probe = keras.Model(prunable.inputs, scaled.output)
    np.testing.assert_allclose(numpy(probe(x)), np.broadcast_to(2.0 * numpy(scaled.bias), (2, 4)), rtol=1e-6)
    # Keras cannot reload OwnKernel (unregistered): copied layer by layer, masks too.
    copy = lth_keras.prunable.copy_model(prunable)
    assert lth_layers.get_masks(copy).keys() == masks.keys()
    np.testing.assert_array_equal(lth_layers.get_masks(copy)["scaled"], np.zeros_like(masks["scaled"]))
    folded = lth_keras.fold_masks(prunable)
    assert not lth_layers.masked_weights(folded)
    np.testing.assert_allclose(numpy(folded(x)), numpy(prunable(x)), rtol=1e-6, atol=1e-6)


def test_unbuilt_model_gets_an_error_saying_how_to_build_it():
    model = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"not built.*keras\.Input.*model\.build"):
        lth_keras.make_prunable(model)
    with pytest.raises(ValueError, match="not built"):
        lth_keras.fold_masks(model)


def test_fold_masks_folds_a_masked_model_nested_in_another():
    # Before make_prunable existed, fold_masks re-created a nested model
    # from its config: its masked layers were neither folded nor pruned.
    inner = keras.Sequential(
        [keras.Input((6,)), lth_keras.MaskedDense(8, activation="relu", name="hidden")], name="inner"
    )
    inputs = keras.Input((6,))
    model = keras.Model(inputs, lth_keras.MaskedDense(3, name="out")(inner(inputs)))
    rng = np.random.default_rng(0)
    lth_layers.set_masks(model, {n: (rng.random(m.shape) < 0.5).astype("float32") for n, m in lth_layers.get_masks(model).items()})
    folded = lth_layers.fold_masks(model)
    assert not lth_layers.masked_layers(folded)
    assert type(folded.get_layer("inner").get_layer("hidden")) is keras.layers.Dense
    x = rand((4, 6))
    np.testing.assert_allclose(numpy(folded(x)), numpy(model(x)), rtol=1e-6, atol=1e-6)


def test_subclassed_copy_is_a_new_model_of_the_same_class():
    original, model = original_and_prunable("subclassed")
    assert type(model) is SubclassedNet and model is not original
    masked = lth_keras.in_place.is_masked_in_place
    assert masked(model.stem) and all(masked(b) for b in model.blocks)
    assert not masked(original.stem)
    folded = lth_keras.fold_masks(model)
    assert type(folded) is SubclassedNet and type(folded.head) is keras.layers.Dense
    assert not lth_layers.masked_weights(folded)


class NoArguments(keras.Model):
    """No get_config, and an __init__ that takes no name/trainable/dtype."""

    def __init__(self):
        super().__init__()
        self.fc = keras.layers.Dense(3)

    def call(self, x):
        return self.fc(x)


class NeedsItsArguments(keras.Model):
    """Constructor arguments that no get_config returns."""

    def __init__(self, width):
        super().__init__()
        self.fc = keras.layers.Dense(width)

    def call(self, x):
        return self.fc(x)


def test_a_subclassed_model_without_arguments_needs_no_get_config():
    model = NoArguments()
    x = rand((2, 5))
    model(x)
    prunable = lth_keras.make_prunable(model)
    assert lth_keras.in_place.is_masked_in_place(prunable.fc) and prunable.name == model.name
    np.testing.assert_array_equal(numpy(prunable(x)), numpy(model(x)))


def test_a_model_that_cannot_be_recreated_gets_an_error_saying_what_to_add():
    model = NeedsItsArguments(2)
    model(rand((2, 5)))
    with pytest.raises(TypeError, match="NeedsItsArguments a `get_config` that returns its constructor arguments"):
        lth_keras.make_prunable(model)


# ============================================================== fold_masks of models built from masked layers


def check_folded(model, x):
    masks, kernels = lth_layers.get_masks(model), lth_layers.get_masked_kernels(model)
    folded = lth_layers.fold_masks(model)
    assert not lth_layers.masked_layers(folded)
    kinds = [type(layer).__name__ for layer in folded.layers]
    assert "MaskedDense" not in kinds and "MaskedConv2D" not in kinds
    assert np.array_equal(numpy(folded(x)), numpy(model(x)))
    for layer in lth_layers.masked_layers(model):
        plain = folded.get_layer(layer.name)
        assert type(plain) is layer.unmasked_class
        assert np.array_equal(plain.kernel.numpy(), kernels[layer.name] * masks[layer.name])
    assert "lth_keras" not in json.dumps(folded.get_config())
    return folded


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
    np.testing.assert_array_equal(numpy(folded(x)), numpy(model(x)))
    np.testing.assert_array_equal(folded.fc.kernel.numpy(), model.fc.kernel.numpy() * model.fc.mask.numpy())
