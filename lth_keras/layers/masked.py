"""Masked Keras layers: the weights a lottery ticket is made of.

A masked layer keeps a non-trainable 0/1 ``mask`` variable beside each
prunable weight and computes with ``weight * mask``. Pruning never deletes
anything: it writes zeros into masks (see `lth_keras.pruning`), and the
gradient of ``weight * mask`` with respect to a pruned entry is exactly zero.

`MaskedLayer` is the protocol. Everything in lth_keras that prunes, counts or
resets weights finds them through `MaskedLayer.masked_weights()`, never by
class name, so any layer becomes prunable by mixing it in and declaring its
masked weights with `MaskedLayer.add_mask`.

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

import contextlib
import fnmatch
import inspect
from typing import NamedTuple

import keras
import numpy as np
from keras import ops

__all__ = [
    "MaskedLayer",
    "MaskedDense",
    "MaskedEinsumDense",
    "MaskedEmbedding",
    "MaskedMultiHeadAttention",
    "MaskedConv1D",
    "MaskedConv2D",
    "MaskedConv3D",
    "MaskedConv2DTranspose",
    "MaskedDepthwiseConv2D",
    "MaskedSeparableConv2D",
    "MaskedWeight",
    "masked_layers",
    "masked_weights",
    "get_masks",
    "set_masks",
    "get_masked_kernels",
    "count_weights",
    "fraction_remaining",
    "apply_masks_to_weights",
    "premasked",
]


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
        return list(self._trainable_variables) + list(self._non_trainable_variables)

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
class MaskedConv2D(MaskedLayer, keras.layers.Conv2D):
    """A `keras.layers.Conv2D` whose kernel is multiplied by a 0/1 mask.

    Takes exactly the arguments of `keras.layers.Conv2D`; holds a
    non-trainable ``mask`` of the kernel's shape (all ones when built). The
    bias is not masked.

    Args:
        filters: number of output channels.
        kernel_size: size of the convolution window.
        **kwargs: any other `keras.layers.Conv2D` argument.

    Example:

    ```python
    conv = lth_keras.MaskedConv2D(64, 3, padding="same", activation="relu")
    y = conv(np.zeros((1, 32, 32, 3), "float32"))   # shape (1, 32, 32, 64)
    conv.mask.shape                                   # (3, 3, 3, 64)
    ```
    """

    pruning_kind = "conv"
    unmasked_class = keras.layers.Conv2D

    def build(self, input_shape):
        super().build(input_shape)
        self.add_mask("kernel", "mask")

    def call(self, inputs):
        outputs = self.convolution_op(inputs, self.masked("kernel"))
        if self.use_bias:
            if self.data_format == "channels_last":
                bias_shape = (1,) * (self.rank + 1) + (self.filters,)
            else:
                bias_shape = (1, self.filters) + (1,) * self.rank
            outputs = ops.add(outputs, ops.reshape(self.bias, bias_shape))
        if self.activation is not None:
            return self.activation(outputs)
        return outputs


def _add_bias(outputs, bias, channels, rank, data_format):
    if data_format == "channels_last":
        shape = (1,) * (rank + 1) + (channels,)
    else:
        shape = (1, channels) + (1,) * rank
    return ops.add(outputs, ops.reshape(bias, shape))


@keras.saving.register_keras_serializable(package="lth_keras")
class MaskedConv1D(MaskedLayer, keras.layers.Conv1D):
    """A `keras.layers.Conv1D` whose kernel is multiplied by a 0/1 mask.

    Takes exactly the arguments of `keras.layers.Conv1D` (``"causal"``
    padding included); holds a non-trainable ``mask`` of the kernel's shape.
    The bias is not masked.

    Args:
        filters: number of output channels.
        kernel_size: length of the convolution window.
        **kwargs: any other `keras.layers.Conv1D` argument.

    Example:

    ```python
    conv = lth_keras.MaskedConv1D(8, 3, padding="causal")
    y = conv(np.zeros((2, 20, 4), "float32"))   # shape (2, 20, 8)
    conv.mask.shape                               # (3, 4, 8)
    ```
    """

    pruning_kind = "conv"
    unmasked_class = keras.layers.Conv1D

    def build(self, input_shape):
        super().build(input_shape)
        self.add_mask("kernel", "mask")

    def call(self, inputs):
        padding = self.padding
        if padding == "causal":
            inputs = ops.pad(inputs, self._compute_causal_padding())
            padding = "valid"
        outputs = ops.conv(
            inputs, self.masked("kernel"), strides=list(self.strides), padding=padding,
            dilation_rate=self.dilation_rate, data_format=self.data_format,
        )
        if self.use_bias:
            outputs = _add_bias(outputs, self.bias, self.filters, self.rank, self.data_format)
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="lth_keras")
class MaskedConv3D(MaskedLayer, keras.layers.Conv3D):
    """A `keras.layers.Conv3D` whose kernel is multiplied by a 0/1 mask.

    Takes exactly the arguments of `keras.layers.Conv3D`; holds a
    non-trainable ``mask`` of the kernel's shape. The bias is not masked.

    Args:
        filters: number of output channels.
        kernel_size: size of the convolution window.
        **kwargs: any other `keras.layers.Conv3D` argument.

    Example:

    ```python
    conv = lth_keras.MaskedConv3D(4, 3, padding="same")
    y = conv(np.zeros((1, 8, 8, 8, 2), "float32"))   # shape (1, 8, 8, 8, 4)
    conv.mask.shape                                    # (3, 3, 3, 2, 4)
    ```
    """

    pruning_kind = "conv"
    unmasked_class = keras.layers.Conv3D

    def build(self, input_shape):
        super().build(input_shape)
        self.add_mask("kernel", "mask")

    def call(self, inputs):
        outputs = self.convolution_op(inputs, self.masked("kernel"))
        if self.use_bias:
            outputs = _add_bias(outputs, self.bias, self.filters, self.rank, self.data_format)
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="lth_keras")
class MaskedConv2DTranspose(MaskedLayer, keras.layers.Conv2DTranspose):
    """A `keras.layers.Conv2DTranspose` whose kernel is multiplied by a mask.

    Takes exactly the arguments of `keras.layers.Conv2DTranspose`; holds a
    non-trainable ``mask`` of the kernel's shape ``(kh, kw, filters,
    in_channels)``. The bias is not masked.

    Args:
        filters: number of output channels.
        kernel_size: size of the transposed convolution window.
        **kwargs: any other `keras.layers.Conv2DTranspose` argument.

    Example:

    ```python
    up = lth_keras.MaskedConv2DTranspose(8, 3, strides=2, padding="same")
    y = up(np.zeros((1, 16, 16, 4), "float32"))   # shape (1, 32, 32, 8)
    up.mask.shape                                   # (3, 3, 8, 4)
    ```
    """

    pruning_kind = "conv"
    unmasked_class = keras.layers.Conv2DTranspose

    def build(self, input_shape):
        super().build(input_shape)
        self.add_mask("kernel", "mask")

    def call(self, inputs):
        outputs = ops.conv_transpose(
            inputs, self.masked("kernel"), strides=list(self.strides), padding=self.padding,
            output_padding=self.output_padding, dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        if self.use_bias:
            outputs = _add_bias(outputs, self.bias, self.filters, self.rank, self.data_format)
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="lth_keras")
class MaskedDepthwiseConv2D(MaskedLayer, keras.layers.DepthwiseConv2D):
    """A `keras.layers.DepthwiseConv2D` whose kernel is multiplied by a mask.

    Takes exactly the arguments of `keras.layers.DepthwiseConv2D`; holds a
    non-trainable ``mask`` of the depthwise kernel's shape ``(kh, kw,
    in_channels, depth_multiplier)``. The bias is not masked. MobileNet and
    EfficientNet are mostly made of these.

    Args:
        kernel_size: size of the depthwise window.
        **kwargs: any other `keras.layers.DepthwiseConv2D` argument.

    Example:

    ```python
    dw = lth_keras.MaskedDepthwiseConv2D(3, padding="same")
    y = dw(np.zeros((1, 8, 8, 16), "float32"))   # shape (1, 8, 8, 16)
    dw.mask.shape                                  # (3, 3, 16, 1)
    ```
    """

    pruning_kind = "conv"
    unmasked_class = keras.layers.DepthwiseConv2D

    def build(self, input_shape):
        super().build(input_shape)
        self.add_mask("kernel", "mask")

    def call(self, inputs):
        outputs = ops.depthwise_conv(
            inputs, self.masked("kernel"), strides=self.strides, padding=self.padding,
            dilation_rate=self.dilation_rate, data_format=self.data_format,
        )
        if self.use_bias:
            channels = self.depth_multiplier * self._get_input_channel(inputs.shape)
            outputs = _add_bias(outputs, self.bias, channels, self.rank, self.data_format)
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="lth_keras")
class MaskedSeparableConv2D(MaskedLayer, keras.layers.SeparableConv2D):
    """A `keras.layers.SeparableConv2D` with both kernels masked.

    Takes exactly the arguments of `keras.layers.SeparableConv2D`; holds
    ``depthwise_mask`` and ``pointwise_mask``. Its masked weights are named
    ``"<layer>/depthwise_kernel"`` and ``"<layer>/pointwise_kernel"``, so
    rates and `exclude` patterns can address either one.

    Args:
        filters: number of output channels.
        kernel_size: size of the depthwise window.
        **kwargs: any other `keras.layers.SeparableConv2D` argument.

    Example:

    ```python
    sep = lth_keras.MaskedSeparableConv2D(8, 3, padding="same", name="sep")
    y = sep(np.zeros((1, 8, 8, 4), "float32"))         # shape (1, 8, 8, 8)
    [mw.name for mw in sep.masked_weights()]
    # ['sep/depthwise_kernel', 'sep/pointwise_kernel']
    ```
    """

    pruning_kind = "conv"
    unmasked_class = keras.layers.SeparableConv2D

    def build(self, input_shape):
        super().build(input_shape)
        self.add_mask("depthwise_kernel", "depthwise_mask")
        self.add_mask("pointwise_kernel", "pointwise_mask")

    def call(self, inputs):
        outputs = ops.separable_conv(
            inputs, self.masked("depthwise_kernel"), self.masked("pointwise_kernel"),
            strides=self.strides, padding=self.padding, dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        if self.use_bias:
            outputs = _add_bias(outputs, self.bias, self.filters, self.rank, self.data_format)
        return self.activation(outputs) if self.activation is not None else outputs


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


_ATTENTION_PROJECTIONS = (
    ("_query_dense", "query"),
    ("_key_dense", "key"),
    ("_value_dense", "value"),
    ("_output_dense", "attention_output"),
)


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
        for attr, _ in _ATTENTION_PROJECTIONS:
            plain = getattr(self, attr)
            masked = MaskedEinsumDense.from_config(plain.get_config())
            masked.build_from_config(plain.get_build_config())
            # The plain projection's initial values are kept, so that a masked
            # and a plain layer built with the same seed start alike.
            for new, old in zip(masked.weights, plain.weights):
                new.assign(old)
            # In place in the tracked sublayers, so variable order is kept.
            self._tracker.replace_tracked_value("layers", plain, masked)
            setattr(self, attr, masked)

    def masked_weights(self) -> list[MaskedWeight]:
        result = []
        for attr, short in _ATTENTION_PROJECTIONS:
            for mw in getattr(self, attr).masked_weights():
                result.append(mw._replace(name=f"{self.name}/{short}", kind=self.pruning_kind))
        return result


# --------------------------------------------------------------------------
# Model-level helpers. Keys are `MaskedWeight.name`s, values numpy arrays.


def masked_layers(model) -> list[MaskedLayer]:
    """Every `MaskedLayer` inside `model` (nested ones too), in model order.

    A masked layer's own masked sublayers (the projections of
    `MaskedMultiHeadAttention`) are reported through it, not listed again.
    """
    if isinstance(model, MaskedLayer):
        return [model]
    seen, result = set(), []

    def visit(layer):
        for child in layer._flatten_layers(include_self=False, recursive=False):
            if id(child) in seen:
                continue
            seen.add(id(child))
            if isinstance(child, MaskedLayer):
                result.append(child)
            else:
                visit(child)

    visit(model)
    return result


def _all_masked_layers(model):
    """Every `MaskedLayer`, including masked sublayers of masked layers."""
    found = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, MaskedLayer):
            found.setdefault(id(layer), layer)
    return list(found.values())


def _in_place_store(layer):
    # Duck-typed: lth_keras.in_place builds on this module, not the reverse.
    store = getattr(layer, "_lth_masks", None)
    return store if callable(getattr(store, "entries", None)) else None


def _sources(model):
    """Masked layers and in-place mask stores of `model`, in model order.

    A store comes with the names of the layers (not models) that enclose
    its layer: the "attention" of "attention/query".
    """
    if isinstance(model, MaskedLayer):
        return [("layer", model)]
    seen, result = set(), []

    def visit(layer, include_self, enclosing):
        if include_self:
            store = _in_place_store(layer)
            if store is not None:
                result.append(("store", (layer, store, enclosing)))
                return
        if include_self and not isinstance(layer, keras.Model):
            enclosing = enclosing + (layer.name,)
        for child in layer._flatten_layers(include_self=False, recursive=False):
            if id(child) in seen:
                continue
            seen.add(id(child))
            if isinstance(child, MaskedLayer):
                result.append(("layer", child))
            else:
                visit(child, True, enclosing)

    visit(model, True, ())
    return result


def _store_weights(owner, store, enclosing):
    entries = store.entries()
    base = "/".join(enclosing + (owner.name,))
    return [
        MaskedWeight(
            name=base if len(entries) == 1 else f"{base}/{attr}",
            layer=holder, weight=weight, mask=mask, kind=store.kind,
        )
        for attr, weight, mask, holder in entries
    ]


def _path_name(mw):
    # The variable's path without its own name: unique where layer names
    # repeat (the "query" projection of every KerasHub attention block).
    path = mw.weight.path
    return path if "/" in mw.name else path.rsplit("/", 1)[0]


def masked_weights(model, include=None, exclude=None) -> list[MaskedWeight]:
    """All masked weights of `model`, optionally filtered by name.

    Finds the weights of lth_keras's masked layers (and any `MaskedLayer`)
    and those masked in place by `lth_keras.add_masks`. A weight is named
    after its layer (``"<layer>/<weight>"`` when the layer masks several);
    where layer names repeat in a model, in-place weights are named by
    their variable path instead (``"transformer_layer_0/self_attention/query"``).

    Args:
        model: a built Keras model or layer.
        include: optional list of names or fnmatch patterns to keep.
        exclude: optional list of names or fnmatch patterns to drop.
    """
    result, in_place = [], set()
    for kind, source in _sources(model):
        if kind == "layer":
            if not source.built:
                raise ValueError(
                    f"Layer '{source.name}' is not built: call the model on data "
                    "(or build it) before pruning."
                )
            result.extend(source.masked_weights())
        else:
            weights = _store_weights(*source)
            in_place.update(id(mw.mask) for mw in weights)
            result.extend(weights)
    names = [mw.name for mw in result]
    repeated = {n for n in names if names.count(n) > 1}
    if repeated:
        result = [mw._replace(name=_path_name(mw)) if id(mw.mask) in in_place and mw.name in repeated else mw
                  for mw in result]
        names = [mw.name for mw in result]
    if len(set(names)) != len(names):
        raise ValueError(f"Masked weights must have unique names; got {names}.")
    if include is not None:
        _check_patterns(include, names, "include")
        result = [mw for mw in result if _matches(mw.name, include)]
    if exclude is not None:
        _check_patterns(exclude, names, "exclude")
        result = [mw for mw in result if not _matches(mw.name, exclude)]
    return result


def _matches(name, patterns):
    # The whole name, any leading part of it (the layer of
    # "<layer>/<weight>", a block of a path name) or any one part (the
    # layer's own name inside a path).
    parts = name.split("/")
    candidates = {"/".join(parts[:i]) for i in range(1, len(parts) + 1)} | set(parts)
    return any(fnmatch.fnmatchcase(n, p) for n in candidates for p in patterns)


def _check_patterns(patterns, names, argument):
    if isinstance(patterns, str):
        raise ValueError(f"`{argument}` must be a list of layer names, not the string {patterns!r}.")
    for pattern in patterns:
        if not any(_matches(n, [pattern]) for n in names):
            raise ValueError(
                f"`{argument}` names {pattern!r}, which matches no masked layer. "
                f"Masked layers: {names}."
            )


def get_masks(model) -> dict[str, np.ndarray]:
    """Copies of every mask, keyed by masked-weight name."""
    return {mw.name: np.array(mw.mask.numpy()) for mw in masked_weights(model)}


def get_masked_kernels(model) -> dict[str, np.ndarray]:
    """Copies of every masked weight (e.g. kernel), keyed by name."""
    return {mw.name: np.array(mw.weight.numpy()) for mw in masked_weights(model)}


def set_masks(model, masks: dict[str, np.ndarray]) -> None:
    """Assigns masks by name and zeroes the newly pruned weights.

    Names missing from `masks` keep their current mask.
    """
    by_name = {mw.name: mw for mw in masked_weights(model)}
    unknown = sorted(set(masks) - set(by_name))
    if unknown:
        raise ValueError(f"Unknown masked weights {unknown}; model has {sorted(by_name)}.")
    for name, mask in masks.items():
        mw = by_name[name]
        mask = np.asarray(mask)
        if mask.shape != tuple(mw.mask.shape):
            raise ValueError(
                f"Mask for '{name}' has shape {mask.shape}, expected {tuple(mw.mask.shape)}."
            )
        mw.mask.assign(mask.astype(mw.mask.dtype))
    apply_masks_to_weights(model)


def apply_masks_to_weights(model) -> None:
    """Writes exact zeros into every pruned entry of every masked weight.

    The forward pass would ignore them anyway; keeping the stored weights at
    zero makes saved tickets, exports and weight statistics honest (and
    `premasked` exact). Pruned entries become +0.0, survivors are untouched.
    Works eagerly and inside a `tf.function`.
    """
    for mw in masked_weights(model):
        weight = ops.convert_to_tensor(mw.weight)
        keep = ops.not_equal(ops.cast(mw.mask, weight.dtype), 0)
        mw.weight.assign(ops.where(keep, weight, ops.zeros_like(weight)))


@contextlib.contextmanager
def premasked(model):
    """Masked layers of `model` compute with their stored weights as they are.

    Calls traced inside this context skip the ``weight * mask`` product
    (an elementwise pass over every kernel forward, and another backward),
    which is exact only while every pruned entry is stored as exactly zero.
    Whoever uses it must keep that true and mask the gradients itself (see
    `lth_keras.training.Trainer` for how a training loop does it).

    It is a trace-time switch: a `tf.function` traced inside it keeps the
    unmasked reads; one traced outside multiplies by the masks.

    Example:

    ```python
    lth_keras.layers.apply_masks_to_weights(model)
    with lth_keras.layers.premasked(model):
        logits = model(x)   # equals model(x) outside the context
    ```
    """
    layers = _all_masked_layers(model)
    previous = [getattr(layer, "_lth_premasked", False) for layer in layers]
    for layer in layers:
        # object.__setattr__: a plain flag, not something Keras should track.
        object.__setattr__(layer, "_lth_premasked", True)
    try:
        yield model
    finally:
        for layer, value in zip(layers, previous):
            object.__setattr__(layer, "_lth_premasked", value)


def count_weights(model) -> dict[str, tuple[int, int]]:
    """``{name: (remaining, total)}`` for every masked weight."""
    return {
        mw.name: (int(np.count_nonzero(mw.mask.numpy())), int(np.prod(mw.mask.shape)))
        for mw in masked_weights(model)
    }


def fraction_remaining(model) -> float:
    """P_m as a fraction: remaining prunable weights over all prunable weights."""
    counts = count_weights(model).values()
    total = sum(t for _, t in counts)
    if total == 0:
        raise ValueError("The model has no masked weights.")
    return sum(r for r, _ in counts) / total
