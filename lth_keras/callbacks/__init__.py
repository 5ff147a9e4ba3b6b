"""The Keras callbacks: `IterativeMagnitudePruning` and `GradualMagnitudePruning`."""

from lth_keras.callbacks.imp import (
    GradualMagnitudePruning,
    IterativeMagnitudePruning,
    WeightSnapshot,
    default_output_layer,
    prune_model,
    reset_optimizer_state,
)

__all__ = [
    "GradualMagnitudePruning",
    "IterativeMagnitudePruning",
    "WeightSnapshot",
    "default_output_layer",
    "prune_model",
    "reset_optimizer_state",
]
