"""Keras plumbing shared by the callback and the experiment runner.

Snapshots of a model's weights (reset points: θ0, or the weights at the
rewind iteration), resetting an optimizer between rounds, and pruning a
model's masks in place by magnitude. Written in `keras.ops`/numpy, so it
runs on every Keras backend. `lth_keras.callbacks` and `lth_keras.training`
build on this module; it imports neither of them.

Example:

```python
from lth_keras import snapshots

theta0 = snapshots.WeightSnapshot.take(model)
model.fit(x, y, epochs=2)
snapshots.prune_model(model, rates=0.2)     # masks: 80% of each layer
theta0.restore(model)                      # survivors back to θ0
snapshots.reset_optimizer_state(model.optimizer)
```
"""

from __future__ import annotations

import keras
import numpy as np

from lth_keras import layers
from lth_keras import pruning

__all__ = ["WeightSnapshot", "prune_model", "reset_optimizer_state", "default_output_layer"]


class WeightSnapshot:
    """A copy of every model variable except the masks: a reset point.

    Batch-norm moving statistics (and dropout seed state) are part of the
    snapshot, so a reset returns them to their values at the reset point
    too (θ0, or iteration k when rewinding), exactly like the weights.

    Values are kept in the order of `model.variables` (masks skipped), not
    by variable path: Keras paths depend on how many models a process built
    before, so a snapshot written by one process must be matched by position
    in another.

    Args:
        values: one array per non-mask variable, in model order.
        paths: the variables' paths, for messages and inspection.

    Example:

    ```python
    theta0 = WeightSnapshot.take(model)
    ...  # train, prune
    theta0.restore(model)   # surviving weights = θ0, pruned weights = 0
    ```
    """

    def __init__(self, values, paths=None):
        self.values = [np.asarray(v) for v in values]
        self.paths = list(paths) if paths is not None else [str(i) for i in range(len(values))]

    @staticmethod
    def _variables(model):
        mask_ids = {id(mw.mask) for mw in layers.masked_weights(model)}
        return [v for v in model.variables if id(v) not in mask_ids]

    @classmethod
    def take(cls, model) -> "WeightSnapshot":
        variables = cls._variables(model)
        return cls([np.array(v.numpy()) for v in variables], [v.path for v in variables])

    def restore(self, model) -> None:
        """Assigns the snapshot to `model`, leaving masks untouched.

        Masked weights get ``where(mask, snapshot, 0)``: survivors equal the
        snapshot bit for bit and pruned entries are exactly +0.0.
        """
        variables = self._variables(model)
        if len(variables) != len(self.values):
            raise ValueError(
                f"The snapshot holds {len(self.values)} variables but the model "
                f"has {len(variables)} (masks excluded): a different architecture?"
            )
        mask_of = {id(mw.weight): mw.mask for mw in layers.masked_weights(model)}
        for variable, value, path in zip(variables, self.values, self.paths):
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"Snapshot value {path!r} has shape {value.shape}; model "
                    f"variable {variable.path!r} has {tuple(variable.shape)}."
                )
            if id(variable) in mask_of:
                keep = mask_of[id(variable)].numpy() != 0
                value = np.where(keep, value, np.zeros_like(value))
            variable.assign(value)

    def masked_values(self, model) -> dict[str, np.ndarray]:
        """The snapshot's masked weights (e.g. kernels), by masked-weight name."""
        index = {id(v): i for i, v in enumerate(self._variables(model))}
        return {
            mw.name: self.values[index[id(mw.weight)]] for mw in layers.masked_weights(model)
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat ``{name: array}`` for an npz file (see `from_arrays`)."""
        arrays = {f"{i:05d}": v for i, v in enumerate(self.values)}
        arrays["paths"] = np.array(self.paths)
        return arrays

    @classmethod
    def from_arrays(cls, arrays) -> "WeightSnapshot":
        keys = sorted(k for k in arrays if k != "paths")
        paths = [str(p) for p in arrays["paths"]] if "paths" in arrays else None
        return cls([np.asarray(arrays[k]) for k in keys], paths)


def reset_optimizer_state(optimizer) -> None:
    """Zeroes an optimizer's slots (moments, momentum) and iteration count.

    Stale Adam moments or momentum would move freshly reset (and pruned)
    weights on the first steps of a round; zeroing the iteration count also
    restarts learning-rate schedules and warmup. The learning-rate variable
    and a LossScaleOptimizer's loss scale are kept.
    """
    if optimizer is None or not getattr(optimizer, "built", False):
        return
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        reset_optimizer_state(optimizer.inner_optimizer)
        return
    keep = {id(optimizer._learning_rate)}
    averages = getattr(optimizer, "_model_variables_moving_average", None) or []
    keep.update(id(v) for v in averages)
    for variable in optimizer.variables:
        if id(variable) not in keep:
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    # An EMA restarts from the reset weights, not from the old trajectory.
    for average, variable in zip(averages, getattr(optimizer, "_trainable_variables", [])):
        average.assign(variable)


def default_output_layer(model) -> str | None:
    """The paper's "output layer": the last masked weight, if it is dense."""
    weights = layers.masked_weights(model)
    if len(weights) > 1 and weights[-1].kind == "dense":
        return weights[-1].name
    return None


def prune_model(
    model,
    rates=0.2,
    *,
    scope: str = "layerwise",
    include=None,
    exclude=None,
    output_layer="auto",
) -> dict[str, np.ndarray]:
    """Prunes `model` by magnitude, in place, and returns the new masks.

    Ranks the current weights (``|w|`` of surviving entries) and writes the
    new masks into the model's mask variables; newly pruned weights are set
    to exactly zero.

    Args:
        model: a built model with `MaskedLayer`s.
        rates: layerwise: a float, or a dict by kind or name (see
            `pruning.resolve_rates`). Global: a float.
        scope: ``"layerwise"`` or ``"global"``.
        include: names (or fnmatch patterns) of masked layers to prune; all
            when None.
        exclude: names (or patterns) never to prune, e.g. ``["output",
            "*_shortcut"]`` for ResNet.
        output_layer: the layer pruned at half the dense rate by default;
            ``"auto"`` picks the last masked layer when it is dense, None
            disables it.
    """
    all_weights = layers.masked_weights(model)
    chosen = [mw.name for mw in layers.masked_weights(model, include=include, exclude=exclude)]
    if output_layer == "auto":
        output_layer = default_output_layer(model)
    new_masks = pruning.prune(
        {mw.name: mw.weight.numpy() for mw in all_weights},
        {mw.name: mw.mask.numpy() for mw in all_weights},
        rates,
        kinds={mw.name: mw.kind for mw in all_weights},
        scope=scope,
        output=output_layer,
        include=chosen,
    )
    layers.set_masks(model, new_masks)
    return new_masks
