"""The lottery-ticket callback: IMP with reset inside `model.fit`.

The Keras plumbing it shares with the experiment runner (weight snapshots,
optimizer reset, pruning a model's masks) lives in
`lth_keras.pruning.snapshots`; `lth_keras.callbacks` re-exports its names.
`GradualMagnitudePruning` is in `lth_keras.callbacks.gradual`.

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
import warnings

import keras
import numpy as np

from lth_keras import layers
from lth_keras import pruning
from lth_keras.callbacks import _fit
from lth_keras.layers import keras_adapter
from lth_keras.pruning import patterns
from lth_keras.pruning import snapshots
from lth_keras.pruning import sparsity
from lth_keras.pruning.snapshots import WeightSnapshot, default_output_layer, prune_model, reset_optimizer_state

__all__ = ["IterativeMagnitudePruning"]


class IterativeMagnitudePruning(keras.callbacks.Callback):
    """Iterative magnitude pruning with reset, inside `model.fit`.

    Training is split into rounds of `round_epochs` epochs (or `round_steps`
    optimizer steps). The model can be any built Keras model: one with
    masked layers, or a plain one (a KerasHub backbone, a functional graph
    with operators, a subclassed model), whose kernels get masks in place
    when training starts (`lth_keras.add_masks`; nothing is rebuilt). At the
    end of every round but the last the callback:

    1. prunes the surviving weights by magnitude (layerwise, or globally),
    2. resets the survivors to the reset point and zeroes the pruned ones,
    3. re-initialises the optimizer state (moments, momentum, accumulators)
       and sets its iteration count to the reset point's (0 for θ0).

    The reset point is θ0, the weights before the first optimizer step, or
    with `rewind_iteration=k` the weights after k steps of the first round
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

    Round lengths when rewinding (``rewind_iteration=k``): as in Frankle et al.
    2019 and OpenLTH, a rewound round continues from iteration k. When the
    optimizer has a learning-rate schedule, its iteration count is set to
    k, so warmup and drops continue instead of replaying; Keras optimizers
    feed the same count to Adam's bias correction, which has then already
    saturated (the first steps from zeroed moments are up to about 3x
    larger than a fresh Adam's). Without a schedule the count restarts at
    0 with the moments, as OpenLTH's optimizer does. (`lth_keras.main`'s
    Trainer does both at once: the schedule continues and the count
    restarts.) With `round_steps=T` the first
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
        rewind_iteration: reset to the weights at this step of round 1
            (0 = θ0); the paper's "rewind iteration".
        rewind_step: deprecated name of `rewind_iteration`.
        reset_optimizer: reset the optimizer state every round (default).
        reset: what the next round starts from. ``"weights"`` (default):
            θ0, or the weights at `rewind_iteration`. ``"lr"``: learning-rate
            rewinding (Renda et al. 2020): this round's trained weights,
            pruned, with the learning-rate schedule replayed from
            `rewind_iteration`. ``"finetune"``: the trained weights, pruned,
            at the schedule's rate at the end of the first round (its final
            rate) on.
        verbose: 1 prints one line per round.
        pattern: ``"N:M"`` structured sparsity (e.g. ``"2:4"``): each round
            prunes as many weights, but never leaves a group of M (along a
            kernel's input dimension) with fewer than N, so the masks reach
            N:M at sparsity ``1 - N/M``; a round past that is refused.

    Attributes:
        rounds: one dict per finished round: ``round`` (0 = dense), ``pm``
            (P_m in percent during that round), ``pm_per_layer``,
            ``remaining``, ``total``, ``steps`` and ``logs`` (the round's
            final logs).

    Example:

    ```python
    # 3 rounds of 500 steps, rewound to step 100: 500 + 2 * 400 steps.
    imp = IterativeMagnitudePruning(rates={"dense": 0.2}, round_steps=500,
                                    rewind_iteration=100)
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
        rewind_iteration: int = 0,
        reset_optimizer: bool = True,
        verbose: int = 1,
        rewind_step: int | None = None,
        pattern=None,
        reset: str = "weights",
    ):
        super().__init__()
        if reset not in RESETS:
            raise ValueError(f"`reset` must be one of {RESETS}, got {reset!r}.")
        self.reset = reset
        self.pattern = sparsity.parse_pattern(pattern)
        # Messages name the argument the caller used.
        self._rewind_arg = "rewind_iteration"
        if rewind_step is not None:
            warnings.warn(
                "`rewind_step` is deprecated; use `rewind_iteration` (the paper's term).",
                DeprecationWarning, stacklevel=2,
            )
            rewind_iteration, self._rewind_arg = rewind_step, "rewind_step"
        if (round_epochs is None) == (round_steps is None):
            raise ValueError("Give exactly one of `round_epochs` and `round_steps`.")
        for name, value in (("round_epochs", round_epochs), ("round_steps", round_steps), ("num_rounds", num_rounds)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        pruning.validate_scoped(scope, rates)  # names are checked against the model in fit
        if isinstance(rewind_iteration, bool) or not isinstance(rewind_iteration, int) or rewind_iteration < 0:
            raise ValueError(f"`{self._rewind_arg}` must be an integer >= 0, got {rewind_iteration!r}.")
        if round_steps is not None and rewind_iteration >= round_steps:
            raise ValueError(
                f"`{self._rewind_arg}` ({rewind_iteration}) must be smaller than `round_steps` ({round_steps})."
            )
        self.rates = rates
        self.round_epochs = round_epochs
        self.round_steps = round_steps
        self.num_rounds = num_rounds
        self.scope = scope
        self.include = include
        self.exclude = exclude
        self.output_layer = output_layer
        self.rewind_iteration = rewind_iteration
        self.reset_optimizer = reset_optimizer
        self.verbose = verbose
        self.rounds: list[dict] = []
        self.reset_point: WeightSnapshot | None = None
        self._ready = False

    @property
    def rewind_step(self) -> int:
        """Deprecated name of `rewind_iteration`."""
        return self.rewind_iteration

    # -- bookkeeping -------------------------------------------------------

    def _round_length(self, index):
        """Steps in round `index` with `round_steps` (T, then T - k when rewinding)."""
        return self.round_steps if index == 0 else self.round_steps - self.rewind_iteration

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
                        f"({lengths} steps" + (f", {self._rewind_arg}={self.rewind_iteration}" if self.rewind_iteration else "")
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
        for name, value in (("round_steps", self.round_steps), (self._rewind_arg, self.rewind_iteration)):
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
        boundaries = [self.rewind_iteration] if self.rewind_iteration else []
        position = 0
        for index in range(self._rounds_total):
            position += self._round_length(index)
            boundaries.append(position)
        for boundary in boundaries:
            within = boundary % steps
            if within and within % spe:
                raise ValueError(
                    f"Step {boundary} (a round boundary or {self._rewind_arg}) falls inside an "
                    f"execution of steps_per_execution={spe} steps: epochs of {steps} steps "
                    "end executions early. Make round_steps a multiple of the epoch's "
                    "steps, or the epoch's steps a multiple of steps_per_execution."
                )

    def _resolve_output_layer(self):
        if self.output_layer != "auto":
            return self.output_layer
        weights = layers.masked_weights(self.model)
        # A graph model (KerasHub backbones are functional subclasses) lists
        # its layers in call order.
        functional = keras_adapter.is_graph_model(self.model)
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
        chosen = layers.masked_weights(self.model, include=self.include, exclude=self.exclude)
        self._output = self._resolve_output_layer() if self.scope == "layerwise" else None
        if self.scope == "layerwise":
            pruning.resolve_rates(
                self.rates, {mw.name: mw.kind for mw in layers.masked_weights(self.model)}, output=self._output
            )
        if not chosen:
            raise ValueError("`include`/`exclude` leave no masked layer to prune.")

    def _iterations(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _record(self, logs):
        counts = layers.count_weights(self.model)
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
        if _fit.is_built(self.model):
            self._begin()
            return
        # TensorFlow builds a model without keras.Input inside the first
        # step; build it from the data's shapes first, so that θ0 is read
        # before any step.
        original = getattr(self.model, "train_function", None)
        if original is None or keras.backend.backend() != "tensorflow":
            raise ValueError(_fit.NOT_BUILT.format(callback="IterativeMagnitudePruning"))

        def build_then_train(iterator):
            self.model.train_function = original
            _fit.build_from_element_spec(self.model, iterator, "IterativeMagnitudePruning")
            self._begin()
            # Masks attached in place make `fit` trace a new step.
            return self.model.train_function(iterator)

        self.model.train_function = build_then_train

    def _begin(self):
        snapshots.masked_weights_of(self.model, "IterativeMagnitudePruning")
        self._check_rates()
        if self.pattern is not None:
            patterns.check_rounds_fit_pattern(self.model, self.rates, self._rounds_total, self.pattern, scope=self.scope,
                                              include=self.include, exclude=self.exclude, output=self._output)
        # Pre-pruned masks: pruned weights must be exactly zero from the start.
        layers.apply_masks_to_weights(self.model)
        self._round_base = self._iterations()
        self.reset_point = WeightSnapshot.take(self.model) if self.rewind_iteration == 0 else None
        self._ready = True

    def on_train_batch_end(self, batch, logs=None):
        if not self._ready:
            return
        self._round_step = self._iterations() - self._round_base
        self._round_closed = False
        if self.reset_point is None and not self.rounds and self._round_step >= self.rewind_iteration:
            if self._round_step > self.rewind_iteration:
                raise ValueError(
                    f"{self._rewind_arg}={self.rewind_iteration} falls inside an execution of "
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
                    f"{self._rewind_arg}={self.rewind_iteration} is beyond the first round "
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
                _fit.say(f"IMP round {entry['round']}: P_m {entry['pm']:.1f}% (final round)")
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
            pattern=self.pattern,
        )
        optimizer = self.model.optimizer
        if entry["round"] == 0:
            self._schedule_end = self._iterations()
        if self.reset == "weights":
            self.reset_point.restore(self.model)
        if self.reset_optimizer:
            reset_optimizer_state(optimizer)
        if _has_schedule(optimizer):
            # The rewound round continues the schedule from iteration k, and
            # fine-tuning from the first round's last step. (Without a
            # schedule the count stays 0, as a fresh optimizer's: Adam's bias
            # correction restarts with its moments.)
            if self.reset == "finetune":
                optimizer.iterations.assign(self._schedule_end)
            elif self.reset == "lr" or (self.rewind_iteration and self.reset_optimizer):
                optimizer.iterations.assign(self.rewind_iteration)
        self._round_base = self._iterations()
        if self.verbose:
            next_pm = 100.0 * layers.fraction_remaining(self.model)
            _fit.say(
                f"IMP round {entry['round']}: P_m {entry['pm']:.1f}% -> pruned to "
                f"{next_pm:.1f}%, " + _RESET_SAYS[self.reset].format(
                    k=self.rewind_iteration, w=f"iteration {self.rewind_iteration}" if self.rewind_iteration else "θ0")
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
        _fit.write_rows_csv(path, self.rows())

    def to_json(self, path: str) -> None:
        """Writes `rounds` as JSON (atomically)."""
        _fit.write_json(path, self.rounds)


RESETS = ("weights", "lr", "finetune")
_RESET_SAYS = {"weights": "reset to {w}", "lr": "trained weights kept, learning rate rewound to iteration {k}",
               "finetune": "trained weights kept, fine-tuned at the final learning rate"}


def _to_float(value):
    try:
        value = float(np.asarray(value))
    except (TypeError, ValueError):
        return value
    return value if math.isfinite(value) else float("nan")


def _has_schedule(optimizer) -> bool:
    """Whether the optimizer's learning rate depends on its iteration count."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return isinstance(keras_adapter.learning_rate_source(inner), keras.optimizers.schedules.LearningRateSchedule)
