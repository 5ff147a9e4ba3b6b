"""Tests for lth_keras.models.paper: the paper's architectures.

A training step at the paper's input shape, exact kernel counts written out
by hand from the paper's table, seeded Glorot-normal initialisation, the
dropout variant, readable and stable layer names, ResNet-18's structure, and
`.keras` round trips.
"""

import functools

import keras
import numpy as np
import pytest

from lth_keras import layers as lth_layers
from lth_keras import models

MNIST_SHAPE = (28, 28, 1)
CIFAR_SHAPE = (32, 32, 3)
ALL_MODELS = ("lenet", "conv2", "conv4", "conv6", "resnet18", "vgg19")
CONV_NETS = ("conv2", "conv4", "conv6")


def paper_shape(name):
    return MNIST_SHAPE if name == "lenet" else CIFAR_SHAPE


def other_shape(name):
    return CIFAR_SHAPE if name == "lenet" else MNIST_SHAPE


@functools.cache
def paper_model(name):
    # Built once per session and never trained: only for read-only checks.
    return models.build(name, paper_shape(name))


def random_batch(input_shape, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch,) + tuple(input_shape)).astype("float32")
    y = rng.integers(0, 10, size=(batch,))
    return x, y


def kernels(model):
    return {
        layer.name: np.array(layer.kernel.numpy())
        for layer in lth_layers.masked_layers(model)
    }


def all_weights(model):
    return {v.path: np.array(v.numpy()) for v in model.weights}


# Kernel sizes written out by hand from the paper's table, independently of
# the builders, so an architecture slip shows up as a count mismatch.
def _conv_net_count(widths, input_shape=CIFAR_SHAPE):
    h, w, c = input_shape
    total = 0
    for block_width in widths:
        total += 9 * c * block_width + 9 * block_width * block_width
        c = block_width
        h, w = h // 2, w // 2
    return total + h * w * c * 256 + 256 * 256 + 256 * 10


def _resnet_count():
    total = 9 * 3 * 16
    c = 16
    for filters in (16, 32, 64):
        for block in range(3):
            total += 9 * c * filters + 9 * filters * filters
            if c != filters:
                total += c * filters  # 1x1 shortcut
            c = filters
    return total + 64 * 10


def _vgg_count():
    total, c = 0, 3
    for filters in [64] * 2 + [128] * 2 + [256] * 4 + [512] * 8:
        total += 9 * c * filters
        c = filters
    return total + 512 * 10


EXACT_COUNTS = {
    "lenet": 784 * 300 + 300 * 100 + 100 * 10,
    "conv2": _conv_net_count((64,)),
    "conv4": _conv_net_count((64, 128)),
    "conv6": _conv_net_count((64, 128, 256)),
    "resnet18": _resnet_count(),
    "vgg19": _vgg_count(),
}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_one_training_step_at_paper_shape(name):
    model = models.build(name, paper_shape(name), seed=0)
    assert isinstance(model, keras.Model)
    assert not _is_subclassed(model)
    x, y = random_batch(paper_shape(name))
    assert tuple(model(x).shape) == (2, 10)

    before = kernels(model)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    after = kernels(model)
    assert set(before) == set(after)
    for layer_name in before:
        assert not np.array_equal(before[layer_name], after[layer_name]), (
            f"{name}: kernel of {layer_name} did not change"
        )
    # Training must not touch the masks.
    for layer in lth_layers.masked_layers(model):
        assert np.all(layer.mask.numpy() == 1.0)


def _is_subclassed(model):
    # keras.Model(inputs, outputs) returns an instance of Keras's internal
    # `Functional` class; a subclassed model would have its own class.
    return type(model).__name__ not in ("Functional", "Sequential")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_builds_at_the_other_input_shape(name):
    model = models.build(name, other_shape(name), num_classes=7)
    x, _ = random_batch(other_shape(name), batch=3)
    assert tuple(model(x).shape) == (3, 7)


@pytest.mark.parametrize("name", ("lenet", "conv6", "vgg19"))
def test_output_layer_gives_logits(name):
    model = paper_model(name)
    output = model.get_layer("output")
    assert isinstance(output, lth_layers.MaskedDense)
    assert output is model.layers[-1]
    assert output.activation is keras.activations.linear
    x, _ = random_batch(paper_shape(name), batch=4)
    logits = model(x, training=False).numpy()
    # Softmax outputs would be non-negative rows summing to one.
    assert not np.allclose(logits.sum(axis=1), 1.0)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_prunable_count_matches_the_architecture(name):
    assert models.count_prunable_weights(paper_model(name)) == EXACT_COUNTS[name]


def test_resnet18_count_matches_the_paper_convention():
    model = paper_model("resnet18")
    prunable = models.count_prunable_weights(model)
    # The paper's "274K" counts every parameter, batch-norm statistics
    # included (274,042); the kernels alone are 270,896.
    masks = sum(int(np.prod(layer.mask.shape))
                for layer in lth_layers.masked_layers(model))
    all_parameters = model.count_params() - masks
    assert abs(all_parameters - 274_000) <= 0.01 * 274_000
    assert abs(prunable - 274_000) <= 0.02 * 274_000


def test_conv6_follows_the_table_architecture_not_its_count():
    # The table's Conv-6 (Conv-4 + 256, 256, pool; fc 256, 256, 10) has
    # 2.26M weights at 32x32x3, not the 1.7M the same table reports.
    count = models.count_prunable_weights(paper_model("conv6"))
    assert count == 2_261_184
    conv_layers = [l for l in paper_model("conv6").layers
                   if isinstance(l, lth_layers.MaskedConv2D)]
    assert [l.filters for l in conv_layers] == [64, 64, 128, 128, 256, 256]


