"""Gradual magnitude pruning on Keras models: the plumbing.

One mask/schedule core, `GradualPruner`, serves both the Keras callback
(`lth_keras.callbacks.GradualMagnitudePruning`, inside ``model.fit``) and the
experiment's in-process ``gradual`` arm (`lth_keras.arms.gradual`, inside the
compiled trainer loop, trained in chunks between mask updates). The math
(schedule, counts, patterns) is `lth_keras.pruning.sparsity`; N:M patterns on
a model are `lth_keras.pruning.patterns` (its names are also here: this is
their home before). This module reads and writes Keras variables, in
`keras.ops`/numpy, so it runs on TensorFlow, JAX and PyTorch.

Rates for gradual pruning are target sparsities. ``final_sparsity`` takes
what `IterativeMagnitudePruning`'s ``rates`` takes, with "rate" read as
"final sparsity":

- a float: every chosen layer ends at that sparsity (with ``output_layer``
  set, that layer ends at half of it, as IMP prunes it at half the rate);
- a dict by kind (``{"dense": 0.9, "conv": 0.8, "embedding": 0.5}``) or by
  masked-weight/layer name (a name wins over a kind): layers not given are
  not pruned;
- ``scope="global"``: a float, reached by all chosen layers together.

``include``/``exclude`` (names or fnmatch patterns) choose the layers, as in
IMP. ``initial_sparsity`` is one float, used for every pruned layer (capped
at the layer's final sparsity).

With a ``pattern`` (``"N:M"``) every target is capped at ``1 - N/M`` and
masks are chosen among the weights the pattern lets go (see
`lth_keras.pruning.patterns` for the axes).

Example:

```python
pruner = GradualPruner(0.5, end_step=1000, frequency=100, pattern="2:4")
pruner.bind(model)
pruner.update(model, step=1000, optimizer=model.optimizer)   # 2:4 masks
check_pattern(model, "2:4")                                  # {} when valid
```
"""

from __future__ import annotations

import keras
import numpy as np

from lth_keras import layers
from lth_keras.pruning.snapshots import zero_pruned_optimizer_slots  # noqa: F401 - its home before
from lth_keras.pruning import magnitude as pruning
from lth_keras.pruning import sparsity
from lth_keras.pruning.patterns import (  # noqa: F401 - their home before
    check_pattern,
    check_rounds_fit_pattern,
    constrain_to_pattern,
    pattern_axis,
    pattern_masks,
)

__all__ = [
    "GradualPruner",
    "pattern_axis",
    "check_pattern",
    "constrain_to_pattern",
    "check_rounds_fit_pattern",
    "zero_pruned_optimizer_slots",
    "sync_state",
    "pattern_masks",
]


