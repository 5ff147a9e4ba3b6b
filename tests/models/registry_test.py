"""Tests for lth_keras.models.registry: the registry of the paper's models,
`build`'s checks, `count_prunable_weights`, and each model's hyperparameters
(`defaults`) against the paper.
"""

import dataclasses
import functools

import keras
import pytest

from lth_keras import layers as lth_layers
from lth_keras import models

MNIST_SHAPE = (28, 28, 1)
CIFAR_SHAPE = (32, 32, 3)
ALL_MODELS = ("lenet", "conv2", "conv4", "conv6", "resnet18", "vgg19")


def paper_shape(name):
    return MNIST_SHAPE if name == "lenet" else CIFAR_SHAPE


@functools.cache
def paper_model(name):
    # Built once per session and never trained: only for read-only checks.
    return models.build(name, paper_shape(name))


def test_registry_lists_the_paper_models():
    assert set(models.MODELS) == set(ALL_MODELS)
    for name, spec in models.MODELS.items():
        assert spec.name == name
        assert spec.defaults is models.defaults(name)


def _within_paper_rounding(count, reported):
    # The table rounds to two or three significant figures (4.3M, 2.4M,
    # 20.0M), so a count inside half a unit of the last digit *is* the
    # reported number; otherwise require 1%.
    digits = len(str(reported).rstrip("0"))
    half_unit = 10 ** (len(str(reported)) - digits) / 2
    return abs(count - reported) <= max(0.01 * reported, half_unit)


@pytest.mark.parametrize("name", ("lenet", "conv2", "conv4", "vgg19"))
def test_prunable_count_matches_the_paper(name):
    count = models.count_prunable_weights(paper_model(name))
    reported = models.defaults(name).prunable_weights
    assert _within_paper_rounding(count, reported), (name, count, reported)
    if name in ("conv2", "vgg19"):
        assert abs(count - reported) <= 0.01 * reported


def test_lenet_count_is_exact():
    assert models.count_prunable_weights(paper_model("lenet")) == 266_200
    assert models.defaults("lenet").prunable_weights == 266_200


def test_count_sees_nested_models():
    inner = models.build("lenet", MNIST_SHAPE)
    inputs = keras.Input(MNIST_SHAPE)
    outer = keras.Model(inputs, inner(inputs))
    assert models.count_prunable_weights(outer) == 266_200


def test_dropout_is_rejected_where_there_is_no_hidden_dense_layer():
    with pytest.raises(ValueError, match="dropout"):
        models.build("resnet18", CIFAR_SHAPE, dropout=0.5)
    with pytest.raises(ValueError, match="dropout"):
        models.build("conv2", CIFAR_SHAPE, dropout=1.0)


def test_unknown_name():
    with pytest.raises(ValueError, match=r"name='resnet50'") as info:
        models.build("resnet50", CIFAR_SHAPE)
    for known in ALL_MODELS:
        assert known in str(info.value)
    with pytest.raises(ValueError, match=r"name='lenet5'"):
        models.defaults("lenet5")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_global_exclude_patterns_match_the_model(name):
    spec = models.defaults(name)
    model = paper_model(name)
    everything = lth_layers.masked_weights(model)
    kept = lth_layers.masked_weights(model, exclude=spec.global_exclude or None)
    excluded = {mw.name for mw in everything} - {mw.name for mw in kept}
    expected = {
        "resnet18": {"output", "block2_1_shortcut", "block3_1_shortcut"},
        "vgg19": {"output"},
    }.get(name, set())
    assert excluded == expected


def test_defaults_match_the_paper():
    lenet = models.defaults("lenet")
    assert dataclasses.astuple(lenet) == dataclasses.astuple(
        models.ModelDefaults(
            dataset="mnist", iterations=50_000, batch_size=60,
            optimizer="adam", learning_rate=1.2e-3, momentum=0.0,
            weight_decay=0.0, prune_rate_dense=0.2, prune_rate_conv=0.0,
            prune_rate_output=0.1, pruning="layerwise", global_exclude=(),
            lr_boundaries=(), warmup_iterations=0, augment=False,
            prunable_weights=266_200,
        )
    )

    conv6 = models.defaults("conv6")
    assert (conv6.dataset, conv6.iterations, conv6.batch_size) == (
        "cifar10", 30_000, 60)
    assert (conv6.optimizer, conv6.learning_rate) == ("adam", 3e-4)
    assert (conv6.prune_rate_conv, conv6.prune_rate_dense,
            conv6.prune_rate_output) == (0.15, 0.2, 0.1)
    assert not conv6.augment and conv6.pruning == "layerwise"  # PAPER.md: augmentation only for ResNet/VGG
    assert models.defaults("conv2").learning_rate == 2e-4
    assert models.defaults("conv4").iterations == 25_000

    resnet = models.defaults("resnet18")
    assert (resnet.iterations, resnet.batch_size) == (30_000, 128)
    assert (resnet.optimizer, resnet.learning_rate, resnet.momentum) == (
        "sgd", 0.1, 0.9)
    assert resnet.weight_decay == 1e-4
    assert resnet.lr_boundaries == (20_000, 25_000)
    assert resnet.warmup_iterations == 0
    assert resnet.pruning == "global"
    assert resnet.global_exclude == ("output", "*_shortcut")
    assert (resnet.prune_rate_conv, resnet.prune_rate_output) == (0.2, 0.0)

    vgg = models.defaults("vgg19")
    assert (vgg.iterations, vgg.batch_size) == (112_000, 64)
    assert vgg.lr_boundaries == (56_000, 84_000)
    assert vgg.global_exclude == ("output",)
    assert vgg.prunable_weights == 20_000_000


def test_defaults_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        models.defaults("lenet").learning_rate = 1.0
