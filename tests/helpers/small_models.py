"""A small Sequential of masked and plain layers, and random masks, for the
tests of `lth_keras.layers.weights` and `lth_keras.layers.prunable`."""

import keras
import numpy as np

import lth_keras


def random_mask(shape, seed, keep=0.5):
    return (np.random.default_rng(seed).random(shape) < keep).astype("float32")


def small_model():
    """conv (masked) -> flatten -> fc (masked) -> plain Dense -> out (masked)."""
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
