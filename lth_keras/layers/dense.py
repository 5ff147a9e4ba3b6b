"""Masked dense layers: `MaskedDense` and `MaskedEinsumDense`.

Each is its Keras layer with the kernel multiplied by a 0/1 mask (the
bias is not masked); with an all-ones mask it computes what the plain
layer computes. Pruning kind ``"dense"``.

Example:

```python
layer = lth_keras.MaskedDense(3)
y = layer(np.ones((2, 4), "float32"))      # shape (2, 3)
layer.mask.shape                            # (4, 3)
```
"""

from __future__ import annotations

import keras
from keras import ops

from lth_keras.layers.base import MaskedLayer

__all__ = ["MaskedDense", "MaskedEinsumDense"]


@keras.saving.register_keras_serializable(package="lth_keras")
class MaskedDense(MaskedLayer, keras.layers.Dense):
    """A `keras.layers.Dense` whose kernel is multiplied by a 0/1 mask.

    Takes exactly the arguments of `keras.layers.Dense`. After `build` the
    layer holds ``kernel``, ``bias`` and a non-trainable ``mask`` (all ones),
    and computes ``activation(inputs @ (kernel * mask) + bias)``. The bias is
    not masked. With an all-ones mask the output equals `Dense`'s.

    Args:
        units: dimensionality of the output space.
        **kwargs: any other `keras.layers.Dense` argument.

    Example:

    ```python
    layer = lth_keras.MaskedDense(3)
    y = layer(np.ones((2, 4), "float32"))      # shape (2, 3)
    layer.mask.assign(np.zeros((4, 3)))         # prune everything
    layer(np.ones((2, 4), "float32"))           # now only the bias
    ```
    """

    pruning_kind = "dense"
    unmasked_class = keras.layers.Dense

    def build(self, input_shape):
        super().build(input_shape)
        self.add_mask("kernel", "mask")

    def call(self, inputs, training=None):
        x = ops.matmul(inputs, self.masked("kernel"))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x


@keras.saving.register_keras_serializable(package="lth_keras")
class MaskedEinsumDense(MaskedLayer, keras.layers.EinsumDense):
    """A `keras.layers.EinsumDense` whose kernel is multiplied by a 0/1 mask.

    Takes exactly the arguments of `keras.layers.EinsumDense`; holds a
    non-trainable ``mask`` of the kernel's shape. The bias is not masked.

    Args:
        equation: the einsum equation, e.g. ``"ab,bc->ac"``.
        output_shape: the output shape without the batch dimension.
        **kwargs: any other `keras.layers.EinsumDense` argument.

    Example:

    ```python
    layer = lth_keras.MaskedEinsumDense("abc,cd->abd", output_shape=(None, 8),
                                        bias_axes="d")
    y = layer(np.ones((2, 5, 4), "float32"))   # shape (2, 5, 8)
    layer.mask.shape                             # (4, 8)
    ```
    """

    pruning_kind = "dense"
    unmasked_class = keras.layers.EinsumDense

    def build(self, input_shape):
        super().build(input_shape)
        self.add_mask("kernel", "mask")

    def call(self, inputs, training=None):
        x = ops.einsum(self.equation, inputs, self.masked("kernel"))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x
