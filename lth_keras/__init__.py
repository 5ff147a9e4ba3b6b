"""lth_keras: the Lottery Ticket Hypothesis for Keras 3.

Masked layers (`MaskedDense`, `MaskedConv2D`, the `MaskedLayer` protocol),
pure pruning math (`lth_keras.pruning`) and the `IterativeMagnitudePruning`
callback that finds winning tickets inside `model.fit`.

Importing the package imports the masked layers, which registers them with
`keras.saving`: ``import lth_keras`` is all `keras.models.load_model` needs
to read a model with masks. (It also means TensorFlow loads with it, except
in ``python -m lth_keras.figures``, which only reads CSV files.)
"""

from lth_keras import _startup

_startup.prepare()  # a binary's TensorFlow log level, set before TensorFlow loads

if not _startup.tensorflow_free():  # python -m lth_keras.figures reads CSVs: no TensorFlow
    from lth_keras import callbacks, layers, pruning
    from lth_keras.callbacks import IterativeMagnitudePruning
    from lth_keras.layers import MaskedConv2D, MaskedDense, MaskedLayer

__version__ = "0.1.0"

__all__ = [
    "IterativeMagnitudePruning",
    "MaskedConv2D",
    "MaskedDense",
    "MaskedLayer",
    "callbacks",
    "layers",
    "pruning",
]
