"""Masked attention: `MaskedMultiHeadAttention`.

Its query, key, value and output projections are `MaskedEinsumDense`
layers, reported as four masked weights of the attention layer.

Example:

```python
mha = lth_keras.MaskedMultiHeadAttention(2, key_dim=4, name="mha")
x = np.ones((1, 5, 8), "float32")
y = mha(x, x)                                  # shape (1, 5, 8)
```
"""

from __future__ import annotations

import keras

from lth_keras.layers import keras_adapter
from lth_keras.layers.base import MaskedLayer, MaskedWeight
from lth_keras.layers.dense import MaskedEinsumDense

__all__ = ["MaskedMultiHeadAttention"]


@keras.saving.register_keras_serializable(package="lth_keras")
class MaskedMultiHeadAttention(MaskedLayer, keras.layers.MultiHeadAttention):
    """A `keras.layers.MultiHeadAttention` with masked projection kernels.

    Takes exactly the arguments of `keras.layers.MultiHeadAttention`. Its
    query, key, value and output projections are `MaskedEinsumDense` layers;
    the layer reports their kernels as four masked weights named
    ``"<layer>/query"``, ``"<layer>/key"``, ``"<layer>/value"`` and
    ``"<layer>/attention_output"`` (kind ``"dense"``). Biases and the
    optional gate projection are not masked.

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head for query and key.
        **kwargs: any other `keras.layers.MultiHeadAttention` argument.

    Example:

    ```python
    mha = lth_keras.MaskedMultiHeadAttention(2, key_dim=4, name="mha")
    x = np.ones((1, 5, 8), "float32")
    y = mha(x, x)                                  # shape (1, 5, 8)
    [mw.name for mw in mha.masked_weights()]
    # ['mha/query', 'mha/key', 'mha/value', 'mha/attention_output']
    ```
    """

    pruning_kind = "dense"
    unmasked_class = keras.layers.MultiHeadAttention

    def build(self, query_shape, value_shape, key_shape=None):
        super().build(query_shape, value_shape, key_shape)
        for short, plain in keras_adapter.attention_projections(self).items():
            masked = MaskedEinsumDense.from_config(plain.get_config())
            masked.build_from_config(plain.get_build_config())
            # The plain projection's initial values are kept, so that a masked
            # and a plain layer built with the same seed start alike.
            for new, old in zip(masked.weights, plain.weights):
                new.assign(old)
            # In place in the tracked sublayers, so variable order is kept.
            keras_adapter.set_attention_projection(self, short, masked)

    def masked_weights(self) -> list[MaskedWeight]:
        result = []
        for short, projection in keras_adapter.attention_projections(self).items():
            for mw in projection.masked_weights():
                result.append(mw._replace(name=f"{self.name}/{short}", kind=self.pruning_kind))
        return result
