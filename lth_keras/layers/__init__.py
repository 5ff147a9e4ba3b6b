"""The library's layers: masked Keras layers, masks in place, prunable copies.

- `masked`: the `MaskedLayer` protocol, the masked subclasses of Keras's
  kernels (`MaskedDense`, `MaskedConv2D`, ...) and the functions that find a
  model's masked weights (`masked_weights`, `fraction_remaining`, ...).
- `in_place`: masks for any model's own layers, without rebuilding it.
- `prunable`: `make_prunable` (a masked copy) and `fold_masks` (a plain one).
- `keras_adapter`: every private Keras attribute the package touches.

Importing this package registers the masked layers with `keras.saving`.
"""

from lth_keras.layers.masked import (
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
    MaskedWeight,
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
