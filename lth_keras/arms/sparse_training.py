"""The sparse-training arms' rounds: ``static_erk``, ``set`` and ``rigl``.

At ticket round r each trains from θ0 for a round's full iterations, at the
ticket's overall P_m with ERK layer densities (`lth_keras.pruning.erk`):
``static_erk`` keeps its random mask; ``set`` (Mocanu et al. 2018) and
``rigl`` (Evci et al. 2020) move it every ``--dst_update_frequency``
iterations until ``--dst_end`` of the round, ``--dst_drop_fraction`` of each
layer's active weights at first, decaying by cosine. They share the mask
core of the Keras callbacks (`lth_keras.pruning.dynamic`), run here inside
the compiled `lth_keras.training.Trainer` loop in chunks that end at mask
updates. The arms are declared in `lth_keras.arms.builtin`.

A round resumes exactly: masks are in the checkpoint, the schedule is a
function of the iteration, SET's random growth is seeded by (trial seed,
round, step), and RigL's gradient is taken on the batch of the update step.

Example:

```python
from lth_keras.experiment import runner as experiment

config = experiment.ExperimentConfig(model="lenet", controls=("static_erk", "set", "rigl"))
experiment.train_and_evaluate(config, "runs")
```
"""

from __future__ import annotations

import numpy as np

from lth_keras import layers
from lth_keras.pruning import drop_grow, dynamic
from lth_keras.training import schedule

__all__ = ["erk_start", "end_step", "train_dynamic", "DenseGradient"]

# The three arms draw the same mask at a round (they then differ only in how it moves).
_MASK_SEED = 300_007


def erk_start(trial, round_):
    """Round `round_`'s random ERK mask at the ticket's overall P_m, and θ0.

    The weights the experiment does not prune (``--global_exclude``) stay
    dense, as in the ticket; the others keep, in all, what the ticket keeps
    of them, at ERK densities.
    """
    ticket = trial.mask("ticket", round_)
    prunable = set(trial.prunable)
    kept = sum(int(np.count_nonzero(m)) for n, m in ticket.items() if n in prunable)
    size = sum(m.size for n, m in ticket.items() if n in prunable)
    weights = _prunable_weights(trial)
    masks = trial.ones()
    masks.update(dynamic.draw_masks(weights, kept / max(size, 1), seed=trial.seed + _MASK_SEED * (round_ + 1)))
    return masks, trial.theta0


def _prunable_weights(trial):
    prunable = set(trial.prunable)
    return [mw for mw in layers.masked_weights(trial.model) if mw.name in prunable]


def end_step(config, iterations: int) -> int:
    """The last iteration at which masks may move: ``--dst_end`` of the round."""
    return max(1, int(round(config.dst_end * iterations)))


def train_dynamic(trial, trainer, round_, *, grow: str, **train_round_kwargs):
    """`Trainer.train_round` with SET's or RigL's mask updates.

    Args:
        trial: the `lth_keras.experiment.trial_state.TrialState`.
        trainer: the runner's `Trainer`, its model at θ0 with `erk_start`'s masks.
        round_: the round.
        grow: ``"random"`` (SET) or ``"gradient"`` (RigL).
        **train_round_kwargs: as `Trainer.train_round` (start_iteration,
            round_start, curve, on_eval, stops).

    Returns:
        The learning curve, as `Trainer.train_round`.
    """
    if grow not in ("random", "gradient"):
        raise ValueError(f"`grow` must be 'random' or 'gradient', got {grow!r}.")
    c, iterations = trial.config, trainer.hp.iterations
    end, frequency = end_step(c, iterations), c.dst_update_frequency
    weights = _prunable_weights(trial)
    gradient = DenseGradient(trainer, weights) if grow == "gradient" else None

    def update(step):
        scores = gradient(step) if gradient is not None else None
        rng = np.random.default_rng([trial.seed, round_, step])
        dynamic.update(weights, trainer.optimizer, step, drop_fraction=c.dst_drop_fraction, end_step=end,
                       grow_scores=scores, rng=rng)

    def train_steps(start, n_steps):
        position, stop_at, loss_sum, correct_sum = start, start + n_steps, 0.0, 0.0
        while position < stop_at:
            stop = min(stop_at, (position // frequency + 1) * frequency)
            loss, accuracy = trainer.train_steps(position, stop - position)
            loss_sum, correct_sum = loss_sum + loss * (stop - position), correct_sum + accuracy * (stop - position)
            position = stop
            # A checkpoint at `position` is written after this update, so a resume never repeats it.
            if drop_grow.is_update_step(position, frequency, end):
                update(position)
        return loss_sum / n_steps, correct_sum / n_steps

    return schedule.train_and_measure(train_steps, trainer.evaluate, iterations, trainer.hp.eval_every,
                                      **train_round_kwargs)


class DenseGradient:
    """RigL's grow scores in the experiment: the gradient of the training loss
    with respect to each effective weight, pruned ones included, on the
    batch the trainer takes at a given iteration (unaugmented).

    The forward pass reads the kernels as stored (`lth_keras.layers.premasked`);
    the trainer keeps pruned entries at exactly 0, so that pass is the sparse
    network's and the kernel's gradient is the dense one.

    Example:

    ```python
    scores = DenseGradient(trainer, layers.masked_weights(model))(step)   # one array per weight
    ```
    """

    def __init__(self, trainer, weights):
        import tensorflow as tf

        self.trainer = trainer
        model, kernels = trainer.model, [mw.weight for mw in weights]
        self._x, self._y = trainer.data.x_train, trainer.data.y_train

        @tf.function(reduce_retracing=True)
        def gradients(x, y):
            with layers.premasked(model), tf.GradientTape() as tape:
                logits = tf.cast(model(x, training=True), tf.float32)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
            return tape.gradient(loss, kernels)

        self._gradients = gradients

    def batch(self, iteration: int):
        """The examples the trainer trains on at `iteration` (its data order)."""
        t = self.trainer
        order = np.asarray(schedule.epoch_permutation(len(self._x), t.seed, iteration // t.steps_per_epoch))
        position = (iteration % t.steps_per_epoch) * t.hp.batch_size
        idx = order[position:position + t.hp.batch_size]
        return np.asarray(self._x[idx], np.float32), np.asarray(self._y[idx], np.int32)

    def __call__(self, iteration: int) -> list[np.ndarray]:
        x, y = self.batch(iteration)
        return [np.asarray(g) for g in self._gradients(x, y)]
