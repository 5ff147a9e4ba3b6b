"""lth_keras: the Lottery Ticket Hypothesis for Keras 3.

Masks for any Keras model in place (`add_masks`, `load_model`; the
callbacks call it themselves), masked layers (`MaskedDense`, `MaskedConv2D`,
... and the `MaskedLayer` protocol), `make_prunable` for a masked copy, pure pruning math
(`lth_keras.pruning`) and the `IterativeMagnitudePruning` callback that finds
winning tickets inside `model.fit`.

Importing the package imports the masked layers, which registers them with
`keras.saving`: ``import lth_keras`` is all `keras.models.load_model` needs
to read a model built from them. A model masked in place is read back with
its masks by `lth_keras.load_model` (Keras alone reads the plain ticket). The library part runs on every Keras backend
(TensorFlow, JAX, PyTorch) and imports TensorFlow only on TensorFlow's; the
experiment binary, distribution and export are TensorFlow.
(The binaries set TensorFlow's log level before TensorFlow loads, and
``python -m lth_keras.figures`` only reads CSV files: it imports no Keras.)
"""

from lth_keras import _startup

_startup.prepare()  # a binary's TensorFlow log level, set before TensorFlow loads

if not _startup.tensorflow_free():  # python -m lth_keras.figures reads CSVs: no TensorFlow
    from lth_keras import callbacks, in_place, layers, prunable, pruning
    from lth_keras.callbacks import GradualMagnitudePruning, IterativeMagnitudePruning
    from lth_keras.layers import (
        MaskedConv1D,
        MaskedConv2D,
        MaskedConv2DTranspose,
        MaskedConv3D,
        MaskedDense,
        MaskedDepthwiseConv2D,
        MaskedEinsumDense,
        MaskedEmbedding,
        MaskedLayer,
        MaskedMultiHeadAttention,
        MaskedSeparableConv2D,
    )
    from lth_keras.in_place import add_masks, load_model, remove_masks
    from lth_keras.prunable import fold_masks, make_prunable

__version__ = "0.1.0"

__all__ = [
    "GradualMagnitudePruning",
    "IterativeMagnitudePruning",
    "MaskedConv1D",
    "MaskedConv2D",
    "MaskedConv2DTranspose",
    "MaskedConv3D",
    "MaskedDense",
    "MaskedDepthwiseConv2D",
    "MaskedEinsumDense",
    "MaskedEmbedding",
    "MaskedLayer",
    "MaskedMultiHeadAttention",
    "MaskedSeparableConv2D",
    "add_masks",
    "callbacks",
    "fold_masks",
    "in_place",
    "load_model",
    "remove_masks",
    "layers",
    "make_prunable",
    "prunable",
    "pruning",
]
