"""Any Keras 3 model in and out of masked layers: `make_prunable`, `fold_masks`.

`make_prunable` returns a copy of a model in which every layer lth_keras
knows how to mask is replaced by its masked twin (all masks ones), holding
the same weights; `fold_masks` returns a copy in which every masked layer is
its plain Keras layer again, holding ``weight * mask``. Both work on
Sequential, functional, nested and subclassed models, and both leave their
argument untouched.

How a model is copied depends on what it is:

- Sequential and functional models (``keras.applications`` included) are
  cloned with `keras.models.clone_model`, each layer replaced by a built copy
  that already holds the original's values.
- Any other layer or model that owns sublayers (a subclassed `keras.Model`,
  a custom layer, a wrapper such as `TimeDistributed`) is re-created from
  its `get_config()` (or, for an ``__init__`` without arguments, by calling
  it), built with its build config, and its sublayers (plain attributes,
  lists and dicts of layers) are swapped for converted copies of the
  original's; its own variables are copied. A subclassed model whose
  ``__init__`` takes arguments needs a `get_config` that returns them, as
  for saving it to a ``.keras`` file.
- Everything else is re-created from its config, built, and given the
  original's variables.

Example:

```python
base = keras.applications.MobileNetV2(
    input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)
model = lth_keras.make_prunable(base, exclude=["Conv1"])
lth_keras.layers.fraction_remaining(model)    # 1.0
plain = lth_keras.fold_masks(model)            # plain Keras layers again
```
"""

from __future__ import annotations

import fnmatch
import warnings

import keras
import numpy as np

from lth_keras import layers

__all__ = ["MASKABLE", "make_prunable", "fold_masks"]

# Plain Keras class -> masked twin. Exact types only: a user's subclass of
# Dense may change `call`, and swapping it for MaskedDense would drop that.
MASKABLE = {
    keras.layers.Dense: layers.MaskedDense,
    keras.layers.EinsumDense: layers.MaskedEinsumDense,
    keras.layers.Embedding: layers.MaskedEmbedding,
    keras.layers.MultiHeadAttention: layers.MaskedMultiHeadAttention,
    keras.layers.Conv1D: layers.MaskedConv1D,
    keras.layers.Conv2D: layers.MaskedConv2D,
    keras.layers.Conv3D: layers.MaskedConv3D,
    keras.layers.Conv2DTranspose: layers.MaskedConv2DTranspose,
    keras.layers.DepthwiseConv2D: layers.MaskedDepthwiseConv2D,
    keras.layers.SeparableConv2D: layers.MaskedSeparableConv2D,
}


def make_prunable(model, *, exclude=None):
    """A copy of `model` whose prunable kernels carry masks (all ones).

    Every layer whose exact type is a key of `MASKABLE` becomes its masked
    twin: the kernels of ``Dense``, ``EinsumDense``, ``Conv1D``, ``Conv2D``,
    ``Conv3D``, ``Conv2DTranspose`` and ``DepthwiseConv2D``, both kernels of
    ``SeparableConv2D``, the table of ``Embedding`` (kind ``"embedding"``)
    and the query, key, value and output projection kernels of
    ``MultiHeadAttention`` get masks. Biases, normalization parameters and
    statistics, and every other variable are copied unmasked, as are layers
    already layers.

    The argument is never modified: the result is always a new model, for
    every kind of model (Sequential, functional, nested, ``keras.applications``
    networks, subclassed models whose layers are attributes). It holds the
    same values in every variable, so before any pruning it computes exactly
    what the original computes. It is not compiled.

    A layer that holds a kernel (a trainable weight of rank 2 or more) but
    is of a type that cannot be masked (an ``LSTM``'s cell, a user's
    ``Dense`` subclass, ...) is copied dense and named in one warning.

    Args:
        model: a built Keras model (or layer).
        exclude: `fnmatch` patterns of layer names to leave dense, e.g.
            ``["predictions", "*_project_conv"]``. A pattern that matches no
            layer is an error.

    Returns:
        The prunable copy.

    Raises:
        ValueError: `model` is not built, or a pattern matches no layer.
        TypeError: a subclassed model or layer cannot be re-created from its
            config (give it a `get_config`).

    Example:

    ```python
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, name="output")(x)
    model = lth_keras.make_prunable(keras.Model(inputs, outputs))
    [mw.name for mw in lth_keras.layers.masked_weights(model)]
    # ['conv2d', 'output']
    ```
    """
    if isinstance(exclude, str):
        raise ValueError(f"`exclude` must be a list of layer-name patterns, not the string {exclude!r}.")
    _check_built(model, "make_prunable")
    converter = _Converter(to_masked=True, exclude=list(exclude or ()))
    result = converter.copy(model)
    unmatched = [p for p in converter.exclude if p not in converter.matched]
    if unmatched:
        raise ValueError(
            f"`exclude` names {unmatched}, which match no layer of {model.name!r}."
        )
    if converter.unmaskable:
        names = ", ".join(f"{kind} ({', '.join(layers)})" for kind, layers in converter.unmaskable.items())
        warnings.warn(
            f"make_prunable left these layer types dense (no masked version): {names}.",
            stacklevel=2,
        )
    return result


