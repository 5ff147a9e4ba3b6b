"""The lottery-ticket callback, and the Keras plumbing it shares with the
experiment runner: pruning a model, snapshotting and restoring its weights,
and resetting an optimizer.

Example: three rounds of IMP on LeNet-300-100 with `model.fit`.

```python
import keras, lth_keras

model = keras.Sequential([
    keras.Input((784,)),
    lth_keras.MaskedDense(300, activation="relu"),
    lth_keras.MaskedDense(100, activation="relu"),
    lth_keras.MaskedDense(10),
])
model.compile(keras.optimizers.Adam(1.2e-3),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
imp = lth_keras.IterativeMagnitudePruning(rates=0.2, round_epochs=2)
model.fit(x, y, batch_size=60, epochs=3 * 2, callbacks=[imp])
imp.rounds[-1]["pm"]          # 64.0 (% of prunable weights left)
imp.to_csv("rounds.csv")
```
"""

from __future__ import annotations

import math

import keras
import numpy as np

from lth_keras import layers as masked
from lth_keras import pruning

__all__ = [
    "IterativeMagnitudePruning",
    "WeightSnapshot",
    "prune_model",
    "reset_optimizer_state",
    "default_output_layer",
]


# --------------------------------------------------------------------------
# Plumbing shared with lth_keras.experiment.


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
        mask_ids = {id(mw.mask) for mw in masked.masked_weights(model)}
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
        mask_of = {id(mw.weight): mw.mask for mw in masked.masked_weights(model)}
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
            mw.name: self.values[index[id(mw.weight)]] for mw in masked.masked_weights(model)
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
    trainable = list(getattr(optimizer, "_trainable_variables", []))
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
        if isinstance(variable, keras.Variable) and variable is not optimizer._learning_rate:
            pairs.append((variable, initial))
    for variable, initial in pairs:
        variable.assign(keras.ops.convert_to_numpy(initial).astype(variable.dtype))


def default_output_layer(model) -> str | None:
    """The paper's "output layer": the last masked weight, if it is dense."""
    weights = masked.masked_weights(model)
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
    all_weights = masked.masked_weights(model)
    chosen = [mw.name for mw in masked.masked_weights(model, include=include, exclude=exclude)]
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
    masked.set_masks(model, new_masks)
    return new_masks


# --------------------------------------------------------------------------
# The callback.


