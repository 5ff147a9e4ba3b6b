"""A trial's saved state, as the arms (`lth_keras.arms`) read it.

`TrialState` is what an arm's ``start(trial, round_)`` receives: θ0, the
masks and trained weights of finished rounds, the reset point (θ0 or the
weights at the rewind iteration), fresh initialisations, the trial's
pruning rule, and the dataset the runner trains on. It also holds a round's
mid-training checkpoint (state.npz).

With several workers only the chief reads files; on the others every read
returns a placeholder of the right shape (θ0, the model's current masks),
and the runner then copies the chief's masks and weights to every worker.

Example:

```python
state = TrialState(config, exp_dir, trial=0, model=model, seed=0, data=data)
mask, start = lth_keras.arms.get("ticket").start(state, 2)
```
"""

from __future__ import annotations

import json

import numpy as np

from lth_keras import layers, models, pruning
from lth_keras.storage import resume
from lth_keras.storage import errors, files
from lth_keras.pruning import patterns
from lth_keras.pruning.snapshots import WeightSnapshot, default_output_layer

__all__ = ["TrialState", "save_checkpoint", "load_checkpoint", "checkpoint_iteration"]


class TrialState:
    """The saved state of one trial (see the module doc).

    Args:
        config: the resolved `lth_keras.experiment.ExperimentConfig`.
        exp_dir: the `lth_keras.storage.experiment_dir.ExperimentDir`.
        trial: the trial index.
        model: the trial's model, freshly built (its weights are θ0).
        seed: the trial's seed.
        data: the `lth_keras.datasets.Dataset` the runner trains on (what
            arms that score on examples read, e.g. SNIP and GraSP); its
            input shape and classes size fresh models.
        input_shape, num_classes: for fresh models, without `data`.
        strategy: builds fresh models in its scope.
        chief: False on non-chief workers: reads return placeholders.
    """

    def __init__(self, config, exp_dir, trial, model, seed, *, data=None, input_shape=None, num_classes=None,
                 strategy=None, chief=True):
        self.config, self.exp_dir, self.trial, self.model, self.seed = config, exp_dir, trial, model, seed
        self.data = data
        if data is not None:
            input_shape = input_shape or data.input_shape
            num_classes = num_classes or data.num_classes
        self.input_shape = input_shape or model.input_shape[1:]
        self.num_classes = num_classes or 10
        self.strategy, self.chief = strategy, chief
        self.theta0 = WeightSnapshot.take(model)
        if chief:
            # One draw of θ0 for the trial's whole life, whatever the TF/Keras
            # version of a later process (saved under trial_<t>/init/).
            self.theta0 = resume.saved_snapshot(
                exp_dir, trial, "theta0", self.theta0,
                fallback=exp_dir.reset_weights_path(trial, "ticket", 0))
        self.kinds = {mw.name: mw.kind for mw in layers.masked_weights(model)}
        self.output = default_output_layer(model)
        self.prunable = prunable_layers(config, model)

    # -- reads -------------------------------------------------------------

    def ones(self) -> dict[str, np.ndarray]:
        """Dense masks: every weight kept."""
        return {n: np.ones(v.shape, np.float32) for n, v in self.masked_values(self.theta0).items()}

    def mask(self, arm: str, round_: int) -> dict[str, np.ndarray]:
        """The masks of a finished round."""
        if not self.chief:
            return layers.get_masks(self.model)
        return self.exp_dir.read_mask(self.trial, arm, round_)

    def trained(self, arm: str, round_: int) -> WeightSnapshot:
        """The trained weights of a finished round (of an arm that keeps them)."""
        return self._snapshot(self.exp_dir.trained_weights_path(self.trial, arm, round_))

    def rewind_path(self) -> str:
        """Where round 0 of the ticket saves the weights at the rewind iteration."""
        return self.exp_dir.rewind_weights_path(self.trial, "ticket", 0)

    def reset_point(self) -> WeightSnapshot:
        """θ0, or the weights at the rewind iteration (saved in round 0)."""
        if self.config.rewind_iteration == 0:
            return self.theta0
        return self._snapshot(self.rewind_path())

    def _snapshot(self, path):
        if not self.chief:
            return self.theta0
        with np.load(path) as f:
            return WeightSnapshot.from_arrays(dict(f))

    # -- building blocks ---------------------------------------------------

    def snapshot(self) -> WeightSnapshot:
        """The model's current weights."""
        return WeightSnapshot.take(self.model)

    def fresh_weights(self, seed: int, name: str | None = None) -> WeightSnapshot:
        """A new random initialisation of the trial's model; with `name`,
        drawn once and saved as ``trial_<t>/init/<name>.npz``, then read back."""
        import contextlib

        scope = self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()
        with scope:
            fresh = models.build(self.config.model, self.input_shape, self.num_classes,
                                 dropout=self.config.dropout, seed=seed)
        snapshot = WeightSnapshot.take(fresh)
        if name is None or not self.chief:
            return snapshot
        return resume.saved_snapshot(self.exp_dir, self.trial, name, snapshot)

    def prune(self, weights, masks) -> dict[str, np.ndarray]:
        """One round of the experiment's pruning (rates, scope, output layer,
        exclusions, N:M pattern) applied to `weights` within `masks`.

        With ``--pattern``, the same number of weights per layer (or,
        global, in all) go as without it, chosen among those the pattern
        lets go: `lth_keras.pruning.patterns.pattern_masks`, as
        `lth_keras.callbacks.prune_model` does on a model.

        Raises:
            ValueError: a round past the pattern's cap ``1 - N/M``.
        """
        c = self.config
        new = pruning.prune(weights, masks, prune_rates(c, self.kinds), kinds=self.kinds, scope=c.pruning,
                            output=self.output, include=self.prunable)
        if not c.pattern:
            return new
        return patterns.pattern_masks(weights, masks, new, c.pattern, self.pattern_axes, scope=c.pruning,
                                      include=self.pattern_layers)

    @property
    def pattern_layers(self) -> list[str]:
        """The masked weights that ``--pattern`` applies to."""
        return pattern_layers(self.config, self.model)

    @property
    def pattern_axes(self) -> dict[str, int]:
        return {mw.name: patterns.pattern_axis(mw) for mw in layers.masked_weights(self.model)}

    def masked_values(self, snapshot: WeightSnapshot) -> dict[str, np.ndarray]:
        """A snapshot's masked weights (kernels), by masked-weight name."""
        return snapshot.masked_values(self.model)

    def with_masked_values(self, snapshot: WeightSnapshot, values: dict) -> WeightSnapshot:
        """A copy of `snapshot` with some masked weights replaced by name."""
        index = {id(v): i for i, v in enumerate(WeightSnapshot._variables(self.model))}
        new = list(snapshot.values)
        for mw in layers.masked_weights(self.model):
            if mw.name in values:
                new[index[id(mw.weight)]] = np.asarray(values[mw.name], new[index[id(mw.weight)]].dtype)
        return WeightSnapshot(new, snapshot.paths)


