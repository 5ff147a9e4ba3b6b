"""A prunable copy of any Keras 3 model, and a plain copy of a pruned one.

`make_prunable` returns a copy of a model whose prunable kernels carry
all-ones masks (`lth_keras.add_masks` on the copy); `fold_masks` returns a
plain Keras copy holding ``weight * mask``. Both leave their argument
untouched. To prune a model as it is, without a copy, give it to the
callbacks or to `lth_keras.add_masks`.

A model is copied through its own ``.keras`` format (config and
variables, masks included), so that whatever Keras can save and load is
copied: operator nodes between layers, KerasHub backbones, subclassed
models with a config. A layer, or a model Keras cannot reload, is copied
layer by layer instead: Sequential and functional graphs with
`keras.models.clone_model`, containers by re-creating them from their
config and swapping in copies of their sublayers.

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

import os
import tempfile

import keras
import numpy as np

from lth_keras.layers import in_place
from lth_keras.layers import keras_adapter
from lth_keras.layers import weights
from lth_keras.layers.base import MaskedLayer

__all__ = ["make_prunable", "fold_masks", "copy_model"]

def make_prunable(model, *, exclude=None):
    """A copy of `model` whose prunable kernels carry masks (all ones).

    The copy gets its masks from `lth_keras.add_masks`: the kernels of
    ``Dense``, ``EinsumDense`` (attention projections included),
    ``Conv1D/2D/3D``, their transposes, ``DepthwiseConv1D/2D`` and both
    kernels of ``SeparableConv1D/2D``, the table of ``Embedding`` (kind
    ``"embedding"``), and the kernel and recurrent kernel of ``SimpleRNN``,
    ``LSTM`` and ``GRU`` (kind ``"recurrent"``), wherever they sit. Biases,
    normalization parameters and statistics and every other variable are
    copied unmasked, as are layers already masked.

    The argument is never modified: the result is always a new model, for
    every kind of model (Sequential, functional with operators between
    layers, nested, ``keras.applications`` networks, KerasHub backbones,
    subclassed models). It holds the same values in every variable, so
    before any pruning it computes exactly what the original computes. It
    is not compiled.

    A layer that holds a kernel (a trainable weight of rank 2 or more) of a
    type that cannot be masked is copied dense and named in one warning.

    Args:
        model: a built Keras model (or layer).
        exclude: `fnmatch` patterns of layer names to leave dense, e.g.
            ``["predictions", "*_project_conv"]``. A pattern that matches no
            layer is an error.

    Returns:
        The prunable copy.

    Raises:
        ValueError: `model` is not built, or a pattern matches no layer.
        TypeError: the model can neither be saved and reloaded by Keras nor
            re-created from its layers' configs.

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
    result = copy_model(model)
    in_place.add_masks(result, exclude=exclude)
    in_place.warn_unmaskable(result, "make_prunable")
    return result