@pytest.mark.parametrize("name", ("lenet", "conv2", "resnet18"))
def test_seed_controls_initial_weights(name):
    a = all_weights(models.build(name, paper_shape(name), seed=3))
    b = all_weights(models.build(name, paper_shape(name), seed=3))
    c = all_weights(models.build(name, paper_shape(name), seed=4))
    assert a.keys() == b.keys() == c.keys()
    for path in a:
        np.testing.assert_array_equal(a[path], b[path], err_msg=path)
    kernel_paths = [p for p in a if p.endswith("/kernel")]
    assert kernel_paths
    for path in kernel_paths:
        assert not np.array_equal(a[path], c[path]), path


def test_seed_differs_between_layers_of_the_same_shape():
    model = models.build("resnet18", CIFAR_SHAPE, seed=0)
    k1 = model.get_layer("block1_1_conv1").kernel.numpy()
    k2 = model.get_layer("block1_1_conv2").kernel.numpy()
    assert k1.shape == k2.shape
    assert not np.array_equal(k1, k2)


def test_unseeded_builds_differ():
    a = models.build("lenet", MNIST_SHAPE).get_layer("dense_1").kernel.numpy()
    b = models.build("lenet", MNIST_SHAPE).get_layer("dense_1").kernel.numpy()
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_kernels_use_glorot_normal(name):
    model = paper_model(name)
    for layer in lth_layers.masked_layers(model):
        assert isinstance(layer.kernel_initializer,
                          keras.initializers.GlorotNormal), layer.name
    kernel = model.get_layer("output" if name != "lenet" else "dense_1").kernel
    fan_in, fan_out = kernel.shape
    # Keras rescales its truncated normal so the std is exactly Glorot's.
    expected = np.sqrt(2.0 / (fan_in + fan_out))
    assert abs(np.std(kernel.numpy()) - expected) < 0.1 * expected


@pytest.mark.parametrize("name", CONV_NETS)
def test_dropout_variant(name):
    plain = models.build(name, CIFAR_SHAPE)
    assert not any(isinstance(l, keras.layers.Dropout) for l in plain.layers)

    model = models.build(name, CIFAR_SHAPE, dropout=0.5, seed=1)
    dropouts = [l for l in model.layers if isinstance(l, keras.layers.Dropout)]
    assert [l.rate for l in dropouts] == [0.5, 0.5]
    names = [l.name for l in model.layers]
    # Dropout follows each hidden dense layer, never the logits.
    for i in (1, 2):
        assert names.index(f"dropout_{i}") == names.index(f"dense_{i}") + 1
    assert names[-1] == "output"
    assert models.count_prunable_weights(model) == EXACT_COUNTS[name]


def test_conv_nets_need_an_image_shape():
    with pytest.raises(ValueError, match="input_shape"):
        models.build("conv2", (784,))
    # LeNet flattens anything.
    assert models.build("lenet", (784,)).output_shape == (None, 10)


def test_layer_names_are_readable_and_stable():
    conv4 = paper_model("conv4")
    assert [l.name for l in lth_layers.masked_layers(conv4)] == [
        "conv_1", "conv_2", "conv_3", "conv_4", "dense_1", "dense_2", "output"
    ]
    lenet = paper_model("lenet")
    assert [l.name for l in lth_layers.masked_layers(lenet)] == [
        "dense_1", "dense_2", "output"
    ]
    assert [l.units for l in lth_layers.masked_layers(lenet)] == [300, 100, 10]
    vgg = paper_model("vgg19")
    assert len([l for l in vgg.layers
                if isinstance(l, lth_layers.MaskedConv2D)]) == 16
    assert any(isinstance(l, keras.layers.BatchNormalization)
               for l in vgg.layers)


def test_resnet18_structure():
    model = paper_model("resnet18")
    convs = [l for l in model.layers if isinstance(l, lth_layers.MaskedConv2D)]
    shortcuts = [l for l in convs if l.name.endswith("_shortcut")]
    assert [l.name for l in shortcuts] == ["block2_1_shortcut",
                                           "block3_1_shortcut"]
    for layer in shortcuts:
        assert layer.kernel_size == (1, 1)
        assert layer.strides == (2, 2)
    others = [l for l in convs if l not in shortcuts]
    assert len(others) == 1 + 3 * 3 * 2
    assert all(l.kernel_size == (3, 3) for l in others)
    assert model.get_layer("block2_1_conv1").strides == (2, 2)
    assert model.get_layer("block2_2_conv1").strides == (1, 1)
    assert model.get_layer("block3_3_conv2").filters == 64
    assert sum(isinstance(l, keras.layers.BatchNormalization)
               for l in model.layers) == 19 + 2
    assert sum(isinstance(l, keras.layers.Add) for l in model.layers) == 9


def test_models_clone_and_round_trip_through_keras_files(tmp_path):
    model = models.build("resnet18", CIFAR_SHAPE, seed=0)
    x, _ = random_batch(CIFAR_SHAPE)
    expected = model(x, training=False).numpy()

    clone = keras.models.clone_model(model)
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]
    assert models.count_prunable_weights(clone) == EXACT_COUNTS["resnet18"]

    path = tmp_path / "resnet18.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored(x, training=False).numpy(), expected,
                               rtol=1e-5, atol=1e-5)
