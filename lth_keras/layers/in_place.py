"""Masks for the layers of any Keras model, attached in place.

`add_masks(model)` finds every layer whose kernel lth_keras knows how to
mask, wherever it sits (a functional graph with operators between layers,
a KerasHub transformer block, a subclassed model, `TimeDistributed`,
`Bidirectional`), and gives it masks without rebuilding anything: the
model object, its graph and its layers stay the same objects.

How a layer is masked in place:

- Its masks live in a small sublayer, `MaskStore`, attached as the
  attribute ``_lth_masks``. They are model variables (non-trainable), so
  every backend's compiled step reads their current value, and masks
  changed by pruning need no retracing.
- The layer's ``call`` is wrapped on the instance (its class is not
  changed): during the call, each masked weight's attribute holds
  ``weight * mask``, so the layer's own code, whatever it is, computes with
  the masked weight, and the gradient of a pruned entry is exactly zero.
  For a recurrent layer the weights are its cell's, and the recurrent
  layer's call is the one wrapped (once per sequence, not per step).
- Saving: the layer's config and its own saved variables are unchanged,
  and the masks are saved under ``<layer>/_lth_masks`` in the same file.
  `keras.saving.load_model` alone therefore loads a plain model holding the
  ticket (pruned weights are stored as zeros), and `load_model` here
  restores the masks as well, so training can resume.

Example:

```python
import keras, keras_hub, lth_keras

backbone = keras_hub.models.BertBackbone(
    vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
    intermediate_dim=32, max_sequence_length=8)
lth_keras.add_masks(backbone)             # the same object, now prunable
len(lth_keras.layers.masked_weights(backbone))   # 15: 13 kernels, 2 tables
```
"""

from __future__ import annotations

import fnmatch
import functools
import warnings

import keras
from keras import ops

from lth_keras.layers import keras_adapter
from lth_keras.layers.base import MaskedLayer

__all__ = ["MaskStore", "add_masks", "remove_masks", "load_model", "maskable", "is_masked_in_place", "stores",
           "copy_masks"]

STORE_ATTR = "_lth_masks"


def _classes(*names):
    return tuple(getattr(keras.layers, n) for n in names if hasattr(keras.layers, n))


# (layer classes, masked weight attributes, pruning kind), most specific first.
_KERNELS = (
    (_classes("SeparableConv1D", "SeparableConv2D"), ("depthwise_kernel", "pointwise_kernel"), "conv"),
    (_classes("DepthwiseConv1D", "DepthwiseConv2D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
              "Conv1D", "Conv2D", "Conv3D"), ("kernel",), "conv"),
    (_classes("EinsumDense", "Dense"), ("kernel",), "dense"),
    (_classes("Embedding"), ("embeddings",), "embedding"),
)
_RECURRENT = _classes("SimpleRNN", "LSTM", "GRU")
_RECURRENT_CELLS = _classes("SimpleRNNCell", "LSTMCell", "GRUCell")
_RECURRENT_WEIGHTS = ("kernel", "recurrent_kernel")
MASKABLE_DESCRIPTION = ", ".join(sorted({c.__name__ for classes, _, _ in _KERNELS for c in classes}
                                       | {c.__name__ for c in _RECURRENT}))


def maskable(layer):
    """``(holder, weight attributes, kind)`` when `layer` can be masked in
    place, else None. The holder owns the weights: the layer itself, or the
    cell of a SimpleRNN, LSTM or GRU."""
    if isinstance(layer, (MaskedLayer, MaskStore)):
        return None
    if isinstance(layer, _RECURRENT) and isinstance(getattr(layer, "cell", None), _RECURRENT_CELLS):
        return layer.cell, _RECURRENT_WEIGHTS, "recurrent"
    for classes, attrs, kind in _KERNELS:
        if isinstance(layer, classes):
            return layer, attrs, kind
    return None


def is_masked_in_place(layer) -> bool:
    """Whether `add_masks` has attached masks to `layer`."""
    return isinstance(_store(layer), MaskStore)


def _store(layer):
    try:
        return getattr(layer, STORE_ATTR)
    except AttributeError:
        return None


class MaskStore(keras.layers.Layer):
    """The masks of one layer's weights, as a sublayer of that layer.

    Created by `add_masks`; not called in a model. Each mask is a
    non-trainable 0/1 variable of its weight's shape and dtype, replicated
    identically under `tf.distribute` (``aggregation="only_first_replica"``).

    Args:
        weights: ``{attribute: weight variable}`` of the holder layer.
        holder: the layer that owns the weights.
        kind: the weights' pruning kind (``"dense"``, ``"conv"``, ...).
    """

    def __init__(self, weights, holder, kind, **kwargs):
        super().__init__(trainable=False, **kwargs)
        # Behind a closure: neither tracked (the holder tracks them) nor
        # walked by Keras's saving, which would loop back into the holder.
        weights = dict(weights)
        object.__setattr__(self, "_lth_refs", lambda: (holder, weights))
        self.kind = kind
        self.loaded = None
        self.masks = {}
        for attr, weight in weights.items():
            self.masks[attr] = self.add_weight(
                shape=tuple(weight.shape), initializer="ones", dtype=weight.dtype, trainable=False,
                aggregation="only_first_replica", name=f"{attr}_mask")
        self.built = True

    def call(self, inputs):
        raise TypeError("A MaskStore holds masks; it is not a layer to call.")

    def entries(self):
        """``(attribute, weight, mask, holder)`` for each masked weight."""
        holder, weights = self._lth_refs()
        return [(attr, w, self.masks[attr], holder) for attr, w in weights.items()]

    def load_own_variables(self, store):
        # An empty entry: the file has no masks for this layer (it was
        # excluded, or saved dense); `load_model` detaches this store.
        if not len(store.keys()):
            self.loaded = False
            return
        super().load_own_variables(store)
        self.loaded = True


