"""Pruning: which weights a mask keeps, and how a model's masks change.

Pure numpy, no Keras (imported by this package):
- `magnitude`: magnitude pruning, layerwise or global, rates per kind.
- `sparsity`: gradual schedules (Zhu & Gupta) and N:M patterns.
- `erk`: ERK and uniform layer densities for sparse training.

On Keras models (import them by name):
- `snapshots`: weight snapshots (θ0, rewind points), `prune_model`, optimizer reset.
- `gradual`: `GradualPruner`, the mask/schedule core of gradual pruning.
- `patterns`: N:M patterns on a model: axes, checks, the one N:M selection of a round.
- `pai`: pruning at initialization (SNIP, GraSP, SynFlow, magnitude at θ0).
"""

from lth_keras.pruning.magnitude import (
    KINDS,
    num_to_prune,
    percent_remaining,
    prune,
    prune_global,
    prune_layerwise,
    random_masks,
    remaining_after,
    remove_smallest,
    resolve_rates,
    validate_rate,
    validate_scoped,
)

__all__ = [
    "KINDS",
    "num_to_prune",
    "percent_remaining",
    "prune",
    "prune_global",
    "prune_layerwise",
    "random_masks",
    "remaining_after",
    "remove_smallest",
    "resolve_rates",
    "validate_rate",
    "validate_scoped",
]
