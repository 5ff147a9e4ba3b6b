"""Gradual-pruning schedules and N:M patterns: pure numpy, no Keras.

The schedule is Zhu & Gupta's (2017) polynomial one, as TFMOT's
``PolynomialDecay`` spells it::

    p = clip((step - begin_step) / (end_step - begin_step), 0, 1)
    sparsity(step) = final + (initial - final) * (1 - p) ** power

Masks are updated after ``step`` optimizer steps whenever ``step`` is in
``[begin_step, end_step]`` and ``(step - begin_step) % frequency == 0``
(``end_step=-1``: for ever). At an update a layer of ``total`` weights at
target sparsity ``s`` keeps ``total - round(s * total)`` weights, the
largest ``|w|`` among those still alive (pruned weights never come back).

An N:M pattern (``"2:4"``) groups every M consecutive weights along one axis
of a kernel (its input dimension, chosen per layer by
`lth_keras.gradual.pattern_axis`). Pruning under a pattern never leaves a
group with fewer than N survivors, so that at sparsity ``1 - N/M`` every
group holds exactly N: a valid N:M mask. Sparsity is therefore capped at
``1 - N/M``; a target beyond it is refused. Below the cap the mask is on its
way to N:M (no group ever has fewer than N); at the cap it is N:M.

Example:

```python
import numpy as np
from lth_keras.pruning import sparsity

sparsity.polynomial_sparsity(50, 0.0, 0.9, begin_step=0, end_step=100)  # 0.7875
w = np.array([[4.0, 3.0], [1.0, 2.0], [0.5, 9.0], [8.0, 0.1]])   # (in=4, out=2)
m = sparsity.prune_to_counts({"fc": w}, {"fc": np.ones_like(w)}, {"fc": 4},
                             pattern=(2, 4), axes={"fc": 0})["fc"]
sparsity.pattern_violations(m, (2, 4), axis=0)                   # 0
```
"""

from __future__ import annotations

import numbers
from typing import Mapping

import numpy as np

from lth_keras.pruning import magnitude as pruning

__all__ = [
    "validate_sparsity",
    "validate_schedule",
    "polynomial_sparsity",
    "is_update_step",
    "last_update_step",
    "schedule_steps",
    "kept_count",
    "parse_pattern",
    "pattern_cap",
    "check_pattern_axis",
    "pattern_violations",
    "prune_to_counts",
    "counts_for_sparsity",
]


# --------------------------------------------------------------------------
# The schedule


def validate_sparsity(value, name: str) -> float:
    """`value` as a float in [0, 1), or ValueError naming `name`."""
    return pruning.validate_rate(value, name)


def validate_schedule(begin_step, end_step, power, frequency) -> None:
    """ValueError naming the argument when a PolynomialDecay argument is bad."""
    for name, value in (("begin_step", begin_step), ("end_step", end_step), ("frequency", frequency)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"`{name}` must be an integer, got {value!r}.")
    if begin_step < 0:
        raise ValueError(f"`begin_step` must be >= 0, got {begin_step}.")
    if end_step != -1 and end_step <= begin_step:
        raise ValueError(f"`end_step` must be > begin_step ({begin_step}) or -1 (prune for ever), got {end_step}.")
    if frequency < 1:
        raise ValueError(f"`frequency` must be a positive integer, got {frequency}.")
    if isinstance(power, bool) or not isinstance(power, numbers.Real) or not power > 0:
        raise ValueError(f"`power` must be a positive number, got {power!r}.")


def polynomial_sparsity(step, initial_sparsity, final_sparsity, begin_step, end_step, power=3) -> float:
    """TFMOT's PolynomialDecay sparsity at `step` (see the module doc).

    With ``end_step=-1`` the ramp never ends: the sparsity stays at
    `initial_sparsity` (TFMOT divides by a negative length there; we do not
    extrapolate).
    """
    if end_step == -1:
        return float(initial_sparsity)
    p = min(1.0, max(0.0, (step - begin_step) / float(end_step - begin_step)))
    return float(final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - p) ** power)