def _storage_attribute(holder, weight):
    """The instance attribute through which `holder` reads `weight`."""
    names = [k for k, v in vars(holder).items() if v is weight]
    return names[0] if len(names) == 1 else None


def _masked_call(owner, original):
    @functools.wraps(original)
    def call(*args, **kwargs):
        store = _store(owner)
        swapped = []
        try:
            for attr, weight, mask, holder in store.entries():
                name = store._lth_storage[attr]
                # Inside the layer's autocast scope: both are read in the
                # compute dtype, as the layer would read the weight itself.
                object.__setattr__(holder, name, ops.multiply(weight, mask))
                swapped.append((holder, name, weight))
            return original(*args, **kwargs)
        finally:
            for holder, name, weight in swapped:
                object.__setattr__(holder, name, weight)

    call._lth_original = original
    return call


def _excluded(layer, exclude, matched):
    hits = [p for p in exclude if fnmatch.fnmatchcase(layer.name, p)]
    matched.update(hits)
    return bool(hits)


def _candidates(model):
    """Maskable layers of `model` in model order, each once; the cells of
    recurrent layers are reached through their layer."""
    found, seen = [], set()

    def visit(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        spec = maskable(layer)
        if spec is not None:
            found.append((layer, spec))
            return
        if isinstance(layer, (MaskedLayer, MaskStore)):
            return
        for child in keras_adapter.sublayers(layer):
            visit(child)

    visit(model)
    return found


def add_masks(model, *, exclude=None):
    """Gives every prunable kernel of `model` an all-ones mask, in place.

    The kernels of ``Dense``, ``EinsumDense`` (the projections of
    ``MultiHeadAttention`` and of KerasHub's attention layers among them),
    ``Conv1D/2D/3D``, their transposes, ``DepthwiseConv1D/2D`` and both
    kernels of ``SeparableConv1D/2D`` (kind ``"conv"``); the table of
    ``Embedding`` (kind ``"embedding"``); and the kernel and recurrent
    kernel of ``SimpleRNN``, ``LSTM`` and ``GRU`` (kind ``"recurrent"``),
    inside ``Bidirectional`` too. Subclasses of these count, since the
    masked weight is what their own ``call`` reads. Layers already masked
    (lth_keras's masked layers, or by an earlier call) are left as they are;
    frozen layers (``trainable=False``) and quantized or LoRA-enabled ones
    stay dense.

    Nothing is rebuilt: the model computes exactly what it computed before,
    until a mask gets a zero. Compiled `fit`/`evaluate`/`predict` steps are
    traced again. A user's ``kernel_constraint`` is kept.

    Args:
        model: a built Keras model or layer.
        exclude: `fnmatch` patterns of layer names to leave dense. A pattern
            that matches no maskable layer is an error.

    Returns:
        `model` itself.

    Example:

    ```python
    inputs = keras.Input((8,))
    h = keras.layers.Dense(16, activation="relu")(inputs)
    h = h + keras.ops.tanh(keras.layers.Dense(16)(h))   # an operator node
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(h))
    lth_keras.add_masks(model, exclude=["out"])
    [mw.name for mw in lth_keras.layers.masked_weights(model)]
    # ['dense', 'dense_1']
    ```
    """
    if isinstance(exclude, str):
        raise ValueError(f"`exclude` must be a list of layer-name patterns, not the string {exclude!r}.")
    if not getattr(model, "built", False):
        raise ValueError(
            f"add_masks needs a built model, and {model.name!r} is not built. Build it first: start "
            "a functional or Sequential model from `keras.Input(shape)`, call "
            "`model.build((None, *input_shape))`, or call the model on one batch."
        )
    exclude = list(exclude or ())
    matched, changed = set(), []
    with keras_adapter.variable_scope(model):
        for owner, (holder, attrs, kind) in _candidates(model):
            excluded = _excluded(owner, exclude, matched)
            if excluded or is_masked_in_place(owner) or not _can_mask(owner, holder):
                continue
            if _attach(owner, holder, attrs, kind):
                changed.append(owner)
    unmatched = [p for p in exclude if p not in matched]
    if unmatched:
        raise ValueError(f"`exclude` names {unmatched}, which match no maskable layer of {model.name!r}.")
    if changed:
        keras_adapter.refresh_torch_params(keras_adapter.all_sublayers(model))
        keras_adapter.invalidate_compiled_functions(model)
    return model


def _attach(owner, holder, attrs, kind):
    weights = {a: getattr(holder, a, None) for a in attrs}
    storage = {a: _storage_attribute(holder, w) for a, w in weights.items()}
    if not all(isinstance(w, keras.Variable) for w in weights.values()) or None in storage.values():
        return None
    with keras_adapter.unlocked(owner):
        store = MaskStore(weights, holder, kind, name=f"{owner.name}_masks")
        object.__setattr__(store, "_lth_storage", storage)
        setattr(owner, STORE_ATTR, store)
    object.__setattr__(owner, "call", _masked_call(owner, owner.call))
    return store


def copy_masks(source, target):
    """Masks `target` in place as `source` is, with the same mask values
    (`target` is a copy of the layer `source`, built alike)."""
    holder, attrs, kind = maskable(target)
    store = _attach(target, holder, attrs, kind)
    for attr, mask in _store(source).masks.items():
        store.masks[attr].assign(ops.convert_to_numpy(mask))
    keras_adapter.refresh_torch_params([target, store])


def _can_mask(owner, holder):
    if not (owner.trainable and holder.trainable and holder.built):
        return False
    if getattr(holder, "quantization_mode", None) is not None or getattr(holder, "lora_enabled", False):
        return False
    return True


def remove_masks(model):
    """Folds every in-place mask into its weight and detaches it.

    Each masked weight becomes ``weight * mask`` and the layers are plain
    again (their ``call`` and state as before `add_masks`). In place;
    returns `model`.
    """
    changed = stores(model)
    for owner, store in changed:
        for _, weight, mask, _ in store.entries():
            value = ops.convert_to_tensor(weight)
            weight.assign(ops.where(ops.not_equal(ops.convert_to_tensor(mask), 0), value, ops.zeros_like(value)))
        _detach(owner, store)
    if changed:
        keras_adapter.refresh_torch_params(keras_adapter.all_sublayers(model))
        keras_adapter.invalidate_compiled_functions(model)
    return model


def _detach(owner, store):
    with keras_adapter.unlocked(owner):
        keras_adapter.untrack(owner, store)
        delattr(owner, STORE_ATTR)
    if "call" in vars(owner):
        object.__delattr__(owner, "call")


def stores(model) -> list:
    """Every `MaskStore` in `model`, in model order."""
    result = []
    for owner in keras_adapter.all_sublayers(model):
        store = _store(owner)
        if isinstance(store, MaskStore):
            result.append((owner, store))
    return result


def warn_unmaskable(model, function):
    """One warning naming the layer types that hold kernels but stay dense."""
    dense = {}
    candidates = _candidates(model)
    masked_ids = {id(owner) for owner, _ in candidates}
    cells = {id(spec[0]) for _, spec in candidates}
    for layer in keras_adapter.all_sublayers(model, include_self=False):
        if id(layer) in masked_ids or id(layer) in cells or isinstance(layer, (MaskStore, MaskedLayer)):
            continue
        if any(len(v.shape) >= 2 and v.trainable for v in keras_adapter.own_variables(layer)):
            dense.setdefault(type(layer).__name__, []).append(layer.name)
    if dense:
        names = ", ".join(f"{kind} ({', '.join(names)})" for kind, names in dense.items())
        warnings.warn(f"{function} left these layer types dense (no mask for them): {names}.", stacklevel=3)


def load_model(filepath, *, custom_objects=None, compile=True, safe_mode=True):
    """`keras.saving.load_model`, with the in-place masks the file holds.

    A model pruned in place and saved with ``model.save`` stores its masks
    beside its layers' variables; Keras alone loads the plain model (the
    ticket, pruned weights at zero), and this puts the masks back on the
    same layers, so pruning and training resume where they were. A file
    without such masks loads exactly as with Keras.

    Args:
        filepath: a ``.keras`` file.
        custom_objects, compile, safe_mode: as for `keras.saving.load_model`.

    Returns:
        The loaded model.

    Example:

    ```python
    model.save("ticket.keras")
    model = lth_keras.load_model("ticket.keras")
    lth_keras.layers.fraction_remaining(model)   # as when it was saved
    ```
    """
    model = keras.saving.load_model(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
    if not _file_has_masks(filepath):
        return model
    add_masks(model)
    for _, store in stores(model):
        store.loaded = False
    model.load_weights(filepath)
    for owner, store in stores(model):
        if not store.loaded:
            _detach(owner, store)
    keras_adapter.refresh_torch_params(keras_adapter.all_sublayers(model))
    keras_adapter.invalidate_compiled_functions(model)
    return model


def _file_has_masks(filepath):
    import zipfile

    import h5py

    try:
        with zipfile.ZipFile(filepath) as archive, archive.open("model.weights.h5") as raw:
            with h5py.File(raw, "r") as weights:
                names = []
                weights.visit(names.append)
    except (OSError, KeyError, zipfile.BadZipFile):
        return False
    return any(name.rsplit("/", 1)[-1] == STORE_ATTR for name in names)
