"""The Keras callbacks that prune inside `model.fit`.

- `imp`: `IterativeMagnitudePruning`, the lottery-ticket procedure (prune,
  reset, retrain, round after round).
- `gradual`: `GradualMagnitudePruning`, sparsity rising on a schedule
  (Zhu & Gupta 2017), with no reset.
- `sparse_training`: `StaticSparse`, `SET` and `RigL`, sparse training from
  scratch at ERK densities, the methods tickets are measured against.

The Keras plumbing they share with the experiment runner (`WeightSnapshot`,
`prune_model`, `reset_optimizer_state`, `default_output_layer`) is
`lth_keras.pruning.snapshots`'s, re-exported here.
"""

from lth_keras.callbacks.gradual import GradualMagnitudePruning
from lth_keras.callbacks.imp import IterativeMagnitudePruning
from lth_keras.callbacks.sparse_training import SET, RigL, StaticSparse
from lth_keras.pruning.snapshots import (
    WeightSnapshot,
    default_output_layer,
    prune_model,
    reset_optimizer_state,
)

__all__ = [
    "GradualMagnitudePruning",
    "IterativeMagnitudePruning",
    "RigL",
    "SET",
    "StaticSparse",
    "WeightSnapshot",
    "default_output_layer",
    "prune_model",
    "reset_optimizer_state",
]