def fold_masks(model):
    """A copy of `model` with every mask folded into plain Keras layers.

    Each `MaskedLayer` becomes its `unmasked_class` (e.g. `MaskedDense` ->
    `Dense`) holding ``weight * mask``; every other layer is copied with its
    values. Works on anything `make_prunable` produces (Sequential,
    functional, nested, subclassed). The result loads with Keras alone,
    without lth_keras, and computes what the masked model computes.

    Args:
        model: a built Keras model (or layer).

    Returns:
        The folded copy; `model` is not modified.

    Example:

    ```python
    plain = lth_keras.fold_masks(model)
    plain.save("ticket.keras")   # no lth_keras needed to load it
    ```
    """
    _check_built(model, "fold_masks")
    return _Converter(to_masked=False).copy(model)


def _check_built(model, function):
    if not getattr(model, "built", False):
        raise ValueError(
            f"{function} needs a built model, and {model.name!r} is not built. Build it "
            "first: start a functional or Sequential model from `keras.Input(shape)`, "
            "call `model.build((None, *input_shape))`, or call the model on one batch."
        )


def _is_graph_model(layer):
    return isinstance(layer, keras.Sequential) or (
        isinstance(layer, keras.Model) and hasattr(layer, "_run_through_graph") and hasattr(layer, "_nodes_by_depth")
    )


def _sublayers(layer):
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _is_kernel_holder(layer):
    own = list(layer._trainable_variables)
    return any(len(v.shape) >= 2 for v in own)


class _Converter:
    """One conversion (to masked or back to plain) of one model tree."""

    def __init__(self, to_masked, exclude=()):
        self.to_masked = to_masked
        self.exclude = list(exclude)
        self.matched = set()
        self.unmaskable = {}

    # -- what a leaf becomes ----------------------------------------------

    def _excluded(self, layer):
        hits = [p for p in self.exclude if fnmatch.fnmatchcase(layer.name, p)]
        self.matched.update(hits)
        return bool(hits)

    def _target(self, layer):
        """(class, config) of the converted copy, or None: copy as it is."""
        if self.to_masked:
            cls = MASKABLE.get(type(layer))
            if cls is not None and not self._excluded(layer):
                return cls, layer.get_config()
            return None
        if isinstance(layer, layers.MaskedLayer):
            plain = layer.unmasked_layer()
            return type(plain), plain.get_config()
        return None

    # -- copying ------------------------------------------------------------

    def copy(self, layer):
        """A converted copy of `layer` (a new object, built, same values)."""
        if _is_graph_model(layer):
            return self._copy_graph(layer)
        target = None if (self.to_masked and isinstance(layer, layers.MaskedLayer)) else self._target(layer)
        if target is None and _sublayers(layer) and not isinstance(layer, layers.MaskedLayer):
            return self._copy_container(layer)
        if target is None:
            if self.to_masked and not isinstance(layer, layers.MaskedLayer) and _is_kernel_holder(layer):
                if not (type(layer) in MASKABLE and self._excluded(layer)):
                    self.unmaskable.setdefault(type(layer).__name__, []).append(layer.name)
            cls, config = type(layer), layer.get_config()
        else:
            cls, config = target
        new = _recreate(layer, cls, config)
        _copy_variables(layer, new)
        return new

    def _copy_graph(self, model):
        new = keras.models.clone_model(model, clone_function=self.copy)
        if not new.built:
            new.build_from_config(model.get_build_config())
        return new

    def _copy_container(self, layer):
        # A fresh instance from the config, then each of its sublayers
        # swapped for a converted copy of the original's sublayer in the same
        # tracking position (construction order, kept by _replace_sublayer).
        new = _recreate(layer, type(layer), _config_of(layer))
        old_children, new_children = _sublayers(layer), _sublayers(new)
        # Types, not names: unnamed sublayers get new automatic names.
        old_types = [_plain_type(c) for c in old_children]
        new_types = [_plain_type(c) for c in new_children]
        if old_types != new_types:
            raise TypeError(
                f"{type(layer).__name__} {layer.name!r} cannot be copied: re-created from its "
                f"config it has the sublayers {[t.__name__ for t in new_types]}, the original "
                f"{[t.__name__ for t in old_types]}. Create sublayers in `__init__`, in a fixed order."
            )
        for old_child, new_child in zip(old_children, new_children):
            _replace_sublayer(new, new_child, self.copy(old_child))
        _copy_own_variables(layer, new)
        if hasattr(new, "_track_variables") and hasattr(new, "_torch_params"):
            # The PyTorch backend mirrors variables in a ParameterDict.
            new._track_variables()
        return new


