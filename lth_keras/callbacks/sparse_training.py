"""Sparse training from scratch inside `model.fit`: `StaticSparse`, `SET` and `RigL`.

The methods a winning ticket is measured against: they train a sparse network
without IMP's rounds. Each draws a random mask at the start of training, at
per-layer densities that keep `1 - sparsity` of the weights (ERK by default,
`lth_keras.pruning.erk`), with every pruned weight set to 0.

- `StaticSparse` keeps that mask.
- `SET` (Mocanu et al. 2018): every `update_frequency` optimizer steps until
  `end_step`, each layer drops the `f(t)` of its active weights smallest in
  magnitude and grows as many at random among its inactive ones.
- `RigL` (Evci et al. 2020): the same drop; it grows where |∂loss/∂weight|
  of the dense network, on the batch of the update step, is largest.

`f` decays by cosine from `drop_fraction` to 0 at `end_step`. Grown weights
start at 0 with their optimizer state reset; every layer keeps its number of
active weights; pruned weights stay exactly 0. One small object per method,
on one mask/schedule core (`lth_keras.pruning.dynamic`, on
`lth_keras.pruning.drop_grow`; the experiment's arms share it). They work on
masked layers and on plain models (masked in place when training starts), on
TensorFlow, JAX and PyTorch.

Example:

```python
import keras, lth_keras

model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(300, activation="relu"),
                          keras.layers.Dense(10)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
rigl = lth_keras.RigL(0.9, update_frequency=100, end_step=3000)
model.fit(x, y, epochs=5, callbacks=[rigl])
rigl.to_csv("rigl.csv")          # one row per mask update
```
"""

from __future__ import annotations

import keras
import numpy as np

from lth_keras import layers
from lth_keras.callbacks import _dense_gradient, _fit
from lth_keras.pruning import dynamic, erk, snapshots

__all__ = ["StaticSparse", "SET", "RigL"]


class StaticSparse(keras.callbacks.Callback):
    """A random sparse mask at the start of training, kept to the end.

    Args:
        sparsity: the fraction of the masked weights pruned, in [0, 1).
        distribution: ``"erk"`` (Erdős–Rényi-Kernel densities) or
            ``"uniform"`` (the same density in every layer).
        power_scale: ERK's exponent (1: ERK, 0: uniform).
        exclude: masked-weight names (or glob patterns) left dense.
        seed: the random mask's seed.
        verbose: 1 prints a line when the mask is drawn.

    Example:

    ```python
    model.fit(x, y, epochs=5, callbacks=[lth_keras.StaticSparse(0.9)])
    ```
    """

    def __init__(self, sparsity, *, distribution="erk", power_scale=1.0, exclude=None, seed=0, verbose=1):
        super().__init__()
        if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
            raise ValueError(f"`sparsity` must be a number in [0, 1), got {sparsity!r}.")
        if distribution not in erk.DISTRIBUTIONS:
            raise ValueError(f"`distribution` must be one of {erk.DISTRIBUTIONS}, got {distribution!r}.")
        self.sparsity = float(sparsity)
        self.distribution = distribution
        self.power_scale = power_scale
        self.exclude = exclude
        self.seed = int(seed)
        self.verbose = verbose
        self.rows: list[dict] = []
        self._weights = None

    def on_train_begin(self, logs=None):
        if not _fit.is_built(self.model):
            raise ValueError(_fit.NOT_BUILT.format(callback=type(self).__name__))
        snapshots.masked_weights_of(self.model, type(self).__name__)
        self._weights = layers.masked_weights(self.model, exclude=self.exclude)
        if self._drawn():
            return  # resumed: the masks of the saved model are the ones training had
        dynamic.assign_masks(self._weights, dynamic.draw_masks(
            self._weights, 1.0 - self.sparsity, distribution=self.distribution, power_scale=self.power_scale,
            seed=self.seed))
        snapshots.zero_pruned_optimizer_slots(self.model.optimizer, self.model)
        self.rows.append(self._row(self._step(), 0.0, 0))
        if self.verbose:
            _fit.say(f"{type(self).__name__}: {100 * self._density():.2f}% of {self._total()} weights kept "
                     f"({self.distribution} densities)")

    def _drawn(self):
        # A model that already holds this sparsity was drawn before (a resumed fit).
        return self.sparsity > 0 and abs(self._density() - (1.0 - self.sparsity)) < 1.0 / max(self._total(), 1) + 1e-9

    def _total(self):
        return sum(int(np.prod(mw.weight.shape)) for mw in self._weights)

    def _density(self):
        kept = sum(float(keras.ops.sum(mw.mask)) for mw in self._weights)
        return kept / max(self._total(), 1)

    def _step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _row(self, step, fraction, moved):
        density = self._density()
        return {"step": step, "drop_fraction": fraction, "moved": moved,
                "density": density, "active": int(round(density * self._total()))}

    def to_csv(self, path):
        """Writes one row per mask change (the draw, then each update)."""
        _fit.write_rows_csv(path, self.rows)


