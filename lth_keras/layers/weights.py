"""The functions over a model's masks, keyed by `MaskedWeight.name`.

They find masked weights wherever they are: in lth_keras's masked layers
(any `MaskedLayer`) and in layers masked in place by `lth_keras.add_masks`.
Values are numpy arrays.

Example:

```python
lth_keras.layers.count_weights(model)        # {"dense": (235200, 235200), ...}
lth_keras.layers.fraction_remaining(model)   # P_m as a fraction, 1.0 dense
```
"""

from __future__ import annotations

import contextlib
import fnmatch

import keras
import numpy as np
from keras import ops

from lth_keras.layers import keras_adapter
from lth_keras.layers.base import MaskedLayer, MaskedWeight

__all__ = [
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


def masked_layers(model) -> list[MaskedLayer]:
    """Every `MaskedLayer` inside `model` (nested ones too), in model order.

    A masked layer's own masked sublayers (the projections of
    `MaskedMultiHeadAttention`) are reported through it, not listed again.
    """
    if isinstance(model, MaskedLayer):
        return [model]
    seen, result = set(), []

    def visit(layer):
        for child in keras_adapter.sublayers(layer):
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
    for layer in keras_adapter.all_sublayers(model):
        if isinstance(layer, MaskedLayer):
            found.setdefault(id(layer), layer)
    return list(found.values())


def _in_place_store(layer):
    # Duck-typed: the in-place masks (`in_place.MaskStore`) are found without importing them.
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
        for child in keras_adapter.sublayers(layer):
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