# --------------------------------------------------------------------------
# Mid-round checkpoints


def save_checkpoint(path: str, trainer, curve: list, iteration: int, elapsed: float) -> None:
    """Writes the trainer's state and the curve so far (atomically)."""
    arrays = trainer.state_arrays()
    arrays["meta"] = np.array(json.dumps({"curve": curve, "iteration": iteration, "elapsed": elapsed}))
    files.atomic_write_npz(path, arrays)


def load_checkpoint(path: str, trainer) -> tuple[list, int, float]:
    """Restores `save_checkpoint`'s state into `trainer`; returns
    ``(curve, iteration, elapsed seconds)``."""
    with np.load(path) as f:
        arrays = dict(f)
    meta = json.loads(str(arrays.pop("meta")))
    trainer.load_state_arrays(arrays)
    return meta["curve"], meta["iteration"], meta["elapsed"]


def checkpoint_iteration(path: str) -> int:
    """The iteration `save_checkpoint` saved at, read without the weights.

    Raises:
        lth_keras.storage.errors.CorruptResultError: an unreadable file.
    """
    try:
        with np.load(path) as f:
            return int(json.loads(str(f["meta"]))["iteration"])
    except Exception as e:  # noqa: BLE001 - any failure to parse is a damaged file
        raise errors.CorruptResultError(path, f"unreadable checkpoint ({type(e).__name__}: {e})") from None


def prune_rates(config, kinds):
    """The rates one round of the experiment prunes at: global, one rate
    (``prune_rate_conv`` for a model with conv layers, else
    ``prune_rate_dense``); layerwise, by kind."""
    if config.pruning == "global":
        return config.prune_rate_conv if any(k == "conv" for k in kinds.values()) else config.prune_rate_dense
    return {"dense": config.prune_rate_dense, "conv": config.prune_rate_conv, "output": config.prune_rate_output}


def check_pattern(config, model) -> None:
    """Refuses, before anything is written, a ``--pattern`` that the
    experiment's rounds would break: a layer whose input dimension is not
    a multiple of M, or rounds that prune past the cap 1 - N/M (ValueError)."""
    kinds = {mw.name: mw.kind for mw in layers.masked_weights(model)}
    patterns.check_rounds_fit_pattern(model, prune_rates(config, kinds), config.rounds, config.pattern,
                                      scope=config.pruning, include=pattern_layers(config, model),
                                      output=default_output_layer(model))


def prunable_layers(config, model) -> list[str]:
    """The masked weights the experiment prunes (global pruning leaves out
    ``--global_exclude``)."""
    exclude = config.global_exclude if config.pruning == "global" else None
    return [mw.name for mw in layers.masked_weights(model, exclude=exclude or None)]


def pattern_layers(config, model) -> list[str]:
    """The prunable masked weights that ``--pattern`` applies to: all but
    ``--pattern_exclude``."""
    skipped = {mw.name for mw in layers.masked_weights(model, include=config.pattern_exclude)} \
        if config.pattern_exclude else set()
    return [n for n in prunable_layers(config, model) if n not in skipped]
