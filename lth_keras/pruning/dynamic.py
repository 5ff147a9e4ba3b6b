"""Sparse training on a model's masked weights: the one core of StaticSparse, SET and RigL.

The Keras callbacks (`lth_keras.callbacks.StaticSparse`, `SET`, `RigL`) and
the experiment's arms (``static_erk``, ``set``, ``rigl`` in
`lth_keras.arms.sparse_training`) both draw their masks and move them here;
the numpy decisions are `lth_keras.pruning.erk` (how many per layer) and
`lth_keras.pruning.drop_grow` (which ones).

Example:

```python
from lth_keras import layers
from lth_keras.pruning import dynamic

weights = layers.masked_weights(model)
dynamic.assign_masks(weights, dynamic.draw_masks(weights, density=0.1, seed=0))
moved = dynamic.update(weights, optimizer, step=100, drop_fraction=0.3, end_step=3000,
                       grow_scores=None, rng=np.random.default_rng(0))    # SET
```
"""

from __future__ import annotations

import keras
import numpy as np

from lth_keras.pruning import drop_grow, erk, snapshots

__all__ = ["draw_masks", "assign_mask", "assign_masks", "update"]


def draw_masks(weights, density: float, *, distribution: str = "erk", power_scale: float = 1.0,
               seed: int = 0) -> dict[str, np.ndarray]:
    """Random masks for `weights` (masked weights, `lth_keras.layers.masked_weights`)
    that keep `density` of them in all, per layer at the distribution's densities.

    Returns:
        ``{name: 0/1 array}`` in each mask's dtype, one layer after another
        from one generator seeded with `seed`.
    """
    shapes = {mw.name: tuple(mw.weight.shape) for mw in weights}
    counts = erk.kept_counts(shapes, erk.layer_densities(shapes, density, distribution, power_scale))
    rng = np.random.default_rng(seed)
    masks = {}
    for mw in weights:
        size = int(np.prod(shapes[mw.name]))
        mask = np.zeros(size, np.float32)
        mask[rng.choice(size, counts[mw.name], replace=False)] = 1
        masks[mw.name] = mask.reshape(shapes[mw.name])
    return masks


def assign_mask(mw, mask, *, zero=None) -> None:
    """Sets one masked weight's mask and zeroes its pruned weights, and
    those where `zero` (a boolean array) is true."""
    mask = np.asarray(mask)
    mw.mask.assign(mask.astype(keras.backend.standardize_dtype(mw.mask.dtype)))
    weight = keras.ops.convert_to_numpy(mw.weight) * mask
    if zero is not None:
        weight = np.where(zero, 0, weight)
    mw.weight.assign(weight.astype(keras.backend.standardize_dtype(mw.weight.dtype)))


def assign_masks(weights, masks) -> None:
    """`assign_mask` for every masked weight named in `masks`."""
    for mw in weights:
        if mw.name in masks:
            assign_mask(mw, masks[mw.name])


def update(weights, optimizer, step: int, *, drop_fraction: float, end_step: int, grow_scores=None,
           rng: np.random.Generator | None = None) -> tuple[float, int]:
    """One drop-and-grow update of every layer in `weights` after optimizer step `step`.

    Each layer drops ``f(step)`` of its active weights (cosine decay from
    `drop_fraction` to 0 at `end_step`), the smallest in magnitude, and
    grows as many: where ``|grow_scores|`` is largest and above 0 (RigL,
    one array per weight), or at random from `rng` (SET, `grow_scores`
    None). Grown weights start at 0, and the optimizer state of every entry
    that moved is zeroed, so that a dropped weight stays 0 and a grown one
    starts afresh.

    Returns:
        ``(fraction, moved)``: ``f(step)`` and the weights moved in all.
    """
    fraction = drop_grow.drop_fraction_at(step, drop_fraction, end_step)
    moved = 0
    for i, mw in enumerate(weights):
        weight = keras.ops.convert_to_numpy(mw.weight)
        mask = keras.ops.convert_to_numpy(mw.mask)
        n = drop_grow.num_to_move(int(mask.sum()), fraction)
        by_gradient = grow_scores is not None
        scores = np.abs(np.asarray(grow_scores[i])) if by_gradient else drop_grow.random_scores(mask.shape, rng)
        new, dropped, grown = drop_grow.drop_and_grow(weight, mask, n, grow_scores=scores,
                                                      require_positive=by_gradient)
        if dropped.any():
            # A pruned weight's stored value may be stale (an optimizer with state left); grown ones start at 0.
            assign_mask(mw, new, zero=grown)
            snapshots.zero_optimizer_slots(optimizer, mw.weight, dropped | grown)
            moved += int(dropped.sum())
    return fraction, moved
