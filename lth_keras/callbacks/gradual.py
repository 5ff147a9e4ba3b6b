"""Gradual magnitude pruning inside `model.fit`: `GradualMagnitudePruning`.

The schedule and the mask updates are `lth_keras.pruning.gradual`'s
`GradualPruner`; this callback runs it at the optimizer's steps.

Example:

```python
gmp = lth_keras.GradualMagnitudePruning(0.8, begin_step=0, end_step=1000, frequency=100)
model.fit(x, y, epochs=5, callbacks=[gmp])
gmp.updates[-1]["sparsity"]     # 0.8 (within a weight per layer)
```
"""

from __future__ import annotations

import keras

from lth_keras.callbacks import _fit
from lth_keras.pruning import gradual
from lth_keras.pruning import snapshots

__all__ = ["GradualMagnitudePruning"]


class GradualMagnitudePruning(keras.callbacks.Callback):
    """Gradual magnitude pruning (Zhu & Gupta 2017) inside `model.fit`:
    TFMOT's ``prune_low_magnitude`` + ``PolynomialDecay`` for Keras 3.

    Sparsity rises from `initial_sparsity` at `begin_step` to
    `final_sparsity` at `end_step` as ``final + (initial - final) * (1 -
    p) ** power``; masks are updated after every `frequency`-th optimizer
    step in that range, each layer keeping its ``total - round(s * total)``
    largest surviving weights. Pruned weights, and their optimizer slots,
    are set to exactly zero, so they stay zero (nothing regrows).

    Steps are the optimizer's iteration count, so the schedule is exact with
    any `steps_per_execution` (an update that falls inside an execution is
    applied, with that update step's target, when the execution ends) and
    continues where it was after the model is saved and reloaded: masks are
    variables saved in ``.keras`` files (load a model masked in place with
    `lth_keras.load_model`), and the step is the reloaded optimizer's. Works
    on any built model, plain ones masked in place when training starts
    (`lth_keras.add_masks`), on TensorFlow, JAX and PyTorch.

    Args:
        final_sparsity: a float, a dict by kind (``"dense"``, ``"conv"``,
            ``"embedding"``, ...) or by layer name (layers not given are not
            pruned), or with ``scope="global"`` a float for all chosen
            layers together. With a `pattern`, defaults to ``1 - N/M``.
        initial_sparsity, begin_step, end_step, power, frequency: TFMOT's
            ``PolynomialDecay`` arguments (``end_step=-1``: never stop).
        scope: ``"layerwise"`` or ``"global"``.
        include, exclude: masked-layer names or fnmatch patterns to prune or
            leave alone, as in `IterativeMagnitudePruning`.
        output_layer: a layer that ends at half of a float `final_sparsity`
            (None: all alike, as TFMOT).
        pattern: ``"N:M"`` structured sparsity, e.g. ``"2:4"``: in every
            group of M consecutive weights along a kernel's input dimension
            at most N survive once the sparsity reaches ``1 - N/M`` (the cap;
            more is refused). See `lth_keras.pruning.patterns` for the axes.
        verbose: print a line per mask update.

    Attributes:
        updates: one dict per mask update: step (when the callback applied
            it), update_step (the schedule's step), target_sparsity,
            sparsity, remaining, total, sparsity_per_layer, target_per_layer.

    Example:

    ```python
    model = lth_keras.make_prunable(keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10))
    model.compile("adam", "sparse_categorical_crossentropy")
    gmp = lth_keras.GradualMagnitudePruning(0.8, begin_step=0, end_step=1000, frequency=100)
    model.fit(x, y, epochs=5, callbacks=[gmp])
    gmp.updates[-1]["sparsity"]     # 0.8 (within a weight per layer)
    gmp.to_csv("sparsity.csv")
    ```
    """

    def __init__(self, final_sparsity=None, *, initial_sparsity=0.0, begin_step=0, end_step=None, power=3,
                 frequency=100, scope="layerwise", include=None, exclude=None, output_layer=None, pattern=None,
                 verbose=0):
        super().__init__()
        self.pruner = gradual.GradualPruner(
            final_sparsity, initial_sparsity=initial_sparsity, begin_step=begin_step, end_step=end_step,
            power=power, frequency=frequency, scope=scope, include=include, exclude=exclude,
            output_layer=output_layer, pattern=pattern)
        self.verbose = verbose
        self.updates: list[dict] = []
        self._last = None

    def _step(self):
        gradual.sync_state(self.model)
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _apply(self, update_step, seen_at):
        record = self.pruner.update(self.model, update_step, self.model.optimizer, seen_at=seen_at)
        self._last = update_step
        self.updates.append(record)
        if self.verbose:
            _fit.say(f"GradualMagnitudePruning step {seen_at}: sparsity {100 * record['sparsity']:.2f}% "
                 f"(target {100 * record['target_sparsity']:.2f}%)")

    def on_train_begin(self, logs=None):
        if not _fit.is_built(self.model):
            raise ValueError(_fit.NOT_BUILT.format(callback="GradualMagnitudePruning"))
        snapshots.masked_weights_of(self.model, "GradualMagnitudePruning")
        self.pruner.bind(self.model)
        step = self._step()
        # After a reload mid-schedule the masks are the saved ones; re-applying
        # the last update is a no-op then, and completes it otherwise.
        last = self.pruner.last_update_step(step)
        self._last = None
        if last is not None:
            self._apply(last, step)

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        last = self.pruner.last_update_step(step)
        if last is not None and (self._last is None or last > self._last):
            self._apply(last, step)

    def rows(self) -> list[dict]:
        """`updates` as flat rows (step, update_step, target_sparsity,
        sparsity, remaining, total, sparsity/<layer>, target/<layer>),
        loadable with pandas."""
        rows = []
        for record in self.updates:
            row = {k: record[k] for k in ("step", "update_step", "target_sparsity", "sparsity", "remaining", "total")}
            row.update({f"sparsity/{n}": v for n, v in record["sparsity_per_layer"].items()})
            row.update({f"target/{n}": v for n, v in record["target_per_layer"].items()})
            rows.append(row)
        return rows

    def to_csv(self, path: str) -> None:
        """Writes `rows()` as CSV (atomically)."""
        _fit.write_rows_csv(path, self.rows())
