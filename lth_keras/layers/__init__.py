"""The library's layers: masked Keras layers, masks in place, prunable copies.

- `base`: the `MaskedLayer` protocol and `MaskedWeight`.
- `dense`, `conv`, `embedding`, `attention`: the masked subclasses of
  Keras's layers (`MaskedDense`, `MaskedConv2D`, `MaskedEmbedding`,
  `MaskedMultiHeadAttention`, ...), one file per kind of layer.
- `weights`: the functions over a model's masks (`masked_weights`,
  `set_masks`, `fraction_remaining`, ...).
- `in_place`: masks for any model's own layers, without rebuilding it.
- `prunable`: `make_prunable` (a masked copy) and `fold_masks` (a plain one).
- `keras_adapter`: every private Keras attribute the package touches.

Importing this package registers the masked layers with `keras.saving`
(as ``lth_keras>MaskedDense``, ...).
"""

from lth_keras.layers.attention import MaskedMultiHeadAttention
from lth_keras.layers.base import MaskedLayer, MaskedWeight
from lth_keras.layers.conv import (
    MaskedConv1D,
    MaskedConv2D,
    MaskedConv2DTranspose,
    MaskedConv3D,
    MaskedDepthwiseConv2D,
    MaskedSeparableConv2D,
)
from lth_keras.layers.dense import MaskedDense, MaskedEinsumDense
from lth_keras.layers.embedding import MaskedEmbedding
from lth_keras.layers.weights import (
    apply_masks_to_weights,
    count_weights,
    fraction_remaining,
    get_masked_kernels,
    get_masks,
    masked_layers,
    masked_weights,
    premasked,
    set_masks,
)
from lth_keras.layers.prunable import fold_masks, make_prunable

__all__ = [
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
    "MaskedWeight",
    "apply_masks_to_weights",
    "count_weights",
    "fold_masks",
    "fraction_remaining",
    "get_masked_kernels",
    "get_masks",
    "make_prunable",
    "masked_layers",
    "masked_weights",
    "premasked",
    "set_masks",
]
