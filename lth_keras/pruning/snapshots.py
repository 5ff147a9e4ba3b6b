"""Keras plumbing shared by the callback and the experiment runner.

Snapshots of a model's weights (reset points: θ0, or the weights at the
rewind iteration), resetting an optimizer between rounds, and pruning a
model's masks in place by magnitude. Written in `keras.ops`/numpy, so it
runs on every Keras backend. `lth_keras.callbacks` and `lth_keras.training`
build on this module; it imports neither of them.

Example:

```python
from lth_keras.pruning import snapshots

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

from lth_keras.layers import in_place
from lth_keras.layers import keras_adapter
from lth_keras import layers
from lth_keras.pruning import magnitude as pruning

__all__ = ["WeightSnapshot", "prune_model", "reset_optimizer_state", "default_output_layer",
           "zero_pruned_optimizer_slots", "zero_optimizer_slots", "masked_weights_of", "slots_of"]


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
    """Returns an optimizer's state to that of a freshly built one.

    Every optimizer variable (moments, momentum, accumulators, iteration
    count, EMA averages) gets the value a new optimizer of the same config,
    built on the same variables, starts with. That is not always zero:
    Nadam's ``u_product`` starts at 1, Adagrad's and Ftrl's accumulators at
    ``initial_accumulator_value``. Stale state would move freshly reset (and
    pruned) weights on the first steps of a round; the iteration count
    returning to 0 also restarts learning-rate schedules and warmup (a
    rewound round then sets it to the rewind iteration). The
    learning-rate variable (which callbacks such as ReduceLROnPlateau may
    have changed) and a LossScaleOptimizer's loss scale are kept. An EMA
    restarts from the current (reset) weights.

    Example:

    ```python
    reset_optimizer_state(model.optimizer)   # after pruning and resetting
    ```
    """
    if optimizer is None or not getattr(optimizer, "built", False):
        return
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        reset_optimizer_state(optimizer.inner_optimizer)
        return
    trainable = keras_adapter.optimizer_built_for(optimizer)
    try:
        fresh = type(optimizer).from_config(optimizer.get_config())
        fresh.build(trainable)
    except Exception as e:  # e.g. an unregistered custom learning-rate schedule
        raise ValueError(
            f"Cannot reset {type(optimizer).__name__}: building a fresh copy from its "
            f"get_config() failed ({e}). Register its custom objects with "
            "keras.saving.register_keras_serializable, or pass reset_optimizer=False."
        ) from e
    # Variables held as attributes (iteration count, Nadam's u_product) are
    # matched by attribute name: a wrapped optimizer may not list them all
    # in `variables`. Slots are matched by position.
    attributes = {
        name: value for name, value in vars(fresh).items() if isinstance(value, keras.Variable)
    }
    attribute_ids = {id(v) for v in attributes.values()}
    own_attribute_ids = {id(v) for v in vars(optimizer).values() if isinstance(v, keras.Variable)}
    slots = [v for v in optimizer.variables if id(v) not in own_attribute_ids]
    fresh_slots = [v for v in fresh.variables if id(v) not in attribute_ids]
    if len(fresh_slots) != len(slots):
        raise ValueError(
            f"Cannot reset {type(optimizer).__name__}: a fresh copy has "
            f"{len(fresh_slots)} slot variables, the optimizer {len(slots)}."
        )
    pairs = list(zip(slots, fresh_slots))
    for name, initial in attributes.items():
        variable = getattr(optimizer, name, None)
        if isinstance(variable, keras.Variable) and variable is not keras_adapter.learning_rate_source(optimizer):
            pairs.append((variable, initial))
    for variable, initial in pairs:
        variable.assign(keras.ops.convert_to_numpy(initial).astype(variable.dtype))


def slots_of(optimizer, variable):
    """The optimizer's slot variables (moments, momentum, ...) of `variable`."""
    prefix = variable.path.replace("/", "_") + "_"
    shape = tuple(variable.shape)
    return [v for v in optimizer.variables if v.name.startswith(prefix) and tuple(v.shape) == shape]


def zero_pruned_optimizer_slots(optimizer, model) -> None:
    """Zeroes the optimizer slots (moments, momentum, accumulators) of every
    pruned weight entry.

    Gradual pruning does not reset the optimizer, and a stale moment would
    move a freshly pruned weight off zero although its gradient is zero.
    With zero slots and zero gradient, Adam, SGD, RMSprop and Adagrad leave
    the weight exactly 0.
    """
    for mw in layers.masked_weights(model):
        pruned = keras.ops.convert_to_numpy(mw.mask) == 0
        if pruned.any():
            zero_optimizer_slots(optimizer, mw.weight, pruned)


def zero_optimizer_slots(optimizer, variable, where) -> None:
    """Zeroes `variable`'s optimizer slots at the entries where `where` is
    true (nothing before the optimizer is built: its slots start at 0)."""
    if optimizer is None or not getattr(optimizer, "built", False):
        return
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    for slot in slots_of(optimizer, variable):
        value = keras.ops.convert_to_numpy(slot)
        slot.assign(np.where(where, np.zeros_like(value), value))


def masked_weights_of(model, function):
    """`model`'s masked weights; a plain model gets its masks in place first."""
    if not layers.masked_weights(model):
        in_place.add_masks(model)
    weights = layers.masked_weights(model)
    if not weights:
        raise ValueError(
            f"{function} found nothing to prune in {model.name!r}: it has no Dense, EinsumDense, "
            "Embedding, convolution or SimpleRNN/LSTM/GRU kernel (nor a MaskedLayer) that is trainable."
        )
    return weights


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
    pattern=None,
) -> dict[str, np.ndarray]:
    """Prunes `model` by magnitude, in place, and returns the new masks.

    Ranks the current weights (``|w|`` of surviving entries) and writes the
    new masks into the model's mask variables; newly pruned weights, and
    their optimizer slots when the model has an optimizer, are set to
    exactly zero. A plain model (no masks yet) gets them in place first
    (`lth_keras.add_masks`).

    Args:
        model: a built model: plain, masked in place, or with `MaskedLayer`s.
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
        pattern: ``"N:M"`` (e.g. ``"2:4"``): the same number of weights go,
            chosen by magnitude among those whose group of M (along the
            kernel's input dimension, `lth_keras.pruning.patterns.pattern_axis`)
            keeps more than N, so a mask pruned to ``1 - N/M`` is N:M and
            every round keeps it on its way there. Pruning past ``1 - N/M``
            raises ValueError.
    """
    all_weights = masked_weights_of(model, "prune_model")
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
    if pattern is not None:
        from lth_keras.pruning import patterns

        new_masks = patterns.constrain_to_pattern(all_weights, new_masks, pattern, scope=scope, include=chosen)
    layers.set_masks(model, new_masks)
    # Zero gradient and zero slots leave a pruned weight at exactly 0; stale
    # moments would move it (harmless to the masked output, but a saved
    # ticket must hold zeros there for Keras alone to load it).
    zero_pruned_optimizer_slots(getattr(model, "optimizer", None), model)
    return new_masks