def fold_masks(model):
    """A copy of `model` with every mask folded into plain Keras layers.

    Masks attached in place are folded and removed; each of lth_keras's
    masked layers becomes its `unmasked_class` (e.g. `MaskedDense` ->
    `Dense`) holding ``weight * mask``; every other layer is copied with
    its values. The result loads with Keras alone, without lth_keras, and
    computes what the masked model computes.

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
    result = in_place.remove_masks(copy_model(model))
    if weights.masked_layers(result):
        result = _Converter(mode="fold").copy_tree(result)
    return result


def copy_model(model):
    """A copy of `model` (any built model or layer) with the same values,
    masks included, sharing no state with it. Not compiled."""
    error = None
    if isinstance(model, keras.Model):
        try:
            return _copy_through_file(model)
        except Exception as e:  # noqa: BLE001 - then layer by layer
            error = e
    try:
        return _Converter(mode="copy").copy_tree(model)
    except TypeError as e:
        if error is not None:
            raise TypeError(f"{e} (Saving and reloading it with Keras failed too: {type(error).__name__}: {error})") from None
        raise


def _copy_through_file(model):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        # Our own file: the Lambda layers safe mode refuses are the user's.
        return in_place.load_model(path, compile=False, safe_mode=False)


def _check_built(model, function):
    if not getattr(model, "built", False):
        raise ValueError(
            f"{function} needs a built model, and {model.name!r} is not built. Build it "
            "first: start a functional or Sequential model from `keras.Input(shape)`, "
            "call `model.build((None, *input_shape))`, or call the model on one batch."
        )


def _sublayers(layer):
    return keras_adapter.sublayers(layer)


class _Converter:
    """One layer-by-layer copy of one model tree: as it is ("copy"), or
    with lth_keras's masked layers folded into plain ones ("fold")."""

    def __init__(self, mode):
        self.mode = mode
        self.in_place = []  # (original, copy) of layers masked in place

    def _target(self, layer):
        """(class, config) of the converted copy, or None: copy as it is."""
        if self.mode == "fold" and isinstance(layer, MaskedLayer):
            plain = layer.unmasked_layer()
            return type(plain), plain.get_config()
        return None

    def copy(self, layer):
        """A converted copy of `layer` (a new object, built, same values)."""
        if not isinstance(layer, keras.layers.Layer):
            return layer  # an operator node of a functional graph holds no state
        if keras_adapter.is_graph_model(layer):
            return self._copy_graph(layer)
        masked_in_place = in_place.is_masked_in_place(layer)
        target = self._target(layer)
        if target is None and _sublayers(layer) and not isinstance(layer, MaskedLayer) \
                and not masked_in_place:
            return self._copy_container(layer)
        cls, config = target or (type(layer), layer.get_config())
        new = _recreate(layer, cls, config)
        if masked_in_place:
            _copy_own_variables(layer, new)
            for old_child, new_child in zip(_sublayers(layer), _sublayers(new)):  # an RNN's cell
                _copy_variables(old_child, new_child)
            self.in_place.append((layer, new))
        else:
            _copy_variables(layer, new)
        return new

    def copy_tree(self, model):
        new = self.copy(model)
        for old, copied in self.in_place:
            in_place.copy_masks(old, copied)
        return new

    def _copy_graph(self, model):
        new = keras.models.clone_model(model, clone_function=self.copy)
        if not new.built:
            new.build_from_config(model.get_build_config())
        return new

    def _copy_container(self, layer):
        # A fresh instance from the config, then each of its sublayers
        # swapped for a converted copy of the original's sublayer in the same
        # tracking position (construction order, kept by replace_sublayer).
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
            keras_adapter.replace_sublayer(new, new_child, self.copy(old_child))
        _copy_own_variables(layer, new)
        # The PyTorch backend mirrors variables in a ParameterDict.
        keras_adapter.refresh_torch_params([new])
        return new


def _plain_type(layer):
    if isinstance(layer, MaskedLayer) and layer.unmasked_class is not None:
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
    recorded = keras_adapter.init_arguments(layer)
    if recorded is None or cls is not type(layer):
        return None
    try:
        new = cls(**recorded)
    except Exception:  # noqa: BLE001
        return None
    if new.name != layer.name:
        # Before build, so that variable paths carry the original's name.
        new.name = layer.name
    return new


def _copy_variables(old, new):
    """Copies `old`'s values into `new`, masks folded or added as needed."""
    old_masks, folded = set(), {}
    if isinstance(old, MaskedLayer) and not isinstance(new, MaskedLayer):
        for mw in old.masked_weights():
            old_masks.add(id(mw.mask))
            weight = np.asarray(mw.weight.numpy())
            folded[id(mw.weight)] = np.where(np.asarray(mw.mask.numpy()) != 0, weight, 0).astype(weight.dtype)
    new_masks = set()
    if isinstance(new, MaskedLayer) and not isinstance(old, MaskedLayer):
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
    return keras_adapter.own_variables(layer) + keras_adapter.seed_states(layer)


def _copy_own_variables(old, new):
    sources, targets = _own_variables(old), _own_variables(new)
    if [tuple(v.shape) for v in sources] != [tuple(v.shape) for v in targets]:
        raise RuntimeError(f"Layer {old.name!r}: its copy's own variables differ from the original's.")
    for source, target in zip(sources, targets):
        target.assign(source.numpy())
