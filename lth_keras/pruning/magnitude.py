"""Magnitude pruning math: pure numpy, no Keras.

Masks and weights are dicts keyed by masked-weight name (see
`lth_keras.layers.MaskedWeight.name`), with numpy arrays as values. The
callback (`lth_keras.callbacks`) and the experiment runner
(`lth_keras.experiment`) both call these functions, so a ticket found with
`model.fit` and one found by `python -m lth_keras.main` are pruned alike.

Counting rule (layerwise): a layer pruned at rate p with A weights alive
loses ``round(p * A)`` of them (halves round up), the ones with the smallest
|w|; ties go to the lower flat index. For LeNet-300-100 at 0.2/0.2/0.1 this
keeps 120,422 / 15,360 / 729 weights after 3 rounds: P_m = 51.3%.

Example:

```python
import numpy as np
from lth_keras import pruning

weights = {"fc": np.array([[0.3, -0.1], [0.05, 2.0]])}
masks = {"fc": np.ones((2, 2))}
pruning.prune_layerwise(weights, masks, {"fc": 0.5})["fc"]
# array([[1., 0.], [0., 1.]])
```
"""

from __future__ import annotations

import math
import numbers
from typing import Mapping

import numpy as np

__all__ = [
    "KINDS",
    "validate_rate",
    "validate_scoped",
    "num_to_prune",
    "remaining_after",
    "resolve_rates",
    "prune_layerwise",
    "remove_smallest",
    "prune_global",
    "random_masks",
    "percent_remaining",
    "prune",
]

# Rate keys by kind. "output" is the model's last dense layer, which the
# paper prunes at half the fully-connected rate.
KINDS = ("dense", "conv", "output")


