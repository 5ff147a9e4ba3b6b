"""Tests for lth_keras.baselines.architecture: a Keras 3 model as plain data, rebuilt.

The TFMOT baseline rebuilds the experiment's network in tf_keras; here the
plain data is rebuilt in Keras 3 itself, where the original's weights can be
copied in and its outputs compared (every mask still all ones).
"""

import dataclasses
import json

import keras
import numpy as np
import pytest

from lth_keras import layers, models
from lth_keras.baselines import architecture
from lth_keras.experiment.config import ExperimentConfig

SHAPE = (32, 32, 3)


def _config(model):
    return ExperimentConfig(model=model, dataset="synthetic").resolve()


@pytest.mark.parametrize("model", ["lenet", "conv2"])
def test_the_rebuilt_model_computes_what_the_original_does(model):
    config = _config(model)
    spec = architecture.architecture(config, SHAPE, 10)
    json.dumps(spec)  # plain data: it crosses to the baseline's process
    original = models.build(model, SHAPE, 10, dropout=config.dropout, seed=config.seed)
    assert spec["masked"] == [mw.layer.name for mw in layers.masked_weights(original)]
    assert {layer["class"] for layer in spec["layers"]} <= set(architecture.LAYER_KEYS)

    wrapped = []
    rebuilt = architecture.rebuild(spec, keras, wrap=lambda name, layer: wrapped.append(name) or layer)
    assert wrapped == spec["masked"]  # only the masked layers are offered to the wrapper
    for layer in rebuilt.layers:
        if layer.weights:
            source = original.get_layer(layer.name)
            layer.set_weights([source.kernel.numpy(), source.bias.numpy()])
    x = np.random.default_rng(0).normal(size=(4, *SHAPE)).astype(np.float32)
    np.testing.assert_allclose(rebuilt(x, training=False), original(x, training=False), rtol=1e-5, atol=1e-5)


def test_a_layer_without_translation_is_refused_naming_it(monkeypatch):
    def build(input_shape, num_classes, dropout, seed):
        inputs = keras.Input(shape=input_shape, name="input")
        x = keras.layers.Flatten(name="flatten")(inputs)
        x = keras.layers.LayerNormalization(name="norm")(x)
        return keras.Model(inputs, layers.MaskedDense(num_classes, name="output")(x))

    monkeypatch.setitem(models.MODELS, "normed", dataclasses.replace(models.MODELS["lenet"], name="normed",
                                                                      builder=build))
    with pytest.raises(architecture.ArchitectureError, match=r"layer 'norm' \(LayerNormalization\) has no tf_keras"):
        architecture.architecture(_config("normed"), SHAPE, 10)


def test_a_shared_layer_is_refused(monkeypatch):
    def build(input_shape, num_classes, dropout, seed):
        inputs = keras.Input(shape=input_shape, name="input")
        x = keras.layers.Flatten(name="flatten")(inputs)
        twice = layers.MaskedDense(x.shape[-1], name="twice")
        return keras.Model(inputs, layers.MaskedDense(num_classes, name="output")(twice(twice(x))))

    monkeypatch.setitem(models.MODELS, "shared", dataclasses.replace(models.MODELS["lenet"], name="shared",
                                                                      builder=build))
    with pytest.raises(architecture.ArchitectureError, match="layer 'twice' is called 2 times"):
        architecture.architecture(_config("shared"), (4, 4, 1), 10)
