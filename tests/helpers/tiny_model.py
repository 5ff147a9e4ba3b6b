"""A tiny masked MLP registered as the model "tiny_mlp", for fixtures.

LeNet-300-100's 266K weights make megabyte-sized round files; this network
(784-12-10) keeps an experiment directory a few hundred kB, small enough to
commit (tests/fixtures/resume_v1, see make_resume_fixture.py).
"""

import dataclasses
import zlib

import keras

from lth_keras import layers, models

NAME = "tiny_mlp"


def build(input_shape, num_classes, dropout, seed):
    def init(name):
        if seed is None:
            return keras.initializers.GlorotNormal()
        return keras.initializers.GlorotNormal(seed=(seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31 - 1))

    inputs = keras.Input(shape=input_shape, name="input")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = layers.MaskedDense(12, activation="relu", kernel_initializer=init("dense_1"), name="dense_1")(x)
    outputs = layers.MaskedDense(num_classes, kernel_initializer=init("output"), name="output")(x)
    return keras.Model(inputs, outputs, name=NAME)


def spec():
    """The registry entry: LeNet's paper defaults with this builder."""
    return dataclasses.replace(models.MODELS["lenet"], name=NAME, builder=build)