def sync_state(model) -> None:
    """Makes a model's variables current inside `fit` (JAX keeps them in a
    state tuple between steps; a sync also makes `fit` read them back)."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


# --------------------------------------------------------------------------
# The core


class GradualPruner:
    """Zhu & Gupta's gradual magnitude pruning: schedule, targets, masks.

    Args:
        final_sparsity: the target sparsity (see the module doc for floats,
            dicts by kind or name, and global scope). With a `pattern` and
            None, ``1 - N/M``.
        initial_sparsity: the sparsity at `begin_step`.
        begin_step, end_step: the ramp, in optimizer steps (``end_step=-1``:
            TFMOT's "for ever", sparsity stays at `initial_sparsity`).
        power: the polynomial's exponent (3).
        frequency: steps between mask updates.
        scope: ``"layerwise"`` or ``"global"``.
        include, exclude: masked-weight names or fnmatch patterns.
        output_layer: a layer pruned at half of a float `final_sparsity`
            (layerwise); None (default) prunes every layer alike, as TFMOT.
        pattern: ``"N:M"``; caps every target at ``1 - N/M``.

    Example:

    ```python
    pruner = GradualPruner({"dense": 0.9, "conv": 0.75}, end_step=2000)
    pruner.bind(model)
    pruner.targets(1000)     # {'conv1': 0.656..., 'fc1': 0.787..., ...}
    ```
    """

    def __init__(self, final_sparsity=None, *, initial_sparsity=0.0, begin_step=0, end_step=None, power=3,
                 frequency=100, scope="layerwise", include=None, exclude=None, output_layer=None, pattern=None):
        self.pattern = sparsity.parse_pattern(pattern)
        if final_sparsity is None:
            if self.pattern is None:
                raise ValueError("`final_sparsity` is required (or give a `pattern`, whose cap 1 - N/M it takes).")
            final_sparsity = sparsity.pattern_cap(self.pattern)
        if end_step is None:
            raise ValueError("`end_step` is required: the step at which `final_sparsity` is reached.")
        sparsity.validate_schedule(begin_step, end_step, power, frequency)
        sparsity.validate_sparsity(initial_sparsity, "initial_sparsity")
        pruning.validate_scoped(scope, final_sparsity, sparsity.validate_sparsity, "final_sparsity")
        self.final_sparsity, self.initial_sparsity = final_sparsity, float(initial_sparsity)
        self.begin_step, self.end_step, self.power, self.frequency = begin_step, end_step, power, frequency
        self.scope, self.include, self.exclude, self.output_layer = scope, include, exclude, output_layer
        self._finals = None

    # -- binding to a model -------------------------------------------------

    def bind(self, model) -> "GradualPruner":
        """Resolves per-layer targets and checks them against `model`."""
        every = layers.masked_weights(model)
        if not every:
            raise ValueError("GradualMagnitudePruning found no MaskedLayer in the model: use "
                             "lth_keras.make_prunable(model) or masked layers.")
        chosen = [mw.name for mw in layers.masked_weights(model, include=self.include, exclude=self.exclude)]
        if not chosen:
            raise ValueError("`include`/`exclude` leave no masked layer to prune.")
        kinds = {mw.name: mw.kind for mw in every}
        if self.scope == "global":
            finals = {name: float(self.final_sparsity) for name in chosen}
        else:
            resolved = pruning.resolve_rates(self.final_sparsity, kinds, output=self.output_layer)
            finals = {name: resolved[name] for name in chosen if resolved[name] > 0}
        self.axes = {mw.name: pattern_axis(mw) for mw in every}
        if self.pattern is not None:
            n, m = self.pattern
            cap = sparsity.pattern_cap(self.pattern)
            shapes = {mw.name: tuple(mw.weight.shape) for mw in every}
            for name, final in finals.items():
                if final > cap + 1e-12:
                    raise ValueError(
                        f"`final_sparsity` for {name!r} is {final:g}, above the {n}:{m} pattern's cap "
                        f"{cap:g} (1 - N/M: at most {n} of every {m} weights survive, and no fewer are "
                        f"left). Ask for at most {cap:g}, or exclude the layer from the pattern."
                    )
                sparsity.check_pattern_axis(shapes[name], self.axes[name], self.pattern, name)
        self._finals = finals
        self._names = list(finals)
        return self

    # -- the schedule -------------------------------------------------------

    def targets(self, step) -> dict[str, float]:
        """Target sparsity of every pruned layer after `step` steps (global:
        the same value under every chosen name)."""
        return {
            name: sparsity.polynomial_sparsity(step, min(self.initial_sparsity, final), final, self.begin_step,
                                               self.end_step, self.power)
            for name, final in self._finals.items()
        }

    def is_update_step(self, step) -> bool:
        return sparsity.is_update_step(step, self.begin_step, self.end_step, self.frequency)

    def last_update_step(self, step):
        return sparsity.last_update_step(step, self.begin_step, self.end_step, self.frequency)

    def next_update_step(self, step):
        """The first update step after `step`, or None."""
        if step < self.begin_step:
            return self.begin_step
        following = self.begin_step + ((step - self.begin_step) // self.frequency + 1) * self.frequency
        return None if self.end_step != -1 and following > self.end_step else following

    # -- masks --------------------------------------------------------------

    def update(self, model, step, optimizer=None, *, seen_at=None) -> dict:
        """Prunes `model` to the targets of update step `step`; returns the
        record (step, targets, sparsity reached, per layer).

        Idempotent: a second call at the same step prunes nothing.
        """
        if self._finals is None:
            self.bind(model)
        targets = self.targets(step)
        if not self._names:
            return {"step": int(step if seen_at is None else seen_at), "update_step": int(step),
                    "target_sparsity": 0.0, "sparsity": 0.0, "remaining": 0, "total": 0,
                    "sparsity_per_layer": {}, "target_per_layer": {}}
        weights = {mw.name: mw for mw in layers.masked_weights(model)}
        names = self._names
        current = {n: keras.ops.convert_to_numpy(weights[n].mask) for n in names}
        values = {n: keras.ops.convert_to_numpy(weights[n].weight) for n in names}
        together = names if self.scope == "global" else None
        counts = sparsity.counts_for_sparsity(current, targets, together=together)
        if any(counts.values()):
            new = sparsity.prune_to_counts(values, current, counts, pattern=self.pattern,
                                           axes=self.axes, together=together)
            changed = {n: m for n, m in new.items() if not np.array_equal(m, current[n])}
            layers.set_masks(model, changed)
            zero_pruned_optimizer_slots(optimizer, model)
            current.update(new)
        sizes = {n: int(np.size(current[n])) for n in names}
        alive = {n: int(np.count_nonzero(current[n])) for n in names}
        total = sum(sizes.values())
        overall_target = (sum(targets[n] * sizes[n] for n in names) / total) if self.scope == "layerwise" \
            else targets[names[0]]
        return {
            "step": int(step if seen_at is None else seen_at),
            "update_step": int(step),
            "target_sparsity": float(overall_target),
            "sparsity": 1.0 - sum(alive.values()) / total,
            "remaining": sum(alive.values()),
            "total": total,
            "sparsity_per_layer": {n: 1.0 - alive[n] / sizes[n] for n in names},
            "target_per_layer": {n: float(targets[n]) for n in names},
        }
