"""The lottery-ticket callback: IMP with reset inside `model.fit`.

The Keras plumbing it shares with the experiment runner (weight snapshots,
optimizer reset, pruning a model's masks) lives in `lth_keras.snapshots`;
its names are re-exported here.

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

from lth_keras import layers as masked
from lth_keras import pruning
from lth_keras.snapshots import (  # noqa: F401 - re-exported, documented here before
    WeightSnapshot,
    default_output_layer,
    prune_model,
    reset_optimizer_state,
)

__all__ = [
    "IterativeMagnitudePruning",
    "WeightSnapshot",
    "prune_model",
    "reset_optimizer_state",
    "default_output_layer",
]


# --------------------------------------------------------------------------
# The callback.


class IterativeMagnitudePruning(keras.callbacks.Callback):
    """Iterative magnitude pruning with reset, inside `model.fit`.

    Training is split into rounds of `round_epochs` epochs (or `round_steps`
    optimizer steps). At the end of every round but the last the callback:

    1. prunes the surviving weights by magnitude (layerwise, or globally),
    2. resets the survivors to the reset point and zeroes the pruned ones,
    3. resets the optimizer state (moments, momentum, iteration count, so
       learning-rate schedules restart).

    The reset point is θ0, the weights when training begins, or with
    `rewind_iteration=k` the weights after k steps of the first round ("late
    resetting"/rewinding). Masks are never touched by a reset. Batch-norm
    moving statistics are reset with the weights (they belong to the reset
    point). Masks that are already sparse when training starts are honoured:
    their pruned weights are zeroed first and pruning continues from them.

    Run ``model.fit(..., epochs=R * round_epochs)`` for R rounds; the number
    of rounds is read from the fit's length.

    Args:
        rates: pruning rate(s). Layerwise: a float (the output layer gets
            half), or a dict by kind (``"dense"``, ``"conv"``,
            ``"output"``) or by layer name. Global: a float.
        round_epochs: epochs per round.
        round_steps: optimizer steps per round (instead of `round_epochs`).
        scope: ``"layerwise"`` (LeNet, Conv-2/4/6) or ``"global"``
            (VGG-19, ResNet-18).
        include: masked layer names/patterns to prune (default: all).
        exclude: masked layer names/patterns never pruned.
        output_layer: which layer gets the output rate; ``"auto"`` is the
            last masked layer when it is dense.
        rewind_iteration: reset to the weights at this step of round 1
            (0 = θ0); the paper's "rewind iteration".
        rewind_step: deprecated name of `rewind_iteration`.
        reset_optimizer: reset the optimizer state every round (default).
        verbose: 1 prints one line per round.

    Attributes:
        rounds: one dict per finished round: ``round`` (0 = dense), ``pm``
            (P_m in percent during that round), ``pm_per_layer``,
            ``remaining``, ``total``, ``steps`` and ``logs`` (the round's
            final logs).

    Example:

    ```python
    imp = IterativeMagnitudePruning(rates={"dense": 0.2}, round_steps=500,
                                    rewind_iteration=100)
    model.fit(dataset.repeat(), steps_per_epoch=500, epochs=10,
              callbacks=[imp])
    ```
    """

    def __init__(
        self,
        rates=0.2,
        *,
        round_epochs: int | None = None,
        round_steps: int | None = None,
        scope: str = "layerwise",
        include=None,
        exclude=None,
        output_layer="auto",
        rewind_iteration: int = 0,
        reset_optimizer: bool = True,
        verbose: int = 1,
        rewind_step: int | None = None,
    ):
        super().__init__()
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
        for name, value in (("round_epochs", round_epochs), ("round_steps", round_steps)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if scope not in ("layerwise", "global"):
            raise ValueError(f"`scope` must be 'layerwise' or 'global', got {scope!r}.")
        if scope == "global":
            pruning.validate_rate(rates, "rates")
        elif not isinstance(rates, dict):
            pruning.validate_rate(rates, "rates")
        if not isinstance(rewind_iteration, int) or rewind_iteration < 0:
            raise ValueError(f"`{self._rewind_arg}` must be an integer >= 0, got {rewind_iteration!r}.")
        if round_steps is not None and rewind_iteration >= round_steps:
            raise ValueError(
                f"`{self._rewind_arg}` ({rewind_iteration}) must be smaller than `round_steps` ({round_steps})."
            )
        self.rates = rates
        self.round_epochs = round_epochs
        self.round_steps = round_steps
        self.scope = scope
        self.include = include
        self.exclude = exclude
        self.output_layer = output_layer
        self.rewind_iteration = rewind_iteration
        self.reset_optimizer = reset_optimizer
        self.verbose = verbose
        self.rounds: list[dict] = []
        self.reset_point: WeightSnapshot | None = None

    @property
    def rewind_step(self) -> int:
        """Deprecated name of `rewind_iteration`."""
        return self.rewind_iteration

    # -- bookkeeping -------------------------------------------------------

    def _total_rounds(self):
        epochs = self.params.get("epochs")
        if self.round_epochs is not None:
            if epochs is not None and epochs % self.round_epochs:
                raise ValueError(
                    f"fit's epochs ({epochs}) is not a multiple of round_epochs "
                    f"({self.round_epochs})."
                )
            return None if epochs is None else epochs // self.round_epochs
        steps = self.params.get("steps")
        if epochs is None or steps is None:
            return None
        return (epochs * steps) // self.round_steps

    def _check_steps_per_execution(self):
        spe = int(getattr(self.model, "steps_per_execution", 1) or 1)
        for name, value in (("round_steps", self.round_steps), (self._rewind_arg, self.rewind_iteration)):
            if value and value % spe:
                raise ValueError(
                    f"`{name}` ({value}) must be a multiple of the model's "
                    f"steps_per_execution ({spe}): the callback only sees "
                    "every steps_per_execution-th step."
                )

    def _check_rates(self):
        """Bad layer names or rates fail now, not after a round of training."""
        chosen = masked.masked_weights(self.model, include=self.include, exclude=self.exclude)
        if self.scope == "layerwise":
            output = self.output_layer
            if output == "auto":
                output = default_output_layer(self.model)
            pruning.resolve_rates(self.rates, {mw.name: mw.kind for mw in masked.masked_weights(self.model)}, output=output)
        if not chosen:
            raise ValueError("`include`/`exclude` leave no masked layer to prune.")

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
        if not masked.masked_weights(self.model):
            raise ValueError(
                "IterativeMagnitudePruning found no MaskedLayer in the model: "
                "build it from lth_keras.MaskedDense/MaskedConv2D or your own "
                "MaskedLayer subclass."
            )
        self._check_steps_per_execution()
        self._check_rates()
        self._rounds_total = self._total_rounds()
        self.rounds = []
        self._round_step = 0
        self._batch_begin = 0
        self._round_closed = False
        # Pre-pruned masks: pruned weights must be exactly zero from the start.
        masked.apply_masks_to_weights(self.model)
        self.reset_point = WeightSnapshot.take(self.model) if self.rewind_iteration == 0 else None

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_begin = batch

    def on_train_batch_end(self, batch, logs=None):
        self._round_step += batch - self._batch_begin + 1
        self._round_closed = False
        if self.reset_point is None and self._round_step >= self.rewind_iteration:
            self.reset_point = WeightSnapshot.take(self.model)
        if self.round_steps is not None and self._round_step >= self.round_steps:
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
        # A fit that stops early (or whose length was unknown) still records
        # the round it was in.
        if not self._round_closed and self._round_step > 0:
            self._record(logs)

    def _end_round(self, logs):
        entry = self._record(logs)
        self._round_step = 0
        self._round_closed = True
        if self._rounds_total is not None and len(self.rounds) >= self._rounds_total:
            if self.verbose:
                _say(f"IMP round {entry['round']}: P_m {entry['pm']:.1f}% (final round)")
            return
        prune_model(
            self.model,
            self.rates,
            scope=self.scope,
            include=self.include,
            exclude=self.exclude,
            output_layer=self.output_layer,
        )
        self.reset_point.restore(self.model)
        if self.reset_optimizer:
            reset_optimizer_state(self.model.optimizer)
        if self.verbose:
            next_pm = 100.0 * masked.fraction_remaining(self.model)
            _say(
                f"IMP round {entry['round']}: P_m {entry['pm']:.1f}% -> pruned to "
                f"{next_pm:.1f}%, reset to "
                + ("θ0" if self.rewind_iteration == 0 else f"iteration {self.rewind_iteration}")
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


def _to_float(value):
    try:
        value = float(np.asarray(value))
    except (TypeError, ValueError):
        return value
    return value if math.isfinite(value) else float("nan")


def _say(message):
    print(message, flush=True)
