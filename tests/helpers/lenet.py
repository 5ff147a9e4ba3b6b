"""Small shared helpers for the layers/pruning/callbacks tests.

LeNet-300-100 built from MaskedDense, a small learnable synthetic data set,
and recorder callbacks that copy weights out of a model during `fit` so tests
can compare them with values they captured themselves.
"""

import math
import textwrap
from fractions import Fraction

import keras
import numpy as np
import tensorflow as tf

import lth_keras
from lth_keras import layers as lth_layers

LENET_NAMES = ("fc1", "fc2", "fc3")
LENET_TOTALS = (784 * 300, 300 * 100, 100 * 10)  # 235200, 30000, 1000


def deterministic(seed):
    """Seeds Python/numpy/TF/Keras and makes TF ops deterministic for the
    calling test (conftest switches them off after it)."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def lenet(input_dim=784, hidden=(300, 100), classes=10):
    """LeNet-300-100 (glorot_normal, as in the paper), layers fc1, fc2, fc3."""
    model = keras.Sequential([keras.Input((input_dim,))], name="lenet")
    sizes = tuple(hidden) + (classes,)
    for i, units in enumerate(sizes):
        model.add(
            lth_keras.MaskedDense(
                units,
                activation="relu" if i < len(sizes) - 1 else None,
                kernel_initializer="glorot_normal",
                name=f"fc{i + 1}",
            )
        )
    return model


def compile_model(model, optimizer=None, steps_per_execution=1, run_eagerly=False):
    model.compile(
        optimizer or keras.optimizers.Adam(1.2e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=steps_per_execution,
        run_eagerly=run_eagerly,
    )
    return model


def data(n=300, dim=784, classes=10, seed=0):
    """A learnable synthetic problem: labels from a fixed random projection."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype("float32")
    y = np.argmax(x @ rng.normal(size=(dim, classes)), axis=1).astype("int32")
    return x, y


def kernels(model):
    return {mw.name: np.array(mw.weight.numpy()) for mw in lth_layers.masked_weights(model)}


def masks(model):
    return {mw.name: np.array(mw.mask.numpy()) for mw in lth_layers.masked_weights(model)}


def all_variables(model):
    """Every model variable except masks (a reset point, read by hand), keyed
    by path without the model's name: "fc1/kernel", "fc1/bias", ..."""
    mask_ids = {id(mw.mask) for mw in lth_layers.masked_weights(model)}
    prefix = model.name + "/"
    return {
        v.path[len(prefix):] if v.path.startswith(prefix) else v.path: np.array(v.numpy())
        for v in model.variables
        if id(v) not in mask_ids
    }


class EpochRecorder(keras.callbacks.Callback):
    """Copies kernels, masks and all variables at every epoch end.

    Placed AFTER the IMP callback in `callbacks=[...]` it sees the weights
    after pruning + reset; placed BEFORE, the trained weights that get pruned.
    """

    def __init__(self):
        super().__init__()
        self.kernels, self.masks, self.variables, self.iterations = [], [], [], []
        self.at_train_begin = None

    def on_train_begin(self, logs=None):
        if self.model.built:  # an unbuilt model is built in the first step
            self.at_train_begin = (kernels(self.model), masks(self.model))

    def on_epoch_end(self, epoch, logs=None):
        self.kernels.append(kernels(self.model))
        self.masks.append(masks(self.model))
        self.variables.append(all_variables(self.model))
        self.iterations.append(int(self.model.optimizer.iterations.numpy()))


class StepRecorder(keras.callbacks.Callback):
    """Copies all variables after the optimizer step number `step` (counted
    by this callback itself over the whole fit, steps_per_execution=1)."""

    def __init__(self, step):
        super().__init__()
        self.step = step
        self.seen = 0
        self.values = None

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            self.values = all_variables(self.model)


class BatchCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def expected_alive(total, rate, rounds, start=None):
    """Alive counts after 0..rounds rounds: alive -= round(rate * alive),
    halves up as documented (exact, unlike Python's banker's round())."""
    alive = total if start is None else start
    out = [alive]
    for _ in range(rounds):
        alive -= math.floor(Fraction(str(rate)) * alive + Fraction(1, 2))
        out.append(alive)
    return out


def _docstring_example(doc, name):
    """Runs the ```python block of ``doc`` and returns the ``name`` it defines."""
    block = doc.split("```python", 1)[1].split("```", 1)[0]
    namespace = {"keras": keras, "lth_keras": lth_keras}
    exec(textwrap.dedent(block), namespace)
    return namespace[name]


# The MaskedDepthwiseConv2D example of the MaskedLayer docstring, run as written,
# so the tests check the code users read.
MaskedDepthwiseConv2D = _docstring_example(lth_keras.MaskedLayer.__doc__, "MaskedDepthwiseConv2D")