class IterativeMagnitudePruning(keras.callbacks.Callback):
    """Iterative magnitude pruning with reset, inside `model.fit`.

    Training is split into rounds of `round_epochs` epochs (or `round_steps`
    optimizer steps). At the end of every round but the last the callback:

    1. prunes the surviving weights by magnitude (layerwise, or globally),
    2. resets the survivors to the reset point and zeroes the pruned ones,
    3. re-initialises the optimizer state (moments, momentum, accumulators)
       and sets its iteration count to the reset point's (0 for θ0).

    The reset point is θ0, the weights before the first optimizer step, or
    with `rewind_step=k` the weights after k steps of the first round
    ("late resetting"/rewinding). Masks are never touched by a reset.
    Batch-norm moving statistics are reset with the weights (they belong to
    the reset point). Masks that are already sparse when training starts are
    honoured: their pruned weights are zeroed first and pruning continues
    from them. A model that is not built yet (no `keras.Input`, or a
    subclassed model) is built from the first batch's shapes before the
    first step, so θ0 is still the initial weights.

    Steps are counted with the optimizer's iteration count, so they are
    exact with any `steps_per_execution`. (Under ``mixed_float16`` a step
    that a LossScaleOptimizer skips for overflow updates nothing and is not
    counted.)

    Round lengths when rewinding (``rewind_step=k``): as in Frankle et al.
    2019 and OpenLTH, a rewound round continues from iteration k. The
    optimizer's iteration count is set to k, so learning-rate warmup and
    drops continue instead of replaying. With `round_steps=T` the first
    round runs T steps and every later round the remaining T - k, so R
    rounds take ``T + (R - 1) * (T - k)`` steps: run ``fit`` for exactly
    that many. With `round_epochs` every round stays `round_epochs` epochs
    long (Keras epochs cannot start mid-way), so a rewound round runs k
    steps past the schedule's T: use `round_steps` for the paper's round
    lengths. `model.fit` owns the data order, which does not rewind.

    The number of rounds is read from the fit's length; when the length is
    unknown (a generator without ``steps_per_epoch``) pass `num_rounds`,
    and training stops after the last round.

    Args:
        rates: pruning rate(s). Layerwise: a float (the output layer gets
            half), or a dict by kind (``"dense"``, ``"conv"``,
            ``"output"``) or by layer name. Global: a float.
        round_epochs: epochs per round.
        round_steps: optimizer steps per round (instead of `round_epochs`);
            the first round's when rewinding (see above).
        num_rounds: the number of rounds, including the dense round 0.
            Needed only when the fit's length is unknown; when it is known
            the two must agree.
        scope: ``"layerwise"`` (LeNet, Conv-2/4/6) or ``"global"``
            (VGG-19, ResNet-18).
        include: masked layer names/patterns to prune (default: all).
        exclude: masked layer names/patterns never pruned.
        output_layer: which layer gets the output rate; ``"auto"`` is the
            last masked layer when it is dense, in call order (a Sequential
            or functional model). A subclassed model lists its layers in
            attribute order, not call order, so it must name it (or None).
        rewind_step: reset to the weights at this step of round 1 (0 = θ0).
        reset_optimizer: reset the optimizer state every round (default).
        verbose: 1 prints one line per round.

    Attributes:
        rounds: one dict per finished round: ``round`` (0 = dense), ``pm``
            (P_m in percent during that round), ``pm_per_layer``,
            ``remaining``, ``total``, ``steps`` and ``logs`` (the round's
            final logs).

    Example:

    ```python
    # 3 rounds of 500 steps, rewound to step 100: 500 + 2 * 400 steps.
    imp = IterativeMagnitudePruning(rates={"dense": 0.2}, round_steps=500,
                                    rewind_step=100)
    model.fit(dataset.repeat(), steps_per_epoch=100, epochs=13,
              callbacks=[imp])
    ```
    """

    def __init__(
        self,
        rates=0.2,
        *,
        round_epochs: int | None = None,
        round_steps: int | None = None,
        num_rounds: int | None = None,
        scope: str = "layerwise",
        include=None,
        exclude=None,
        output_layer="auto",
        rewind_step: int = 0,
        reset_optimizer: bool = True,
        verbose: int = 1,
    ):
        super().__init__()
        if (round_epochs is None) == (round_steps is None):
            raise ValueError("Give exactly one of `round_epochs` and `round_steps`.")
        for name, value in (("round_epochs", round_epochs), ("round_steps", round_steps), ("num_rounds", num_rounds)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if scope not in ("layerwise", "global"):
            raise ValueError(f"`scope` must be 'layerwise' or 'global', got {scope!r}.")
        if scope == "global":
            pruning.validate_rate(rates, "rates")
        elif isinstance(rates, dict):
            # Names are checked against the model in fit; values now.
            for key, value in rates.items():
                pruning.validate_rate(value, f"rates[{key!r}]")
        else:
            pruning.validate_rate(rates, "rates")
        if isinstance(rewind_step, bool) or not isinstance(rewind_step, int) or rewind_step < 0:
            raise ValueError(f"`rewind_step` must be an integer >= 0, got {rewind_step!r}.")
        if round_steps is not None and rewind_step >= round_steps:
            raise ValueError(
                f"`rewind_step` ({rewind_step}) must be smaller than `round_steps` ({round_steps})."
            )
        self.rates = rates
        self.round_epochs = round_epochs
        self.round_steps = round_steps
        self.num_rounds = num_rounds
        self.scope = scope
        self.include = include
        self.exclude = exclude
        self.output_layer = output_layer
        self.rewind_step = rewind_step
        self.reset_optimizer = reset_optimizer
        self.verbose = verbose
        self.rounds: list[dict] = []
        self.reset_point: WeightSnapshot | None = None
        self._ready = False

    # -- bookkeeping -------------------------------------------------------

    def _round_length(self, index):
        """Steps in round `index` with `round_steps` (T, then T - k when rewinding)."""
        return self.round_steps if index == 0 else self.round_steps - self.rewind_step

    def _fit_steps(self):
        epochs, steps = self.params.get("epochs"), self.params.get("steps")
        return None if epochs is None or steps is None else epochs * steps

    def _total_rounds(self):
        epochs = self.params.get("epochs")
        known = None
        if self.round_epochs is not None:
            if epochs is not None and epochs % self.round_epochs:
                raise ValueError(
                    f"fit's epochs ({epochs}) is not a multiple of round_epochs "
                    f"({self.round_epochs})."
                )
            known = None if epochs is None else epochs // self.round_epochs
        else:
            total = self._fit_steps()
            if total is not None:
                first, later = self._round_length(0), self._round_length(1)
                if total < first or (total - first) % later:
                    lengths = f"{first}" + (f" then {later}" if later != first else "")
                    raise ValueError(
                        f"fit's length ({self.params.get('epochs')} epochs x {self.params.get('steps')} "
                        f"steps = {total} steps) is not a whole number of rounds of round_steps "
                        f"({lengths} steps" + (f", rewind_step={self.rewind_step}" if self.rewind_step else "")
                        + f"): {first} + R x {later} for R rounds after the first."
                    )
                known = 1 + (total - first) // later
        if known is not None and self.num_rounds is not None and known != self.num_rounds:
            raise ValueError(
                f"num_rounds={self.num_rounds}, but the fit's length makes {known} rounds."
            )
        if known is None and self.num_rounds is None:
            raise ValueError(
                "IterativeMagnitudePruning cannot tell how many rounds this fit holds: its "
                "length is unknown (a dataset or generator without steps_per_epoch). Pass "
                "num_rounds=R, or steps_per_epoch to fit."
            )
        return known if known is not None else self.num_rounds

    def _check_steps_per_execution(self):
        spe = int(getattr(self.model, "steps_per_execution", 1) or 1)
        if spe == 1:
            return
        for name, value in (("round_steps", self.round_steps), ("rewind_step", self.rewind_step)):
            if value and value % spe:
                raise ValueError(
                    f"`{name}` ({value}) must be a multiple of the model's "
                    f"steps_per_execution ({spe}): the callback only sees "
                    "every steps_per_execution-th step."
                )
        # An epoch ends an execution early; boundaries after it shift.
        steps = self.params.get("steps")
        if self.round_steps is None or steps is None:
            return
        boundaries = [self.rewind_step] if self.rewind_step else []
        position = 0
        for index in range(self._rounds_total):
            position += self._round_length(index)
            boundaries.append(position)
        for boundary in boundaries:
            within = boundary % steps
            if within and within % spe:
                raise ValueError(
                    f"Step {boundary} (a round boundary or rewind_step) falls inside an "
                    f"execution of steps_per_execution={spe} steps: epochs of {steps} steps "
                    "end executions early. Make round_steps a multiple of the epoch's "
                    "steps, or the epoch's steps a multiple of steps_per_execution."
                )

    def _resolve_output_layer(self):
        if self.output_layer != "auto":
            return self.output_layer
        weights = masked.masked_weights(self.model)
        functional = isinstance(self.model, keras.Sequential) or type(self.model).__name__ == "Functional"
        if len(weights) > 1 and not functional:
            raise ValueError(
                f"output_layer='auto' cannot find the output layer of {type(self.model).__name__}, "
                "a subclassed model: its layers are listed in attribute order, not call order. "
                f"Pass output_layer=<name> (one of {[mw.name for mw in weights]}; it is pruned at "
                "half the dense rate) or output_layer=None."
            )
        return default_output_layer(self.model)

    def _check_rates(self):
        """Bad layer names or rates fail now, not after a round of training."""
        chosen = masked.masked_weights(self.model, include=self.include, exclude=self.exclude)
        self._output = self._resolve_output_layer() if self.scope == "layerwise" else None
        if self.scope == "layerwise":
            pruning.resolve_rates(
                self.rates, {mw.name: mw.kind for mw in masked.masked_weights(self.model)}, output=self._output
            )
        if not chosen:
            raise ValueError("`include`/`exclude` leave no masked layer to prune.")

    def _iterations(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _record(self, logs):
        counts = masked.count_weights(self.model)
        remaining = sum(r for r, _ in counts.values())
        total = sum(t for _, t in counts.values())
        entry = {
            "round": len(self.rounds),
            "pm": 100.0 * remaining / total,
            "pm_per_layer": {n: 100.0 * r / t for n, (r, t) in counts.items()},
            "remaining": remaining,
            "total": total,
            "steps": self._round_step,
            "logs": {k: _to_float(v) for k, v in (logs or {}).items()},
        }
        self.rounds.append(entry)
        return entry

    # -- Keras hooks -------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._ready = False
        self.rounds = []
        self._round_step = 0
        self._round_closed = False
        self._rounds_total = self._total_rounds()
        self._check_steps_per_execution()
        if all(layer.built for layer in self.model._flatten_layers()):
            self._begin()
            return
        # TensorFlow builds a model without keras.Input inside the first
        # step; build it from the data's shapes first, so that θ0 is read
        # before any step.
        original = getattr(self.model, "train_function", None)
        if original is None or keras.backend.backend() != "tensorflow":
            raise ValueError(
                "IterativeMagnitudePruning needs a built model: call it on a batch (or "
                "start it with keras.Input) before fit."
            )

        def build_then_train(iterator):
            self.model.train_function = original
            _build_from_element_spec(self.model, iterator)
            self._begin()
            return original(iterator)

        self.model.train_function = build_then_train

    def _begin(self):
        if not masked.masked_weights(self.model):
            raise ValueError(
                "IterativeMagnitudePruning found no MaskedLayer in the model: "
                "build it from lth_keras.MaskedDense/MaskedConv2D or your own "
                "MaskedLayer subclass."
            )
        self._check_rates()
        # Pre-pruned masks: pruned weights must be exactly zero from the start.
        masked.apply_masks_to_weights(self.model)
        self._round_base = self._iterations()
        self.reset_point = WeightSnapshot.take(self.model) if self.rewind_step == 0 else None
        self._ready = True

    def on_train_batch_end(self, batch, logs=None):
        if not self._ready:
            return
        self._round_step = self._iterations() - self._round_base
        self._round_closed = False
        if self.reset_point is None and not self.rounds and self._round_step >= self.rewind_step:
            if self._round_step > self.rewind_step:
                raise ValueError(
                    f"rewind_step={self.rewind_step} falls inside an execution of "
                    f"steps_per_execution steps (this one ended at step {self._round_step})."
                )
            self.reset_point = WeightSnapshot.take(self.model)
        if self.round_steps is not None:
            length = self._round_length(len(self.rounds))
            if self._round_step > length:
                raise ValueError(
                    f"Round {len(self.rounds)} should end after {length} steps, but an execution "
                    f"of steps_per_execution steps ended at step {self._round_step}."
                )
            if self._round_step == length:
                self._end_round(logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.round_epochs is not None and (epoch + 1) % self.round_epochs == 0:
            if self.reset_point is None:
                raise ValueError(
                    f"rewind_step={self.rewind_step} is beyond the first round "
                    f"({self._round_step} steps)."
                )
            self._end_round(logs)

    def on_train_end(self, logs=None):
        # A fit that stops early still records the round it was in.
        if self._ready and not self._round_closed and self._round_step > 0:
            self._record(logs)

    def _end_round(self, logs):
        entry = self._record(logs)
        self._round_step = 0
        self._round_closed = True
        if len(self.rounds) >= self._rounds_total:
            if self.verbose:
                _say(f"IMP round {entry['round']}: P_m {entry['pm']:.1f}% (final round)")
            # With num_rounds and a longer (or endless) fit, the last round ends here.
            self.model.stop_training = True
            return
        prune_model(
            self.model,
            self.rates,
            scope=self.scope,
            include=self.include,
            exclude=self.exclude,
            output_layer=self._output,
        )
        self.reset_point.restore(self.model)
        if self.reset_optimizer:
            reset_optimizer_state(self.model.optimizer)
            if self.rewind_step:
                # The rewound round continues the schedule from iteration k.
                self.model.optimizer.iterations.assign(self.rewind_step)
        self._round_base = self._iterations()
        if self.verbose:
            next_pm = 100.0 * masked.fraction_remaining(self.model)
            _say(
                f"IMP round {entry['round']}: P_m {entry['pm']:.1f}% -> pruned to "
                f"{next_pm:.1f}%, reset to "
                + ("θ0" if self.rewind_step == 0 else f"step {self.rewind_step}")
            )

    # -- export ------------------------------------------------------------

    def rows(self) -> list[dict]:
        """`rounds` as flat rows: round, pm, pm/<layer>, remaining, total,
        steps, then the logs (loadable with pandas.DataFrame)."""
        rows = []
        for entry in self.rounds:
            row = {k: entry[k] for k in ("round", "pm", "remaining", "total", "steps")}
            row.update({f"pm/{n}": v for n, v in entry["pm_per_layer"].items()})
            row.update(entry["logs"])
            rows.append(row)
        return rows

    def to_csv(self, path: str) -> None:
        """Writes `rows()` as CSV (atomically)."""
        from lth_keras import results

        rows = self.rows()
        fields = []
        for row in rows:
            fields.extend(k for k in row if k not in fields)
        results.atomic_write_csv(path, rows, fieldnames=fields)

    def to_json(self, path: str) -> None:
        """Writes `rounds` as JSON (atomically)."""
        from lth_keras import results

        results.atomic_write_json(path, self.rounds)


def _build_from_element_spec(model, iterator):
    """Builds `model` symbolically from a data iterator's element spec."""
    spec = getattr(iterator, "element_spec", None)
    if spec is None:
        raise ValueError(
            "IterativeMagnitudePruning needs a built model: call it on a batch (or start it "
            "with keras.Input) before fit."
        )
    x, _, _ = keras.utils.unpack_x_y_sample_weight(spec)
    symbolic = keras.tree.map_structure(lambda s: keras.KerasTensor(tuple(s.shape), s.dtype.name), x)
    model(symbolic, training=False) if _accepts_training(model) else model(symbolic)


def _accepts_training(model):
    import inspect

    try:
        return "training" in inspect.signature(model.call).parameters
    except (TypeError, ValueError):
        return False


def _to_float(value):
    try:
        value = float(np.asarray(value))
    except (TypeError, ValueError):
        return value
    return value if math.isfinite(value) else float("nan")


def _say(message):
    print(message, flush=True)