def _plain_type(layer):
    if isinstance(layer, layers.MaskedLayer) and layer.unmasked_class is not None:
        return layer.unmasked_class
    return type(layer)


def _config_of(layer):
    try:
        return layer.get_config()
    except NotImplementedError:
        return None  # _recreate falls back to the recorded constructor arguments


def _recreate(layer, cls, config):
    try:
        if config is None:
            raise NotImplementedError(f"{type(layer).__name__}.get_config is not implemented")
        new = cls.from_config(config)
    except Exception as e:  # noqa: BLE001 - any failure means the same to the user
        new = _recreate_from_init_arguments(layer, cls)
        if new is None:
            raise TypeError(
                f"{type(layer).__name__} {layer.name!r} cannot be copied: lth_keras re-creates "
                f"subclassed models and layers from their config, and that failed "
                f"({type(e).__name__}: {e}). Give {type(layer).__name__} a `get_config` that returns "
                "its constructor arguments (and a `from_config` if they are not plain values)."
            ) from None
    build_config = layer.get_build_config()
    if build_config:
        new.build_from_config(build_config)
        # A subclassed model is built by a symbolic run that creates its
        # variables but leaves `built` unset.
        if layer.built and not new.built:
            new.built = True
    elif not new.built and layer.built:
        raise ValueError(
            f"Layer {layer.name!r} was built without a recorded input shape; call the "
            "model on one batch (or `model.build(input_shape)`) before copying it."
        )
    return new


def _recreate_from_init_arguments(layer, cls):
    """``cls(*the arguments the layer was constructed with*)``, or None.

    Keras records them for every layer; a subclassed model whose ``__init__``
    takes no ``name``/``trainable``/``dtype`` cannot be rebuilt from its
    default config, but can be from these.
    """
    recorded = getattr(layer, "_auto_config", None)
    if recorded is None or cls is not type(layer):
        return None
    try:
        new = cls(**dict(recorded.config))
    except Exception:  # noqa: BLE001
        return None
    if new.name != layer.name:
        # Before build, so that variable paths carry the original's name.
        new.name = layer.name
    return new


def _copy_variables(old, new):
    """Copies `old`'s values into `new`, masks folded or added as needed."""
    old_masks, folded = set(), {}
    if isinstance(old, layers.MaskedLayer) and not isinstance(new, layers.MaskedLayer):
        for mw in old.masked_weights():
            old_masks.add(id(mw.mask))
            weight = np.asarray(mw.weight.numpy())
            folded[id(mw.weight)] = np.where(np.asarray(mw.mask.numpy()) != 0, weight, 0).astype(weight.dtype)
    new_masks = set()
    if isinstance(new, layers.MaskedLayer) and not isinstance(old, layers.MaskedLayer):
        new_masks = {id(mw.mask) for mw in new.masked_weights()}
    sources = [v for v in old.variables if id(v) not in old_masks]
    targets = [v for v in new.variables if id(v) not in new_masks]
    if len(sources) != len(targets):
        raise RuntimeError(
            f"Layer {old.name!r}: the copy has {len(targets)} variables where the original "
            f"has {len(sources)}; it cannot be copied faithfully."
        )
    for source, target in zip(sources, targets):
        if tuple(source.shape) != tuple(target.shape):
            raise RuntimeError(
                f"Layer {old.name!r}: variable {source.path} has shape {tuple(source.shape)} "
                f"but its copy {target.path} has {tuple(target.shape)}."
            )
        value = folded.get(id(source))
        target.assign(value if value is not None else source.numpy())


def _own_variables(layer):
    seeds = [g.state for g in getattr(layer, "_seed_generators", [])]
    return list(layer._trainable_variables) + list(layer._non_trainable_variables) + seeds


def _copy_own_variables(old, new):
    sources, targets = _own_variables(old), _own_variables(new)
    if [tuple(v.shape) for v in sources] != [tuple(v.shape) for v in targets]:
        raise RuntimeError(f"Layer {old.name!r}: its copy's own variables differ from the original's.")
    for source, target in zip(sources, targets):
        target.assign(source.numpy())


def _replace_sublayer(container, old, new):
    """Points every reference `container` holds to `old` at `new`."""
    container._tracker.replace_tracked_value("layers", old, new)
    for attr, value in list(vars(container).items()):
        if attr in ("_layers", "_tracker") or attr.startswith("_torch"):
            continue
        if value is old:
            setattr(container, attr, new)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if item is old:
                    list.__setitem__(value, i, new)
        elif isinstance(value, dict):
            for key, item in list(value.items()):
                if item is old:
                    dict.__setitem__(value, key, new)
    # Sublayers stored by a torch.nn.Module live in `_modules`, not __dict__.
    modules = vars(container).get("_modules")
    if isinstance(modules, dict):
        for key, item in list(modules.items()):
            if item is old:
                modules[key] = new