class SET(StaticSparse):
    """Sparse Evolutionary Training: drop the smallest weights, regrow at random.

    Args:
        sparsity, distribution, power_scale, exclude, seed, verbose: as `StaticSparse`.
        update_frequency: optimizer steps between mask updates.
        drop_fraction: the fraction of each layer's active weights moved at
            step 0; it decays by cosine to 0 at `end_step`.
        end_step: the last step that may update (default: the steps `fit`
            will take, when it knows them).

    Example:

    ```python
    model.fit(x, y, epochs=5, callbacks=[lth_keras.SET(0.9, update_frequency=100)])
    ```
    """

    grow_by_gradient = False

    def __init__(self, sparsity, *, distribution="erk", update_frequency=100, drop_fraction=0.3, end_step=None,
                 power_scale=1.0, exclude=None, seed=0, verbose=1):
        super().__init__(sparsity, distribution=distribution, power_scale=power_scale, exclude=exclude, seed=seed,
                         verbose=verbose)
        if isinstance(update_frequency, bool) or not isinstance(update_frequency, int) or update_frequency < 1:
            raise ValueError(f"`update_frequency` must be an integer >= 1, got {update_frequency!r}.")
        if isinstance(drop_fraction, bool) or not isinstance(drop_fraction, (int, float)) or not 0 <= drop_fraction <= 1:
            raise ValueError(f"`drop_fraction` must be a number in [0, 1], got {drop_fraction!r}.")
        if end_step is not None and (isinstance(end_step, bool) or not isinstance(end_step, int) or end_step < 1):
            raise ValueError(f"`end_step` must be an integer >= 1 or None, got {end_step!r}.")
        self.update_frequency = update_frequency
        self.drop_fraction = float(drop_fraction)
        self.end_step = end_step
        self._rng = np.random.default_rng(self.seed + 1)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.end_step is None:
            steps, epochs = (self.params or {}).get("steps"), (self.params or {}).get("epochs")
            if not steps or not epochs:
                raise ValueError(f"{type(self).__name__} needs `end_step`: fit does not know how many steps "
                                 "it will take (data of unknown length).")
            self.end_step = self._step() + int(steps) * int(epochs)
        self._last_update = self._step() // self.update_frequency

    def _due(self, step):
        return step < self.end_step and step // self.update_frequency > self._last_update

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        scores = self._grow_scores(logs)
        if not self._due(step) or (self.grow_by_gradient and scores is None):
            return  # RigL without a gradient waits: the next step computes one
        self._last_update = step // self.update_frequency
        fraction, moved = dynamic.update(self._weights, self.model.optimizer, step, drop_fraction=self.drop_fraction,
                                         end_step=self.end_step, grow_scores=scores, rng=self._rng)
        self.rows.append(self._row(step, fraction, moved))
        if self.verbose > 1:
            _fit.say(f"{type(self).__name__} step {step}: moved {moved} weights (f={fraction:.3f})")

    def _grow_scores(self, logs):
        return None


class RigL(SET):
    """Rigging the Lottery: drop the smallest weights, grow where the dense gradient is largest.

    The gradient is the dense network's, with respect to the effective
    weight, on the batch `fit` trains on at the update step (a pruned
    position has one); it is computed inside that step only. A position whose
    gradient is 0 is never grown. Arguments as `SET`.

    Example:

    ```python
    model.fit(x, y, epochs=5, callbacks=[lth_keras.RigL(0.9, update_frequency=100)])
    ```
    """

    grow_by_gradient = True

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._probe = _dense_gradient.Probe(self.model, [mw.weight for mw in self._weights],
                                            [mw.mask for mw in self._weights])

    def on_train_batch_begin(self, batch, logs=None):
        ahead = self._step() + int(getattr(self.model, "steps_per_execution", 1) or 1)
        self._probe.use(self._due(ahead))

    def on_train_end(self, logs=None):
        self._probe.close()

    def _grow_scores(self, logs):
        return _dense_gradient.pop_gradients(logs, len(self._weights))

