"""The ``gradual`` arm's training: gradual magnitude pruning inside the
compiled `lth_keras.training.Trainer` loop.

`lth_keras.pruning.gradual.GradualPruner` is the mask/schedule core (the
Keras callback `lth_keras.callbacks.GradualMagnitudePruning` uses it inside
``model.fit``); here the experiment's trainer runs it, in chunks of steps
that end at mask updates. The arm is declared in `lth_keras.arms.builtin`.

Example:

```python
from lth_keras.arms import gradual
from lth_keras.pruning.gradual import GradualPruner

pruner = GradualPruner({"dense": 0.8}, end_step=1000, frequency=100)
curve = gradual.train_gradual(trainer, pruner)     # trainer: a training.Trainer
```
"""

from __future__ import annotations

import numpy as np

from lth_keras.pruning import sparsity
from lth_keras.pruning.gradual import GradualPruner
from lth_keras.training import schedule

__all__ = ["train_gradual", "train_gradual_arm"]


def train_gradual(trainer, pruner: GradualPruner, *, start_iteration=None, round_start=0, curve=None,
                  on_eval=None, stops=None, on_update=None):
    """`Trainer.train_round` with gradual pruning: trains in chunks that end
    at mask updates, updating masks (and zeroing the pruned weights'
    optimizer slots) between them. Resuming mid-round is exact: the masks
    are in the checkpoint and the schedule is a function of the iteration.

    Args:
        trainer: the `lth_keras.training.Trainer` of a masked model.
        pruner: the schedule and targets; bound to ``trainer.model`` here.
        start_iteration, round_start, curve, on_eval, stops: as
            `Trainer.train_round`.
        on_update: called with each mask update's record
            (`GradualPruner.update`).

    Returns:
        The learning curve, as `Trainer.train_round`.
    """
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
    ``gradual_end`` and ``gradual_frequency`` (by default the TFMOT
    baseline's schedule), in its N:M ``pattern`` if it has one.

    Args:
        trial: the `lth_keras.experiment.trial_state.TrialState`.
        trainer: the runner's `Trainer`, its model at θ0 with dense masks.
        round_: the round; the ticket's round `round_` must be finished.
        **train_round_kwargs: passed to `train_gradual`.
    """
    ticket = trial.mask("ticket", round_)
    final = {name: 1.0 - float(np.count_nonzero(m)) / m.size for name, m in ticket.items()}
    c = trial.config
    steps = sparsity.schedule_steps(trainer.hp.iterations, c.gradual_begin, c.gradual_end, c.gradual_frequency)
    pruner = GradualPruner(final, pattern=c.pattern, **steps)
    return train_gradual(trainer, pruner, **train_round_kwargs)
