"""N:M structured sparsity on Keras models: pattern axes, checks, and the
one N:M selection of a pruning round.

N:M patterns group every M consecutive weights along a kernel's input
dimension (`pattern_axis`): Dense axis 0; Conv1D/2D/3D, DepthwiseConv2D and
both SeparableConv2D kernels the input-channel axis (-2); Conv*Transpose
its input-channel axis (-1); EinsumDense (and MultiHeadAttention's
projections) the kernel's last contracted axis (for the output projection
``(heads, key_dim, d)``: key_dim); Embedding the embedding axis (1), along
each token's vector. A layer whose axis is not a multiple of M is refused
with a message naming it (exclude it). A user layer may set a class
attribute ``pattern_axis`` (an int, or ``{weight attribute: int}``).

`pattern_masks` redoes a round of unstructured pruning under a pattern, on
arrays: for a model's variables (`constrain_to_pattern`, what
`lth_keras.callbacks.prune_model` does) and for saved weights (the
experiment's `TrialState.prune`). The math (counts, groups) is
`lth_keras.pruning.sparsity`; `GradualPruner` (`lth_keras.pruning.gradual`)
prunes gradually under a pattern.

Example:

```python
lth_keras.callbacks.prune_model(model, 0.2, pattern="2:4")
check_pattern(model, "2:4")        # {} once every mask is 2:4
```
"""

from __future__ import annotations

import keras
import numpy as np

from lth_keras import layers
from lth_keras.pruning import magnitude as pruning
from lth_keras.pruning import sparsity

__all__ = ["pattern_axis", "check_pattern", "pattern_masks", "constrain_to_pattern", "check_rounds_fit_pattern"]


# --------------------------------------------------------------------------
# Pattern axes


def _einsum_axis(equation, rank):
    inputs, output = equation.split("->")
    lhs, kernel = inputs.split(",")
    kernel = kernel.strip()
    contracted = [i for i, c in enumerate(kernel) if c in lhs and c not in output]
    if not contracted or "." in kernel:
        return 0
    return contracted[-1]


def pattern_axis(mw: layers.MaskedWeight) -> int:
    """The axis of `mw.weight` along which N:M groups run (see module doc)."""
    layer, rank = mw.layer, len(mw.weight.shape)
    override = getattr(layer, "pattern_axis", None)
    if isinstance(override, dict):
        attr = next((a for a in override if getattr(layer, a, None) is mw.weight), None)
        override = override.get(attr)
    if isinstance(override, int):
        return override % rank
    if isinstance(layer, keras.layers.EinsumDense):
        return _einsum_axis(layer.equation, rank)
    if isinstance(layer, keras.layers.Embedding):
        return 1
    transpose = tuple(getattr(keras.layers, n) for n in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
                      if hasattr(keras.layers, n))
    if isinstance(layer, transpose):
        return rank - 1
    if isinstance(layer, keras.layers.Dense) or rank <= 2:
        return 0
    return rank - 2


def check_pattern(model, pattern, include=None, exclude=None) -> dict[str, int]:
    """``{name: groups with more than N survivors}`` for every chosen masked
    weight whose mask breaks `pattern` (empty: every mask is N:M)."""
    pattern = sparsity.parse_pattern(pattern)
    bad = {}
    for mw in layers.masked_weights(model, include=include, exclude=exclude):
        count = sparsity.pattern_violations(keras.ops.convert_to_numpy(mw.mask), pattern, pattern_axis(mw))
        if count:
            bad[mw.name] = count
    return bad


