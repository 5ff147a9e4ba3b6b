"""The private Keras attributes lth_keras relies on, in one place.

Keras 3 has no public API for a few things pruning needs: the sublayers a
layer tracks, the variables a layer created itself, adding state to (or
swapping a sublayer of) a layer that is already built, refreshing the
PyTorch backend's parameter registry, a few convolution helpers, the
projections of `MultiHeadAttention`, and an optimizer's learning-rate
schedule and built-for variables. Each is wrapped here by a named
function, so that a Keras release that renames one is fixed in this file
(``tests/layers/keras_adapter_test.py`` checks that no other module of
lth_keras touches them).

Example:

```python
from lth_keras.layers import keras_adapter

keras_adapter.all_sublayers(model)   # model and every layer inside it
```
"""

from __future__ import annotations

import contextlib

import keras

__all__ = [
    "ATTENTION_PROJECTIONS",
    "all_sublayers",
    "attention_projections",
    "causal_padding",
    "init_arguments",
    "input_channels",
    "invalidate_compiled_functions",
    "is_graph_model",
    "learning_rate_source",
    "optimizer_built_for",
    "own_variables",
    "refresh_torch_params",
    "replace_sublayer",
    "replace_tracked_sublayer",
    "seed_states",
    "set_attention_projection",
    "sublayers",
    "unlocked",
    "untrack",
    "variable_scope",
]


def is_graph_model(model) -> bool:
    """Sequential, functional, or a functional subclass (KerasHub's
    backbones): a model whose layers are listed in call order."""
    return isinstance(model, keras.Sequential) or (
        isinstance(model, keras.Model) and hasattr(model, "_run_through_graph") and hasattr(model, "_nodes_by_depth"))


def sublayers(layer) -> list:
    """The layers `layer` tracks directly (not itself, not their children)."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def all_sublayers(layer, include_self=True) -> list:
    """`layer` and every layer it tracks, at any depth, each once."""
    return list(layer._flatten_layers(include_self=include_self, recursive=True))


def own_variables(layer) -> list:
    """The variables `layer` created itself (its sublayers' excluded):
    trainable ones first, each group in creation order."""
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def seed_states(layer) -> list:
    """The state variables of the seed generators `layer` owns (a
    `Dropout`'s, say), which `own_variables` does not list."""
    return [generator.state for generator in getattr(layer, "_seed_generators", [])]


def init_arguments(layer):
    """The keyword arguments `layer` was constructed with, as Keras
    recorded them (a dict), or None when it recorded none."""
    recorded = getattr(layer, "_auto_config", None)
    return None if recorded is None else dict(recorded.config)


@contextlib.contextmanager
def unlocked(layer):
    """Lets a built layer take new state (a sublayer, a variable).

    Keras locks a layer's tracker after `build`, so that state is only ever
    created there; adding masks to a built model is the one exception
    lth_keras makes, and it keeps the lock as it found it.
    """
    tracker = getattr(layer, "_tracker", None)
    was_locked = bool(getattr(tracker, "locked", False))
    if tracker is not None:
        tracker.unlock()
    try:
        yield layer
    finally:
        if tracker is not None and was_locked:
            tracker.lock()


def variable_scope(model):
    """Where new variables of `model` must be created: inside its
    `tf.distribute` strategy's scope when it was built under one (Keras's
    TensorFlow trainer records it), so that masks are mirrored like the
    weights; a no-op elsewhere."""
    strategy = getattr(model, "_distribute_strategy", None)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def untrack(layer, sublayer) -> None:
    """Stops `layer` tracking `sublayer` (before the attribute is deleted:
    Keras untracks deleted variables, not deleted sublayers)."""
    layer._tracker.untrack(sublayer)


def replace_tracked_sublayer(layer, old, new) -> None:
    """Puts `new` where `layer` tracks `old`, in the same position, so that
    the order of `layer.weights` (and of a saved file's variables) stays."""
    layer._tracker.replace_tracked_value("layers", old, new)


def replace_sublayer(container, old, new) -> None:
    """Points every reference `container` holds to `old` at `new`: the
    tracked sublayers, attributes, and the lists and dicts among them.

    Keras's own bookkeeping (``_layers``, ``_tracker``) and the PyTorch
    backend's mirrors are updated through the tracker, not rewritten.
    Sublayers a ``torch.nn.Module`` stores live in its ``_modules``.
    """
    replace_tracked_sublayer(container, old, new)
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
    modules = vars(container).get("_modules")
    if isinstance(modules, dict):
        for key, item in list(modules.items()):
            if item is old:
                modules[key] = new


# (attribute of keras.layers.MultiHeadAttention, the name lth_keras gives it)
ATTENTION_PROJECTIONS = (
    ("_query_dense", "query"),
    ("_key_dense", "key"),
    ("_value_dense", "value"),
    ("_output_dense", "attention_output"),
)


def attention_projections(layer) -> dict:
    """The four `EinsumDense` projections of a built
    `keras.layers.MultiHeadAttention`, ``{"query", "key", "value",
    "attention_output"}`` in that order."""
    return {short: getattr(layer, attr) for attr, short in ATTENTION_PROJECTIONS}


def set_attention_projection(layer, short, new) -> None:
    """Replaces the projection `short` (``"query"``, ``"key"``, ``"value"``
    or ``"attention_output"``) of a built `MultiHeadAttention` by `new`,
    in the position the old one was tracked in."""
    attr = dict((s, a) for a, s in ATTENTION_PROJECTIONS)[short]
    replace_tracked_sublayer(layer, getattr(layer, attr), new)
    setattr(layer, attr, new)


def causal_padding(layer) -> list:
    """The ``ops.pad`` widths that make a `Conv1D` with ``padding="causal"``
    see no future step: ``dilation * (kernel - 1)`` zeros before the
    sequence."""
    return layer._compute_causal_padding()


def input_channels(layer, input_shape) -> int:
    """The input channels of a depthwise convolution `layer` given its
    input's shape (the last axis, or axis 1 with ``channels_first``)."""
    return layer._get_input_channel(input_shape)


def learning_rate_source(optimizer):
    """What `optimizer` holds as its learning rate: a variable, or a
    `keras.optimizers.schedules.LearningRateSchedule` (the public
    ``optimizer.learning_rate`` is the schedule's current value)."""
    return getattr(optimizer, "_learning_rate", None)


def optimizer_built_for(optimizer) -> list:
    """The trainable variables `optimizer` was built for, in its slots'
    order (empty before it is built)."""
    return list(getattr(optimizer, "_trainable_variables", []))


def refresh_torch_params(layers) -> None:
    """The PyTorch backend mirrors variables in a ParameterDict per layer,
    filled at build time; a layer that gained variables afterwards needs it
    rebuilt. A no-op on the other backends."""
    for layer in layers:
        if hasattr(layer, "_track_variables") and hasattr(layer, "_torch_params"):
            layer._track_variables()


def invalidate_compiled_functions(model) -> None:
    """Makes `fit`, `evaluate` and `predict` trace again on their next step.

    A compiled step traced before masks were attached computes without
    them. `make_*_function(force=True)` is public and safe inside a running
    `fit` (the loop reads `model.train_function` at every step).
    """
    if not isinstance(model, keras.Model):
        return
    for kind in ("train", "test", "predict"):
        if getattr(model, f"{kind}_function", None) is not None:
            getattr(model, f"make_{kind}_function")(force=True)
