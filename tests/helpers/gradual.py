"""What the gradual-pruning and N:M tests share: a small prunable CNN, its
data, and `ZeroWatch`, which checks after every step that pruned weights stay
exactly zero. Nothing here imports TensorFlow: those tests run on every
backend."""

import keras
import numpy as np

import lth_keras
from lth_keras import layers as lth_layers
from lth_keras.pruning import gradual


def rand(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def small_cnn():
    return lth_keras.make_prunable(keras.Sequential([
        keras.Input((8, 8, 4)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu", name="fc"),
        keras.layers.Dense(4, name="out"),
    ]))


def data(n=96, shape=(8, 8, 4), classes=4, seed=0):
    x = rand((n,) + shape, seed)
    y = np.random.default_rng(seed + 1).integers(0, classes, n).astype("int32")
    return x, y


def compile_(model, steps_per_execution=1, lr=1e-2):
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=steps_per_execution)


class ZeroWatch(keras.callbacks.Callback):
    """After every step: each weight whose mask has ever been 0 is exactly 0."""

    def __init__(self):
        super().__init__()
        self.off, self.checks, self.bad = {}, 0, []

    def on_train_batch_end(self, batch, logs=None):
        gradual.sync_state(self.model)
        for mw in lth_layers.masked_weights(self.model):
            mask, weight = numpy(mw.mask), numpy(mw.weight)
            off = self.off.get(mw.name, np.zeros(mask.shape, bool)) | (mask == 0)
            self.off[mw.name] = off
            if np.any(weight[off] != 0):
                self.bad.append((batch, mw.name, int(np.count_nonzero(weight[off]))))
            self.checks += 1
