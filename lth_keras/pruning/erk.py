"""Per-layer densities for sparse training: Erdős–Rényi-Kernel (ERK) and uniform.

Pure numpy, no Keras. A sparse network trained from scratch (static sparse
training, SET, RigL) needs a density per layer before any weight has a
magnitude worth ranking. ERK (Evci et al. 2020, after Mocanu et al. 2018's
Erdős–Rényi) gives a layer a density proportional to

    (sum(shape) / prod(shape)) ** power_scale

so small layers (the first convolution, the output layer) stay denser than
large ones. A convolution's kernel counts its spatial dimensions too: that is
the "Kernel" in ERK. A layer whose share would exceed 1 is made dense and the
others are rescaled, until none exceeds 1. The kept total is `density` of all
the weights.

Example:

```python
from lth_keras.pruning import erk

shapes = {"conv1": (3, 3, 1, 64), "fc1": (12544, 256), "fc2": (256, 10)}
densities = erk.erk_densities(shapes, density=0.1)
# {'conv1': 1.0, 'fc1': 0.0991..., 'fc2': 1.0}: the small layers stay dense
counts = erk.kept_counts(shapes, densities)
```
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

__all__ = ["DISTRIBUTIONS", "erk_densities", "uniform_densities", "layer_densities", "kept_counts"]

DISTRIBUTIONS = ("erk", "uniform")


def _check_density(density) -> float:
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0.0 < density <= 1.0:
        raise ValueError(f"`density` must be a number in (0, 1], got {density!r}.")
    return float(density)


def _sizes(shapes: Mapping[str, Sequence[int]]) -> dict[str, int]:
    if not shapes:
        raise ValueError("`shapes` is empty: there is no layer to give a density.")
    sizes = {}
    for name, shape in shapes.items():
        dims = tuple(int(d) for d in shape)
        if not dims or any(d <= 0 for d in dims):
            raise ValueError(f"`shapes[{name!r}]` must be a non-empty shape of positive sizes, got {shape!r}.")
        sizes[name] = math.prod(dims)
    return sizes


def uniform_densities(shapes: Mapping[str, Sequence[int]], density: float) -> dict[str, float]:
    """The same `density` for every layer.

    Args:
        shapes: masked-weight name -> kernel shape.
        density: the fraction of weights kept, in (0, 1].

    Returns:
        name -> `density`.
    """
    density = _check_density(density)
    return {name: density for name in _sizes(shapes)}


def erk_densities(shapes: Mapping[str, Sequence[int]], density: float, power_scale: float = 1.0) -> dict[str, float]:
    """Erdős–Rényi-Kernel densities that keep `density` of all weights.

    Args:
        shapes: masked-weight name -> kernel shape (a Dense kernel is
            ``(in, out)``, a Conv2D kernel ``(h, w, in, out)``).
        density: the fraction of all weights kept, in (0, 1].
        power_scale: the exponent of ``sum(shape) / prod(shape)``; 0 gives
            uniform densities, 1 is ERK.

    Returns:
        name -> density in (0, 1]; ``sum(d * size) == density * sum(size)``
        up to float rounding.

    Example:

    ```python
    erk_densities({"a": (10, 10), "b": (100, 100)}, 0.5)
    # {'a': 1.0, 'b': 0.495}: "a" would exceed 1, so it is dense
    ```
    """
    density = _check_density(density)
    if isinstance(power_scale, bool) or not isinstance(power_scale, (int, float)) or power_scale < 0:
        raise ValueError(f"`power_scale` must be a number >= 0, got {power_scale!r}.")
    sizes = _sizes(shapes)
    raw = {name: (sum(int(d) for d in shapes[name]) / sizes[name]) ** power_scale for name in sizes}
    dense: set[str] = set()
    while True:
        # Solve eps * sum(raw * size) over the sparse layers for what the
        # dense layers leave of the budget.
        budget = density * sum(sizes.values()) - sum(sizes[n] for n in dense)
        weighted = sum(raw[n] * sizes[n] for n in sizes if n not in dense)
        eps = budget / weighted
        over = {n for n in sizes if n not in dense and eps * raw[n] > 1.0}
        if not over:
            break
        dense |= over
    return {n: 1.0 if n in dense else eps * raw[n] for n in sizes}


def layer_densities(shapes: Mapping[str, Sequence[int]], density: float, distribution: str = "erk",
                    power_scale: float = 1.0) -> dict[str, float]:
    """Densities by name of distribution: ``"erk"`` or ``"uniform"``."""
    if distribution == "erk":
        return erk_densities(shapes, density, power_scale)
    if distribution == "uniform":
        return uniform_densities(shapes, density)
    raise ValueError(f"`distribution` must be one of {DISTRIBUTIONS}, got {distribution!r}.")


def kept_counts(shapes: Mapping[str, Sequence[int]], densities: Mapping[str, float]) -> dict[str, int]:
    """Whole numbers of weights to keep per layer, at least one each.

    Rounded to nearest; the total differs from ``density * total`` by at most
    half a weight per layer.
    """
    sizes = _sizes(shapes)
    return {n: min(sizes[n], max(1, int(round(densities[n] * sizes[n])))) for n in sizes}
