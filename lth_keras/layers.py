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
    "MaskedConv2D",
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
    "fold_masks",
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

    Example: a prunable depthwise convolution.

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


# --------------------------------------------------------------------------
# Model-level helpers. Keys are `MaskedWeight.name`s, values numpy arrays.


def masked_layers(model) -> list[MaskedLayer]:
    """Every `MaskedLayer` inside `model` (nested ones too), in model order."""
    if isinstance(model, MaskedLayer):
        return [model]
    seen, result = set(), []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, MaskedLayer) and id(layer) not in seen:
            seen.add(id(layer))
            result.append(layer)
    return result


def masked_weights(model, include=None, exclude=None) -> list[MaskedWeight]:
    """All masked weights of `model`, optionally filtered by name.

    Args:
        model: a built Keras model or layer.
        include: optional list of names or fnmatch patterns to keep.
        exclude: optional list of names or fnmatch patterns to drop.
    """
    result = []
    for layer in masked_layers(model):
        if not layer.built:
            raise ValueError(
                f"Layer '{layer.name}' is not built: call the model on data "
                "(or build it) before pruning."
            )
        result.extend(layer.masked_weights())
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
    layer_name = name.split("/")[0]
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(layer_name, p) for p in patterns)


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
    layers = masked_layers(model)
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


def fold_masks(model) -> keras.Model:
    """A copy of `model` with every mask folded into plain Keras layers.

    Each `MaskedLayer` becomes its `unmasked_class` (e.g. `MaskedDense` ->
    `Dense`) holding ``weight * mask``; other layers are copied with their
    weights. The result loads with Keras alone, without lth_keras. Works for
    Sequential and functional models.

    Example:

    ```python
    plain = lth_keras.layers.fold_masks(model)
    plain.save("ticket.keras")   # no lth_keras needed to load it
    ```
    """
    pairs = []

    def clone(layer):
        new = layer.unmasked_layer() if isinstance(layer, MaskedLayer) else layer.__class__.from_config(layer.get_config())
        pairs.append((layer, new))
        return new

    try:
        plain = keras.models.clone_model(model, clone_function=clone)
    except ValueError as e:
        # Keras clones only Sequential and functional models with a clone_function.
        raise TypeError(
            "fold_masks supports Sequential and functional models; for a "
            "subclassed model, build a plain twin and copy `kernel * mask` "
            f"into it. ({e})"
        ) from None
    for old, new in pairs:
        if not old.weights:
            continue
        values = {}
        for variable in old.weights:
            values[variable.path.split("/")[-1]] = np.array(variable.numpy())
        if isinstance(old, MaskedLayer):
            for mw in old.masked_weights():
                key = mw.weight.path.split("/")[-1]
                values[key] = np.where(mw.mask.numpy() != 0, values[key], 0).astype(values[key].dtype)
        for variable in new.weights:
            variable.assign(values[variable.path.split("/")[-1]])
    return plain