def validate_rate(rate, name: str = "rate") -> float:
    """Returns `rate` as a float, or raises ValueError naming `name`."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise ValueError(f"{name} must be a number in [0, 1), got {rate!r}.")
    rate = float(rate)
    if not (0.0 <= rate < 1.0) or math.isnan(rate):
        raise ValueError(f"{name} must be in [0, 1), got {rate}.")
    return rate


def validate_scoped(scope: str, values, check=validate_rate, name: str = "rates") -> None:
    """Checks a pruning `scope` and its value(s), raising ValueError naming
    the argument: global takes one value; layerwise one, or a dict by kind
    or layer name, whose values are checked here (names against the model
    later). `check(value, name)` checks one value (`validate_rate`, or
    `lth_keras.sparsity.validate_sparsity`).

    Example:
        >>> validate_scoped("layerwise", {"dense": 0.2, "output": 0.1})
        >>> validate_scoped("global", {"dense": 0.2})
        Traceback (most recent call last):
        ...
        ValueError: rates must be a number in [0, 1), got {'dense': 0.2}.
    """
    if scope not in ("layerwise", "global"):
        raise ValueError(f"`scope` must be 'layerwise' or 'global', got {scope!r}.")
    if scope == "layerwise" and isinstance(values, dict):
        for key, value in values.items():
            check(value, f"{name}[{key!r}]")
    else:
        check(values, name)


def num_to_prune(alive: int, rate: float) -> int:
    """How many of `alive` weights one round at `rate` removes.

    ``round(rate * alive)`` with halves rounded up. The tiny epsilon absorbs
    float error such as 0.2 * 150528 = 30105.600000000002.
    """
    return int(math.floor(rate * alive + 0.5 + 1e-9))


def remaining_after(total: int, rate: float, rounds: int) -> int:
    """Weights left in a layer of `total` after `rounds` rounds at `rate`.

    This is the formula the paper's P_m values come from, applied round by
    round with integer counts.

    Example:

    ```python
    remaining_after(784 * 300, 0.2, 3)   # 120422
    ```
    """
    rate = validate_rate(rate)
    alive = int(total)
    for _ in range(rounds):
        alive -= num_to_prune(alive, rate)
    return alive


def resolve_rates(
    rates,
    kinds: Mapping[str, str],
    output: str | None = None,
) -> dict[str, float]:
    """Turns a user's rate specification into one rate per masked weight.

    Args:
        rates: one of
            - a float: every layer at that rate, the output layer at half;
            - a dict by kind, keys among ``"dense"``, ``"conv"``,
              ``"output"`` and any `pruning_kind` a layer in `kinds` has
              (e.g. ``"embedding"``): kinds not given are not pruned,
              except that the output layer defaults to half the
              ``"dense"`` rate;
            - a dict by name (masked-weight or layer name): layers not named
              are not pruned. Names and kinds may be mixed; a name wins.
        kinds: ``{name: kind}`` for every masked weight, in model order.
        output: name of the output layer, or None for none.

    Returns:
        ``{name: rate}`` for every name in `kinds`.

    Raises:
        ValueError: a rate outside [0, 1), or a key that is neither a kind
            nor a masked layer, named in the message.
    """
    if output is not None and output not in kinds:
        raise ValueError(f"output layer {output!r} is not a masked layer; known: {list(kinds)}.")
    if isinstance(rates, Mapping):
        layer_names = {n.split("/")[0] for n in kinds}
        # A layer's own `pruning_kind` (e.g. "embedding") is a kind too.
        known_kinds = tuple(KINDS) + tuple(sorted(set(kinds.values()) - set(KINDS)))
        for key, value in rates.items():
            if key not in known_kinds and key not in kinds and key not in layer_names:
                raise ValueError(
                    f"Unknown key {key!r} in rates: not a kind {known_kinds} nor a "
                    f"masked layer {list(kinds)}."
                )
            validate_rate(value, f"rates[{key!r}]")
        by_kind = {k: float(v) for k, v in rates.items() if k in known_kinds}
        if "output" not in by_kind and "dense" in by_kind:
            by_kind["output"] = by_kind["dense"] / 2
        result = {}
        for name, kind in kinds.items():
            layer = name.split("/")[0]
            if name in rates:
                result[name] = float(rates[name])
            elif layer in rates:
                result[name] = float(rates[layer])
            elif name == output:
                result[name] = by_kind.get("output", 0.0)
            else:
                result[name] = by_kind.get(kind, 0.0)
        return result
    rate = validate_rate(rates, "rates")
    return {name: (rate / 2 if name == output else rate) for name in kinds}


def _alive_indices(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.asarray(mask).reshape(-1) != 0)


def _check_same_keys(weights, masks):
    if set(weights) != set(masks):
        raise ValueError(
            f"weights and masks must have the same names; weights: "
            f"{sorted(weights)}, masks: {sorted(masks)}."
        )
    for name in masks:
        if np.shape(weights[name]) != np.shape(masks[name]):
            raise ValueError(
                f"'{name}': weight shape {np.shape(weights[name])} != mask shape "
                f"{np.shape(masks[name])}."
            )


def prune_layerwise(
    weights: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    rates: Mapping[str, float],
) -> dict[str, np.ndarray]:
    """One round of layerwise magnitude pruning.

    Each layer is ranked on its own: ``num_to_prune(alive, rate)`` of its
    alive weights with the smallest |w| are removed.

    Args:
        weights: current weights, by name.
        masks: current 0/1 masks, by name (same shapes).
        rates: rate per name; names missing from `rates` are not pruned.

    Returns:
        New masks (float32 arrays), by name. Inputs are not modified.
    """
    _check_same_keys(weights, masks)
    unknown = sorted(set(rates) - set(masks))
    if unknown:
        raise ValueError(f"rates names unknown layers {unknown}; known: {sorted(masks)}.")
    new_masks = {}
    for name, mask in masks.items():
        rate = validate_rate(rates.get(name, 0.0), f"rate for '{name}'")
        new = (np.asarray(mask) != 0).astype(np.float32).reshape(-1)
        alive = _alive_indices(mask)
        n = num_to_prune(alive.size, rate)
        if n:
            magnitudes = np.abs(np.asarray(weights[name], dtype=np.float64).reshape(-1)[alive])
            # A stable sort of ascending indices breaks ties by index.
            order = np.argsort(magnitudes, kind="stable")
            new[alive[order[:n]]] = 0.0
        new_masks[name] = new.reshape(np.shape(mask))
    return new_masks


def prune_global(
    weights: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    rate: float,
    include=None,
) -> dict[str, np.ndarray]:
    """One round of global magnitude pruning.

    The alive weights of all included layers are ranked together and
    ``num_to_prune(total_alive, rate)`` with the smallest |w| are removed
    (ties: earlier layer in `masks` order, then lower index). Layers not
    included keep their masks (the paper leaves VGG/ResNet's output layer and
    1x1 shortcuts unpruned).

    Args:
        weights: current weights, by name.
        masks: current masks, by name.
        rate: fraction of the included alive weights to remove.
        include: names to rank together; all names when None.

    Returns:
        New masks (float32), by name.
    """
    _check_same_keys(weights, masks)
    rate = validate_rate(rate)
    names = list(masks) if include is None else [n for n in masks if n in set(include)]
    if include is not None:
        unknown = sorted(set(include) - set(masks))
        if unknown:
            raise ValueError(f"include names unknown layers {unknown}; known: {sorted(masks)}.")
    new_masks = {n: (np.asarray(m) != 0).astype(np.float32) for n, m in masks.items()}
    alive_per_layer = [_alive_indices(masks[n]) for n in names]
    total_alive = sum(a.size for a in alive_per_layer)
    n = num_to_prune(total_alive, rate)
    if n == 0:
        return new_masks
    remove_smallest(new_masks, weights, dict(zip(names, alive_per_layer)), n)
    return new_masks


def remove_smallest(masks: dict, weights: Mapping[str, np.ndarray],
                    candidates: Mapping[str, np.ndarray], n: int) -> None:
    """Zeroes in `masks` (float arrays, changed in place) the `n` weights of
    smallest magnitude among `candidates`, ranked together across layers.

    The one selection global magnitude pruning and the gradual schedule's
    global target share. Ties go to the earlier layer in `candidates`'
    order, then to the lower flat index (a stable sort).

    Args:
        masks: the masks to change, by name.
        weights: weights by name.
        candidates: by name, the flat indices that may be removed (in
            ascending order), in the order that breaks ties.
        n: how many to remove (at most the number of candidates).

    Example:
        >>> m = {"a": np.ones(3, np.float32), "b": np.ones(2, np.float32)}
        >>> w = {"a": np.array([0.5, -0.1, 2.0]), "b": np.array([0.1, 3.0])}
        >>> remove_smallest(m, w, {"a": np.arange(3), "b": np.arange(2)}, 2)
        >>> m["a"].tolist(), m["b"].tolist()
        ([1.0, 0.0, 1.0], [0.0, 1.0])
    """
    names = list(candidates)
    magnitudes = np.concatenate(
        [np.abs(np.asarray(weights[name], dtype=np.float64).reshape(-1)[candidates[name]]) for name in names]
    )
    layer_of = np.concatenate([np.full(np.size(candidates[name]), i, dtype=np.int64) for i, name in enumerate(names)])
    index_of = np.concatenate([candidates[name] for name in names])
    removed = np.argsort(magnitudes, kind="stable")[:n]
    for i, name in enumerate(names):
        shape = np.shape(masks[name])
        flat = np.asarray(masks[name]).reshape(-1)
        flat[index_of[removed[layer_of[removed] == i]]] = 0.0
        masks[name] = flat.reshape(shape)


def random_masks(
    masks: Mapping[str, np.ndarray], seed: int
) -> dict[str, np.ndarray]:
    """Random masks with the same number of ones per layer as `masks`.

    The random-sparse control: same per-layer sparsity, random positions.

    Args:
        masks: reference masks, by name.
        seed: seeds a numpy Generator; the same seed gives the same masks.
    """
    rng = np.random.default_rng(seed)
    result = {}
    for name in masks:
        mask = np.asarray(masks[name])
        keep = int(np.count_nonzero(mask))
        new = np.zeros(mask.size, dtype=np.float32)
        new[rng.permutation(mask.size)[:keep]] = 1.0
        result[name] = new.reshape(mask.shape)
    return result


def percent_remaining(masks: Mapping[str, np.ndarray]) -> tuple[float, dict[str, float]]:
    """P_m in percent, overall and per layer: ``(overall, {name: pct})``."""
    per_layer, alive, total = {}, 0, 0
    for name, mask in masks.items():
        a, t = int(np.count_nonzero(mask)), int(np.size(mask))
        per_layer[name] = 100.0 * a / t if t else 0.0
        alive, total = alive + a, total + t
    if total == 0:
        raise ValueError("No masks given.")
    return 100.0 * alive / total, per_layer


def prune(
    weights: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    rates,
    *,
    kinds: Mapping[str, str],
    scope: str = "layerwise",
    output: str | None = None,
    include=None,
) -> dict[str, np.ndarray]:
    """One round of magnitude pruning, layerwise or global: the entry point
    the callback and the experiment runner share.

    Args:
        weights: current weights, by name.
        masks: current masks, by name.
        rates: layerwise: anything `resolve_rates` takes; global: a float.
        kinds: ``{name: kind}`` for every name, in model order.
        scope: ``"layerwise"`` or ``"global"``.
        output: the output layer's name (layerwise default rate: half).
        include: names that may be pruned; the others keep their masks.

    Returns:
        New masks (float32), by name.
    """
    if scope == "global":
        rate = validate_rate(rates, "rates")
        chosen = list(masks) if include is None else [n for n in masks if n in set(include)]
        return prune_global(weights, masks, rate, include=chosen)
    if scope != "layerwise":
        raise ValueError(f"scope must be 'layerwise' or 'global', got {scope!r}.")
    per_layer = resolve_rates(rates, kinds, output=output)
    if include is not None:
        per_layer = {n: r for n, r in per_layer.items() if n in set(include)}
    return prune_layerwise(weights, masks, per_layer)
