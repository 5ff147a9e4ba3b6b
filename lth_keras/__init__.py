"""lth_keras: the Lottery Ticket Hypothesis for Keras 3.

Masks for any Keras model in place (`add_masks`, `load_model`; the
callbacks call it themselves), masked layers (`MaskedDense`, `MaskedConv2D`,
... and the `MaskedLayer` protocol), `make_prunable` for a masked copy, pure pruning math
(`lth_keras.pruning`) and the `IterativeMagnitudePruning` callback that finds
winning tickets inside `model.fit`.

The folders are the layers of the architecture; each imports only those
above it in this list (`tests/structure_test.py` checks every import):

- `storage`: the experiment directory on disk (no Keras).
- `layers`, `pruning`, `callbacks`: the library users import.
- `models`, `datasets`, `training`, `arms`, `experiment`: the experiment runner.
- `analysis`: figures and instability.
- `main`, `export`, `instability`, `figures`, `baselines.tfmot`: the programs.

The names below are imported when first used, so that a program that only
reads CSV files (``python -m lth_keras.figures``) never loads TensorFlow.
Loading a `.keras` file of masked layers needs them registered with
`keras.saving`: any use of `lth_keras.layers` (or of a name below) does
that, and so does ``import lth_keras`` after Keras is imported.
`lth_keras.load_model` reads a model masked in place with its masks
(Keras alone reads the plain ticket). The library part runs on every Keras
backend (TensorFlow, JAX, PyTorch); the experiment binary, distribution and
export are TensorFlow.
"""

import importlib
import sys

__version__ = "0.1.0"

# public name -> the module that defines it
_NAMES = {
    "GradualMagnitudePruning": "lth_keras.callbacks",
    "IterativeMagnitudePruning": "lth_keras.callbacks",
    "MaskedConv1D": "lth_keras.layers",
    "MaskedConv2D": "lth_keras.layers",
    "MaskedConv2DTranspose": "lth_keras.layers",
    "MaskedConv3D": "lth_keras.layers",
    "MaskedDense": "lth_keras.layers",
    "MaskedDepthwiseConv2D": "lth_keras.layers",
    "MaskedEinsumDense": "lth_keras.layers",
    "MaskedEmbedding": "lth_keras.layers",
    "MaskedLayer": "lth_keras.layers",
    "MaskedMultiHeadAttention": "lth_keras.layers",
    "MaskedSeparableConv2D": "lth_keras.layers",
    "add_masks": "lth_keras.layers.in_place",
    "fold_masks": "lth_keras.layers.prunable",
    "load_model": "lth_keras.layers.in_place",
    "make_prunable": "lth_keras.layers.prunable",
    "remove_masks": "lth_keras.layers.in_place",
    "RigL": "lth_keras.callbacks",
    "SET": "lth_keras.callbacks",
    "StaticSparse": "lth_keras.callbacks",
}
# modules documented at the top level before the package had folders
_MODULES = {
    "gradual": "lth_keras.pruning.gradual",
    "in_place": "lth_keras.layers.in_place",
    "pai": "lth_keras.pruning.pai",
    "prunable": "lth_keras.layers.prunable",
}
_SUBPACKAGES = ("analysis", "arms", "baselines", "callbacks", "datasets", "experiment", "layers", "models",
                "pruning", "storage", "training")

__all__ = sorted(_NAMES) + ["callbacks", "layers", "pruning", "in_place", "prunable"]


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'lth_keras' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES) | set(_MODULES) | set(_SUBPACKAGES))


if "keras" in sys.modules:
    # Keras (and its backend) is loaded already, so registering the masked
    # layers costs nothing, and `keras.saving.load_model` can read them.
    from lth_keras import layers  # noqa: F401
