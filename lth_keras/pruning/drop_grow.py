"""Dynamic sparse training's mask update: drop the weakest weights, grow as many elsewhere.

Pure numpy, no Keras: the math shared by SET (Mocanu et al. 2018) and RigL
(Evci et al. 2020). At an update step a layer drops the `n` active weights of
smallest magnitude and grows `n` inactive ones: at random (SET), or where the
dense gradient is largest (RigL). The number of active weights per layer never
changes. `n` is a fraction `f(t)` of the layer's active weights that decays
by cosine from `drop_fraction` to 0 at `end_step`, as in RigL.

A weight dropped at an update is not grown back at the same update, so every
update moves exactly the entries it reports. RigL grows only where the
gradient is nonzero: when fewer inactive positions have a gradient than the
layer would move, it drops only as many as it can grow.

Example:

```python
import numpy as np
from lth_keras.pruning import drop_grow

w = np.array([[0.9, -0.1], [0.0, 0.5]])
mask = np.array([[1.0, 1.0], [0.0, 0.0]])
grad = np.array([[0.0, 0.0], [0.3, 2.0]])
new_mask, dropped, grown = drop_grow.drop_and_grow(w, mask, 1, grow_scores=np.abs(grad))
# drops -0.1 (the smallest active), grows (1, 1) (the largest |gradient|)
```
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["drop_fraction_at", "is_update_step", "num_to_move", "drop_and_grow", "random_scores"]


def drop_fraction_at(step: int, drop_fraction: float, end_step: int) -> float:
    """RigL's cosine decay: `drop_fraction` at step 0, 0 from `end_step` on."""
    if end_step <= 0 or step >= end_step:
        return 0.0
    return 0.5 * drop_fraction * (1.0 + math.cos(math.pi * max(step, 0) / end_step))


def is_update_step(step: int, update_frequency: int, end_step: int) -> bool:
    """Whether the masks change after optimizer step `step` (1-based count of steps taken)."""
    return 0 < step < end_step and step % update_frequency == 0


def num_to_move(active: int, fraction: float) -> int:
    """How many of a layer's `active` weights an update drops (and grows): rounded down."""
    return int(math.floor(fraction * active))


def random_scores(shape, rng: np.random.Generator) -> np.ndarray:
    """SET's grow scores: uniform noise, so the largest are a uniform random choice."""
    return rng.random(shape)


def _largest(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Flat indices of the `k` largest scores among `candidates`; ties go to the lower index."""
    idx = np.flatnonzero(candidates)
    if k <= 0 or idx.size == 0:
        return np.empty(0, dtype=np.int64)
    order = np.lexsort((idx, -scores.ravel()[idx]))  # by score descending, then by index
    return idx[order[:k]]


def drop_and_grow(weight: np.ndarray, mask: np.ndarray, n: int, *, grow_scores: np.ndarray,
                  require_positive: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One layer's mask update: drop the `n` smallest active weights, grow `n`.

    Args:
        weight: the layer's weights (pruned entries are 0).
        mask: its 0/1 mask, the same shape.
        n: how many to move; capped by the active weights, by the inactive
            positions and, with `require_positive`, by the positions whose
            grow score is above 0.
        grow_scores: larger is grown first (|gradient| for RigL, noise for SET).
        require_positive: grow only where the score is above 0 (RigL: a
            position whose gradient is 0 has nothing to say for it).

    Returns:
        ``(new_mask, dropped, grown)``: the new 0/1 mask in `mask`'s dtype and
        two boolean arrays of the entries that moved; ``dropped.sum() ==
        grown.sum()``.
    """
    weight, mask, grow_scores = np.asarray(weight), np.asarray(mask), np.asarray(grow_scores)
    if weight.shape != mask.shape or grow_scores.shape != mask.shape:
        raise ValueError(f"`weight` {weight.shape}, `mask` {mask.shape} and `grow_scores` {grow_scores.shape} "
                         "must have the same shape.")
    active = mask.ravel() != 0
    candidates = ~active
    if require_positive:
        candidates &= grow_scores.ravel() > 0
    n = max(0, min(int(n), int(active.sum()), int(candidates.sum())))
    # The smallest magnitudes are the largest negated ones.
    drop_idx = _largest(-np.abs(weight.ravel()).astype(np.float64), active, n)
    grow_idx = _largest(grow_scores.ravel().astype(np.float64), candidates, n)
    new = mask.ravel().copy()
    new[drop_idx] = 0
    new[grow_idx] = 1
    dropped = np.zeros(mask.size, bool)
    dropped[drop_idx] = True
    grown = np.zeros(mask.size, bool)
    grown[grow_idx] = True
    return new.reshape(mask.shape), dropped.reshape(mask.shape), grown.reshape(mask.shape)
