"""The private Keras attributes lth_keras relies on, in one place.

Keras 3 has no public API for a few things pruning in place needs: the
sublayers a layer tracks, adding state to a layer that is already built,
and refreshing the PyTorch backend's parameter registry. Each is wrapped
here, so that a Keras release that renames one is fixed in this file.
"""

from __future__ import annotations

import contextlib

import keras

__all__ = ["is_graph_model", "sublayers", "all_sublayers", "own_variables", "unlocked", "untrack", "variable_scope", "refresh_torch_params",
           "invalidate_compiled_functions"]


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
    """The variables `layer` created itself (its sublayers' excluded)."""
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


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
