"""Gradual magnitude pruning and N:M patterns on Keras models: the plumbing.

One mask/schedule core, `GradualPruner`, serves both the Keras callback
(`lth_keras.callbacks.GradualMagnitudePruning`, inside ``model.fit``) and the
experiment's in-process ``gradual`` arm (`train_gradual`, inside the compiled
`lth_keras.training.Trainer` loop, which is trained in chunks between mask
updates). The math (schedule, counts, patterns) is `lth_keras.sparsity`;
this module reads and writes Keras variables, in `keras.ops`/numpy, so it
runs on TensorFlow, JAX and PyTorch.

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

N:M patterns group every M consecutive weights along a kernel's input
dimension (`pattern_axis`): Dense axis 0; Conv1D/2D/3D, DepthwiseConv2D and
both SeparableConv2D kernels the input-channel axis (-2); Conv*Transpose
its input-channel axis (-1); EinsumDense (and MultiHeadAttention's
projections) the kernel's last contracted axis (for the output projection
``(heads, key_dim, d)``: key_dim); Embedding the embedding axis (1), along
each token's vector. A layer whose axis is not a multiple of M is refused
with a message naming it (exclude it). A user layer may set a class
attribute ``pattern_axis`` (an int, or ``{weight attribute: int}``).

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

__all__ = [
    "GradualPruner",
    "pattern_axis",
    "check_pattern",
    "constrain_to_pattern",
    "check_rounds_fit_pattern",
    "zero_pruned_optimizer_slots",
    "sync_state",
    "train_gradual",
    "train_gradual_arm",
    "ARM_SCHEDULE",
]

# The ``gradual`` arm's default schedule (--gradual_begin, --gradual_end,
# --gradual_frequency), as fractions of training: the TFMOT baseline's
# defaults (--pruning_begin, --pruning_end, --pruning_frequency), so the two
# arms are compared on the same schedule.
ARM_SCHEDULE = {"begin": 0.0, "end": 2.0 / 3.0, "frequency": 100}


def sync_state(model) -> None:
    """Makes a model's variables current inside `fit` (JAX keeps them in a
    state tuple between steps; a sync also makes `fit` read them back)."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


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


def constrain_to_pattern(masked_weights, new_masks, pattern, *, scope="layerwise", include=None):
    """Redoes one round of unstructured pruning (`new_masks`, from the
    weights' current masks) under an N:M `pattern`: each layer (or, global,
    all `include`d layers together) loses as many weights as in `new_masks`,
    chosen by magnitude among those the pattern lets go.

    Raises:
        ValueError: the round would prune past the pattern's cap ``1 - N/M``.
    """
    pattern = sparsity.parse_pattern(pattern)
    by_name = {mw.name: mw for mw in masked_weights}
    current = {n: keras.ops.convert_to_numpy(mw.mask) for n, mw in by_name.items()}
    values = {n: keras.ops.convert_to_numpy(mw.weight) for n, mw in by_name.items()}
    counts = {n: int(np.count_nonzero(current[n])) - int(np.count_nonzero(new_masks[n])) for n in by_name}
    counts = {n: c for n, c in counts.items() if c > 0}
    together = list(include if include is not None else by_name) if scope == "global" else None
    try:
        return sparsity.prune_to_counts(values, current, counts, pattern=pattern,
                                        axes={n: pattern_axis(mw) for n, mw in by_name.items()}, together=together)
    except ValueError as e:
        raise ValueError(f"pattern {pattern[0]}:{pattern[1]}: {e}") from None


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


# --------------------------------------------------------------------------
# Optimizer state of pruned weights


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


# --------------------------------------------------------------------------
# The experiment's in-process arm


def train_gradual(trainer, pruner: GradualPruner, *, start_iteration=None, round_start=0, curve=None,
                  on_eval=None, stops=None, on_update=None):
    """`Trainer.train_round` with gradual pruning: trains in chunks that end
    at mask updates, updating masks (and zeroing the pruned weights'
    optimizer slots) between them. Resuming mid-round is exact: the masks
    are in the checkpoint and the schedule is a function of the iteration.

    Returns the learning curve, as `Trainer.train_round`.
    """
    from lth_keras.training import schedule

    model, optimizer = trainer.model, trainer.optimizer
    pruner.bind(model)

    def update(step):
        record = pruner.update(model, step, optimizer)
        if on_update is not None:
            on_update(record)

    def train_steps(start, n_steps):
        position, end, loss_sum, correct_sum = start, start + n_steps, 0.0, 0.0
        last = pruner.last_update_step(position)
        if last is not None:
            update(last)  # idempotent when already applied
        while position < end:
            following = pruner.next_update_step(position)
            stop = end if following is None else min(end, following)
            loss, accuracy = trainer.train_steps(position, stop - position)
            loss_sum, correct_sum = loss_sum + loss * (stop - position), correct_sum + accuracy * (stop - position)
            position = stop
            if pruner.is_update_step(position):
                update(position)
        return loss_sum / n_steps, correct_sum / n_steps

    return schedule.train_and_measure(
        train_steps, trainer.evaluate, trainer.hp.iterations, trainer.hp.eval_every,
        start_iteration=start_iteration, round_start=round_start, curve=curve, on_eval=on_eval, stops=stops,
    )


def train_gradual_arm(trial, trainer, round_, **train_round_kwargs):
    """Round `round_` of the experiment's ``gradual`` arm: from the dense
    masks and θ0 (set by the runner), gradual pruning to the ticket's
    per-layer sparsity at `round_` (exact counts from its mask) over one
    round's iterations, on the experiment's ``gradual_begin``,
    ``gradual_end`` and ``gradual_frequency`` (default `ARM_SCHEDULE`), in
    its N:M ``pattern`` if it has one.
    """
    ticket = trial.mask("ticket", round_)
    final = {name: 1.0 - float(np.count_nonzero(m)) / m.size for name, m in ticket.items()}
    c = trial.config
    steps = sparsity.schedule_steps(trainer.hp.iterations, c.gradual_begin, c.gradual_end, c.gradual_frequency)
    pruner = GradualPruner(final, pattern=trial.config.pattern, **steps)
    return train_gradual(trainer, pruner, **train_round_kwargs)
