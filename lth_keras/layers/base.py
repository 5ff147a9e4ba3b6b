"""The masked-layer protocol: `MaskedLayer` and `MaskedWeight`.

A masked layer keeps a non-trainable 0/1 ``mask`` variable beside each
prunable weight and computes with ``weight * mask``. Pruning never deletes
anything: it writes zeros into masks (see `lth_keras.pruning`), and the
gradient of ``weight * mask`` with respect to a pruned entry is exactly zero.

`MaskedLayer` is the protocol. Everything in lth_keras that prunes, counts or
resets weights finds them through `MaskedLayer.masked_weights()`, never by
class name, so any layer becomes prunable by mixing it in and declaring its
masked weights with `MaskedLayer.add_mask`. The masked subclasses of Keras's
layers are in `dense`, `conv`, `embedding` and `attention`; the functions
over a model's masks in `weights`.

Example:

```python
import keras
import lth_keras

model = keras.Sequential([
    keras.Input((784,)),
    lth_keras.MaskedDense(300, activation="relu"),
    lth_keras.MaskedDense(10),
])
lth_keras.layers.fraction_remaining(model)  # 1.0: every mask is all ones
```
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import keras
from keras import ops

from lth_keras.layers import keras_adapter

__all__ = ["MaskedLayer", "MaskedWeight"]


class MaskedWeight(NamedTuple):
    """One prunable weight of a model and its mask.

    Attributes:
        name: the key pruning code uses: the layer's name, or
            ``"<layer>/<weight>"`` when a layer masks several weights.
        layer: the `MaskedLayer` that owns the weight.
        weight: the weight variable (e.g. the kernel).
        mask: its 0/1 mask variable, same shape.
        kind: the layer's `pruning_kind` (``"dense"``, ``"conv"`` or a user
            string); the output layer is told apart by the model, not here.
    """

    name: str
    layer: keras.layers.Layer
    weight: keras.Variable
    mask: keras.Variable
    kind: str


class MaskedLayer:
    """Mixin that makes a Keras layer prunable.

    A subclass creates its weights as usual, then calls `add_mask` in
    `build` for each weight to prune, and uses `masked` in `call` where the
    plain layer uses the raw weight. Biases and batch-norm parameters are
    normally left unmasked, as in the paper.

    Set the class attribute `pruning_kind` to pick the rate a layer gets when
    rates are given by kind (``"dense"``, ``"conv"``), and `unmasked_class` to
    the plain Keras class the layer folds into for export (`fold_masks`).

    Saving: masks are saved and restored with the layer's other variables in
    `.keras` files. Keras's Dense and Conv layers store only kernel and bias,
    so this mixin replaces their `save_own_variables`/`load_own_variables`
    with ones that store every variable, masks included. (Quantized modes
    are not supported on masked layers: fold the masks first.)

    Example: a prunable depthwise convolution (lth_keras ships one,
    `MaskedDepthwiseConv2D`; this is how such a layer is written).

    ```python
    @keras.saving.register_keras_serializable(package="my_project")
    class MaskedDepthwiseConv2D(lth_keras.MaskedLayer,
                                keras.layers.DepthwiseConv2D):
        pruning_kind = "conv"
        unmasked_class = keras.layers.DepthwiseConv2D

        def build(self, input_shape):
            super().build(input_shape)
            self.kernel_mask = self.add_mask("kernel")

        def call(self, inputs):
            outputs = keras.ops.depthwise_conv(
                inputs, self.masked("kernel"), strides=self.strides,
                padding=self.padding, dilation_rate=self.dilation_rate,
                data_format=self.data_format)
            if self.use_bias:
                outputs = outputs + self.bias
            return self.activation(outputs) if self.activation else outputs
    ```
    """

    pruning_kind = "dense"
    unmasked_class = None

    def add_mask(self, weight_attr: str = "kernel", mask_attr: str | None = None):
        """Creates the all-ones mask of `getattr(self, weight_attr)`.

        Call it from `build`, after the weight exists.

        Args:
            weight_attr: attribute name of the weight to mask.
            mask_attr: attribute name for the mask variable; defaults to
                ``"<weight_attr>_mask"``. The mask is also stored there.

        Returns:
            The mask variable.
        """
        weight = getattr(self, weight_attr)
        mask_attr = mask_attr or f"{weight_attr}_mask"
        mask = self.add_weight(
            shape=tuple(weight.shape),
            initializer="ones",
            dtype=weight.dtype,
            trainable=False,
            # A replica-context assign would otherwise let replicas diverge
            # under MirroredStrategy; masks must be identical everywhere.
            aggregation="only_first_replica",
            name=mask_attr,
        )
        setattr(self, mask_attr, mask)
        specs = dict(getattr(self, "_lth_mask_specs", {}))
        specs[weight_attr] = mask_attr
        self._lth_mask_specs = specs
        return mask

    def masked(self, weight_attr: str = "kernel"):
        """Returns ``weight * mask`` for use in `call` (autocast-aware).

        Inside `premasked` it returns the weight itself, which is the same
        value when every pruned entry is stored as zero.
        """
        weight = getattr(self, weight_attr)
        if getattr(self, "_lth_premasked", False):
            return weight
        mask_attr = self._lth_mask_specs[weight_attr]
        return ops.multiply(weight, getattr(self, mask_attr))

    def masked_weights(self) -> list[MaskedWeight]:
        """The layer's (weight, mask) pairs, in the order they were added."""
        specs = dict(getattr(self, "_lth_mask_specs", {}))
        result = []
        for weight_attr, mask_attr in specs.items():
            name = self.name if len(specs) == 1 else f"{self.name}/{weight_attr}"
            result.append(
                MaskedWeight(
                    name=name,
                    layer=self,
                    weight=getattr(self, weight_attr),
                    mask=getattr(self, mask_attr),
                    kind=self.pruning_kind,
                )
            )
        return result

    def _lth_all_variables(self):
        return keras_adapter.own_variables(self)

    def save_own_variables(self, store):
        if not self.built:
            return
        for i, variable in enumerate(self._lth_all_variables()):
            store[str(i)] = variable

    def load_own_variables(self, store):
        variables = self._lth_all_variables()
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"Layer '{self.name}' has {len(variables)} variables "
                f"(weights and masks) but the file stores {len(store.keys())}. "
                "Was it saved from a different layer class or version?"
            )
        for i, variable in enumerate(variables):
            variable.assign(store[str(i)])

    def unmasked_layer(self):
        """A plain (maskless) copy of this layer's configuration, unbuilt.

        Constructor arguments the plain class does not accept (for example
        one a user subclass added) are dropped.
        """
        cls = self.unmasked_class
        if cls is None:
            raise TypeError(
                f"{type(self).__name__} does not set `unmasked_class`, so its "
                "masks cannot be folded into a plain layer."
            )
        config = self.get_config()
        accepted = _constructor_arguments(cls)
        if accepted is not None:
            config = {k: v for k, v in config.items() if k in accepted}
        return cls.from_config(config)


def _constructor_arguments(cls):
    names = set()
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names.update(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None