def pattern_masks(weights, masks, new_masks, pattern, axes, *, scope="layerwise", include=None):
    """Redoes one round of unstructured pruning under an N:M `pattern`, on
    arrays: each layer in `include` (or, global, all of them together) loses
    as many weights as it lost from `masks` to `new_masks`, chosen by
    magnitude among those the pattern lets go. Layers not in `include` keep
    their `new_masks`. Ties go as in `lth_keras.pruning.magnitude`.

    Args:
        weights, masks: ``{name: array}``, the values ranked and the masks
            before the round.
        new_masks: the round's unstructured masks (same names).
        pattern: ``"N:M"`` or ``(N, M)``.
        axes: ``{name: axis}``, each layer's grouping axis (`pattern_axis`).
        scope: ``"layerwise"`` or ``"global"``.
        include: the names the pattern applies to (default: all of `masks`).

    Returns:
        ``{name: float32 mask}`` for every name of `new_masks`.

    Raises:
        ValueError: the round would prune past the pattern's cap ``1 - N/M``.

    Example:
        >>> w = {"fc": np.array([[4.0], [3.0], [2.0], [1.0]])}
        >>> ones = {"fc": np.ones((4, 1))}
        >>> pattern_masks(w, ones, {"fc": np.array([[1.0], [1.0], [0.0], [0.0]])}, "2:4", {"fc": 0})["fc"].ravel()
        array([1., 1., 0., 0.], dtype=float32)
    """
    pattern = sparsity.parse_pattern(pattern)
    names = list(masks) if include is None else [n for n in include if n in masks]
    counts = {n: int(np.count_nonzero(masks[n])) - int(np.count_nonzero(new_masks[n])) for n in names}
    counts = {n: c for n, c in counts.items() if c > 0}
    try:
        structured = sparsity.prune_to_counts({n: weights[n] for n in names}, {n: masks[n] for n in names}, counts,
                                              pattern=pattern, axes=axes,
                                              together=names if scope == "global" else None)
    except ValueError as e:
        raise ValueError(f"pattern {pattern[0]}:{pattern[1]}: {e}") from None
    return {**{n: np.asarray(m, np.float32) for n, m in new_masks.items()}, **structured}


def constrain_to_pattern(masked_weights, new_masks, pattern, *, scope="layerwise", include=None):
    """`pattern_masks` for a model: redoes one round of unstructured pruning
    (`new_masks`, from the weights' current masks, read from their
    variables) under an N:M `pattern`; `include` (default: all of
    `masked_weights`) are the layers the pattern applies to.

    Raises:
        ValueError: the round would prune past the pattern's cap ``1 - N/M``.
    """
    by_name = {mw.name: mw for mw in masked_weights}
    current = {n: keras.ops.convert_to_numpy(mw.mask) for n, mw in by_name.items()}
    values = {n: keras.ops.convert_to_numpy(mw.weight) for n, mw in by_name.items()}
    return pattern_masks(values, current, new_masks, pattern, {n: pattern_axis(mw) for n, mw in by_name.items()},
                         scope=scope, include=include)


def check_rounds_fit_pattern(model, rates, rounds, pattern, *, scope="layerwise", include=None, exclude=None,
                             output=None) -> None:
    """Refuses, before training, IMP rounds that would prune past an N:M
    pattern's cap ``1 - N/M`` (``rounds`` counts the dense round 0), or a
    layer whose input dimension is not a multiple of M."""
    pattern = sparsity.parse_pattern(pattern)
    n, m = pattern
    cap = sparsity.pattern_cap(pattern)
    every = layers.masked_weights(model)
    chosen = layers.masked_weights(model, include=include, exclude=exclude)
    if scope == "global":
        total = sum(int(np.prod(mw.mask.shape)) for mw in chosen)
        budget = {"all chosen layers": (total, float(rates))}
    else:
        resolved = pruning.resolve_rates(rates, {mw.name: mw.kind for mw in every}, output=output)
        budget = {mw.name: (int(np.prod(mw.mask.shape)), resolved[mw.name]) for mw in chosen}
    for mw in chosen:
        if scope == "global" or budget[mw.name][1] > 0:
            sparsity.check_pattern_axis(tuple(mw.weight.shape), pattern_axis(mw), pattern, mw.name)
    for name, (total, rate) in budget.items():
        reached = 1.0 - pruning.remaining_after(total, rate, rounds - 1) / total
        if reached > cap + 1e-12:
            raise ValueError(
                f"pattern {n}:{m}: {rounds} rounds at rate {rate:g} prune {name!r} to sparsity {reached:.4g}, "
                f"above the pattern's cap {cap:g} (1 - N/M). Use fewer rounds or a lower rate."
            )