def is_update_step(step, begin_step, end_step, frequency) -> bool:
    """Whether masks are updated after `step` optimizer steps."""
    in_range = step >= begin_step and (end_step == -1 or step <= end_step)
    return bool(in_range and (step - begin_step) % frequency == 0)


def last_update_step(step, begin_step, end_step, frequency):
    """The latest update step ``<= step``, or None before `begin_step`.

    A callback that sees the step count only every ``steps_per_execution``
    steps applies the schedule of this step when it passed it.
    """
    if step < begin_step:
        return None
    last = step if end_step == -1 else min(step, end_step)
    return begin_step + ((last - begin_step) // frequency) * frequency


def schedule_steps(iterations: int, begin: float, end: float, frequency: int) -> dict:
    """begin_step, end_step and frequency for a run of `iterations` steps,
    from fractions of training: sparsity starts rising at ``begin`` and
    reaches its target at ``end``; end_step is a multiple of the frequency
    past begin_step so the last update reaches the target exactly.

    Shared by the in-process ``gradual`` arm and the TFMOT baseline
    (``tfmot_gradual``), so both prune on the same schedule.

    Example:
        >>> schedule_steps(3000, 0.0, 2 / 3, 100)
        {'begin_step': 0, 'end_step': 2000, 'frequency': 100}
    """
    if not 0.0 <= begin < end <= 1.0:
        raise ValueError(f"need 0 <= begin < end <= 1, got {begin}, {end}.")
    if frequency < 1:
        raise ValueError(f"frequency must be positive, got {frequency}.")
    begin_step = int(iterations * begin)
    end = max(begin_step + 1, int(round(iterations * end)))
    frequency = max(1, min(frequency, end - begin_step))
    end_step = begin_step + ((end - begin_step) // frequency) * frequency
    return {"begin_step": begin_step, "end_step": end_step, "frequency": frequency}


def kept_count(total: int, sparsity: float) -> int:
    """Weights a layer of `total` keeps at `sparsity`: ``total - round(s * total)``."""
    return int(total) - pruning.num_to_prune(int(total), float(sparsity))


# --------------------------------------------------------------------------
# N:M patterns


def parse_pattern(pattern, name: str = "pattern"):
    """``"2:4"`` (or ``(2, 4)``) as ``(2, 4)``; None stays None.

    Raises:
        ValueError: naming `name`, unless ``0 < N < M``.
    """
    if pattern is None:
        return None
    try:
        if isinstance(pattern, str):
            n, m = (int(p) for p in pattern.split(":"))
        else:
            n, m = (int(p) for p in pattern)
    except (ValueError, TypeError):
        raise ValueError(f"`{name}` must look like '2:4' (N:M), got {pattern!r}.") from None
    if not 0 < n < m:
        raise ValueError(f"`{name}` N:M needs 0 < N < M, got {pattern!r}.")
    return n, m


def pattern_cap(pattern) -> float:
    """The highest sparsity an N:M pattern allows: ``1 - N/M``."""
    n, m = parse_pattern(pattern)
    return 1.0 - n / m


def check_pattern_axis(shape, axis: int, pattern, name: str = "weight") -> None:
    """ValueError unless the axis length is a multiple of M."""
    n, m = parse_pattern(pattern)
    length = shape[axis]
    if length % m:
        raise ValueError(
            f"'{name}' has {length} entries along its input axis ({axis} of shape {tuple(shape)}), "
            f"not a multiple of M={m} of the pattern {n}:{m}; leave it out of the pattern with "
            f"exclude=[{name.split('/')[0]!r}]."
        )


def _groups(array, axis, m):
    """`array` as rows of M consecutive entries along `axis`, and the inverse."""
    moved = np.moveaxis(np.asarray(array), axis, -1)
    shape = moved.shape
    rows = moved.reshape(-1, m)

    def back(r):
        return np.moveaxis(np.asarray(r).reshape(shape), -1, axis)

    return rows, back


def pattern_violations(mask, pattern, axis: int) -> int:
    """How many groups of M along `axis` keep more than N weights (0: valid)."""
    n, m = parse_pattern(pattern)
    rows, _ = _groups(np.asarray(mask) != 0, axis, m)
    return int(np.count_nonzero(rows.sum(axis=1) > n))


def _prunable_flat(weight, mask, pattern, axis):
    """Flat bool: alive entries that pruning may remove. Under a pattern, a
    group's ``alive - N`` smallest |w| (the only ones a greedy by magnitude
    that never leaves a group below N can take)."""
    alive = np.asarray(mask).reshape(-1) != 0
    if pattern is None:
        return alive
    n, m = pattern
    rows_alive, back = _groups(np.asarray(mask) != 0, axis, m)
    rows_mag, _ = _groups(np.abs(np.asarray(weight, np.float64)), axis, m)
    ranked = np.where(rows_alive, rows_mag, np.inf)
    rank = np.argsort(np.argsort(ranked, axis=1, kind="stable"), axis=1, kind="stable")
    capacity = rows_alive.sum(axis=1, keepdims=True) - n
    return back(rows_alive & (rank < capacity)).reshape(-1)


def prune_to_counts(
    weights: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    counts: Mapping[str, int],
    *,
    pattern=None,
    axes: Mapping[str, int] | None = None,
    together=None,
) -> dict[str, np.ndarray]:
    """Removes ``counts[name]`` alive weights with the smallest |w| per layer.

    Args:
        weights, masks: by name, same shapes.
        counts: how many alive weights each named layer loses (names absent
            or 0: unchanged).
        pattern: ``(N, M)`` or ``"N:M"``: no group of M along
            ``axes[name]`` is left with fewer than N survivors.
        axes: the grouping axis of each layer (required with a pattern).
        together: a list of names ranked together (global pruning): they
            lose ``sum(counts[name] for name in together)`` in all.

    Returns:
        New float32 masks, by name (inputs unchanged).

    Raises:
        ValueError: a count larger than what the layer (or the pattern) lets
            go, naming the layer and the cap.
    """
    pattern = parse_pattern(pattern)
    new = {k: (np.asarray(v) != 0).astype(np.float32) for k, v in masks.items()}
    groups = [list(together)] if together else []
    grouped = {n for g in groups for n in g}
    groups += [[name] for name in counts if name not in grouped]
    for names in groups:
        n_remove = sum(int(counts.get(name, 0)) for name in names)
        if n_remove <= 0:
            continue
        candidates = {}
        for name in names:
            if pattern is not None:
                check_pattern_axis(np.shape(masks[name]), axes[name], pattern, name)
            candidates[name] = np.flatnonzero(_prunable_flat(weights[name], masks[name], pattern,
                                                             None if pattern is None else axes[name]))
        available = sum(c.size for c in candidates.values())
        if n_remove > available:
            what = f"the {pattern[0]}:{pattern[1]} pattern (sparsity cap {1 - pattern[0] / pattern[1]:.4g})" \
                if pattern is not None else "the weights still alive"
            raise ValueError(
                f"Cannot prune {n_remove} more weights of {names if len(names) > 1 else names[0]!r}: "
                f"{what} lets only {available} go. Lower the sparsity (or rate) or the number of rounds."
            )
        pruning.remove_smallest(new, weights, candidates, n_remove)
    return new


def counts_for_sparsity(masks: Mapping[str, np.ndarray], targets: Mapping[str, float],
                        together=None) -> dict[str, int]:
    """How many alive weights each layer must lose to reach its target
    sparsity (never negative: pruned weights do not come back).

    With `together` (global), the names in it share one target, given under
    any of their names, and the whole count is reported under the first.
    """
    counts = {}
    if together:
        names = list(together)
        total = sum(int(np.size(masks[n])) for n in names)
        alive = sum(int(np.count_nonzero(masks[n])) for n in names)
        counts[names[0]] = max(0, alive - kept_count(total, targets[names[0]]))
        return counts
    for name, s in targets.items():
        alive = int(np.count_nonzero(masks[name]))
        counts[name] = max(0, alive - kept_count(int(np.size(masks[name])), s))
    return counts
