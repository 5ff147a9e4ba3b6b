"""A masked embedding table: `MaskedEmbedding`.

Example:

```python
emb = lth_keras.MaskedEmbedding(100, 16)
y = emb(np.array([[1, 2, 3]]))   # shape (1, 3, 16)
emb.mask.shape                    # (100, 16)
```
"""

from __future__ import annotations

import keras
from keras import ops

from lth_keras.layers.base import MaskedLayer

__all__ = ["MaskedEmbedding"]


@keras.saving.register_keras_serializable(package="lth_keras")
class MaskedEmbedding(MaskedLayer, keras.layers.Embedding):
    """A `keras.layers.Embedding` whose table is multiplied by a 0/1 mask.

    Takes exactly the arguments of `keras.layers.Embedding`; holds a
    non-trainable ``mask`` of the table's shape ``(input_dim, output_dim)``.
    Its `pruning_kind` is ``"embedding"``: layerwise rates by kind prune it
    only when ``rates`` has an ``"embedding"`` key (or names the layer);
    global pruning ranks it with everything else.

    Args:
        input_dim: vocabulary size.
        output_dim: embedding dimension.
        **kwargs: any other `keras.layers.Embedding` argument.

    Example:

    ```python
    emb = lth_keras.MaskedEmbedding(100, 16)
    y = emb(np.array([[1, 2, 3]]))   # shape (1, 3, 16)
    emb.mask.shape                    # (100, 16)
    ```
    """

    pruning_kind = "embedding"
    unmasked_class = keras.layers.Embedding

    def build(self, input_shape=None):
        super().build(input_shape)
        self.add_mask("embeddings", "mask")

    def call(self, inputs):
        if inputs.dtype != "int32" and inputs.dtype != "int64":
            inputs = ops.cast(inputs, "int32")
        outputs = ops.take(self.masked("embeddings"), inputs, axis=0)
        return ops.cast(outputs, dtype=self.compute_dtype)
