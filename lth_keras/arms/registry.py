"""The registry of arms: small declarations the runner loops over.

An arm is a way to get a round's mask and starting weights from what the
trial has saved so far. Each `Arm` declares its name, that rule (`start`),
the rounds of other arms it reads (`depends`), which files its rounds keep,
and how figures draw it. The runner (`lth_keras.experiment.runner`) loops
over arms and rounds and asks each arm for its start; nothing in it is
specific to one arm. Resuming (`lth_keras.experiment.resume`) takes what a
round depends on and which files it must keep from here, and results and
plots their list and order of arms. The built-in arms are declared in
`lth_keras.arms.builtin`, registered whenever `lth_keras.arms` is imported.

A user arm is registered from Python, without editing the package, and then
named in ``--controls`` (or `ExperimentConfig.controls`) like a built-in one.
Example: the ticket's mask with its reset weights' signs shuffled.

```python
import numpy as np
from lth_keras import arms
from lth_keras.experiment import runner as experiment

def shuffled_signs(trial, round_):
    start = trial.reset_point()
    rng = np.random.default_rng(trial.seed + round_)
    flipped = {name: w * rng.choice([-1.0, 1.0], size=w.shape).astype(w.dtype)
               for name, w in trial.masked_values(start).items()}
    return trial.mask("ticket", round_), trial.with_masked_values(start, flipped)

arms.register(arms.Arm("shuffled_signs", shuffled_signs, depends=arms.ticket_same_round))
config = experiment.ExperimentConfig(model="lenet", controls=("shuffled_signs",))
experiment.train_and_evaluate(config, "runs")
```

The `trial` an arm's `start` receives
(`lth_keras.experiment.trial_state.TrialState`) offers: ``config``,
``seed``, ``data`` (the dataset the runner trains on), ``theta0``,
``ones()``, ``mask(arm, round)``, ``trained(arm, round)``,
``reset_point()``, ``fresh_weights(seed, name=None)``,
``prune(weights, masks)``, ``masked_values(snapshot)`` and
``with_masked_values(snapshot, values)``. Masks are ``{name: array}``;
weights are `lth_keras.pruning.snapshots.WeightSnapshot`s.

This module imports neither TensorFlow nor Keras, so results and plotting
code can use it cheaply.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

__all__ = ["Arm", "register", "get", "names", "controls", "order_key", "dependencies", "ticket_same_round"]


def ticket_same_round(config, round_: int) -> list[tuple[str, int]]:
    """The dependency of most controls: the ticket's round `round_` (its mask)
    and, after round 0, its round 0 (the reset point: θ0 or the weights at
    the rewind iteration).

    Example:
        >>> ticket_same_round(None, 2)
        [('ticket', 2), ('ticket', 0)]
    """
    return [("ticket", round_)] + ([("ticket", 0)] if round_ else [])


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm: a name, how a round of it starts, and what it reads.

    Args:
        name: the arm's directory name under ``trial_<t>/`` and its value in
            summary.csv's ``arm`` column.
        start: ``start(trial, round_) -> (masks, weights)``: the round's
            masks (``{name: array}``) and starting `WeightSnapshot`, from the
            trial's saved state (see the module doc). None for an external
            arm, which another binary trains.
        depends: ``depends(config, round_) -> [(arm, round), ...]``: the
            finished rounds `start` reads. The runner checks them before
            starting a round, and a resume redoes a round when one of them
            is damaged.
        first_round: the arm's first round (controls start at round 1,
            compared with the ticket's sparse rounds).
        keeps_trained_weights: its rounds also save trained_weights.npz
            (what later ticket rounds prune from, and what export loads); a
            resume redoes a round that lost it.
        keeps_rewind_point: its round 0 saves the weights at the rewind
            iteration (rewind_weights.npz), every arm's reset point.
        label, color, linestyle, marker: how figures draw it; None gives a
            deterministic style derived from the name.
        plotted_by_default: figures draw it (and report it missing) even
            when the data lack it; False: only when an experiment ran it.
        train: None to train the round with the runner's `Trainer`; or
            ``train(trial, trainer, round_, **train_round_kwargs) -> curve``
            for an arm that changes its masks while it trains (its saved
            mask and P_m are then the final ones).
        rewinds: its rounds after round 0 start at the rewind iteration k,
            with the schedule and data order at k, for T - k steps (as the
            ticket's); False: every round trains all T steps from 0.
        final_learning_rate: its rounds after round 0 train at the
            schedule's final learning rate (fine-tuning), not from the
            schedule's start.

    Example:
        >>> arm = Arm("my_control", lambda trial, round_: (trial.ones(), trial.theta0))
        >>> arm.depends(None, 1), arm.first_round, arm.external
        ([('ticket', 1), ('ticket', 0)], 1, False)
    """

    name: str
    start: Optional[Callable] = None
    depends: Callable = ticket_same_round
    first_round: int = 1
    keeps_trained_weights: bool = False
    keeps_rewind_point: bool = False
    label: Optional[str] = None
    color: Optional[str] = None
    linestyle: object = None
    marker: Optional[str] = None
    plotted_by_default: bool = True
    train: Optional[Callable] = None
    rewinds: bool = True
    final_learning_rate: bool = False

    @property
    def external(self) -> bool:
        return self.start is None


_REGISTRY: dict[str, Arm] = {}


def register(arm: Arm, *, replace: bool = False) -> Arm:
    """Adds `arm` to the registry (in registration order) and returns it.

    Raises:
        ValueError: the name is taken (unless `replace`) or is not a plain
            directory name.

    Example:
        >>> register(Arm("reinit", None))
        Traceback (most recent call last):
        ...
        ValueError: arm 'reinit' is already registered; pass replace=True to redefine it.
    """
    name = arm.name
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"arm name must be a plain directory name, got {name!r}.")
    if name in _REGISTRY and not replace:
        raise ValueError(f"arm {name!r} is already registered; pass replace=True to redefine it.")
    _REGISTRY[name] = arm
    return arm


def get(name: str) -> Arm:
    """The registered arm `name`.

    Raises:
        KeyError: naming the registered arms.

    Example:
        >>> get("ticket").keeps_trained_weights
        True
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown arm {name!r}; registered: {', '.join(_REGISTRY)}") from None


def names() -> tuple[str, ...]:
    """Every registered arm, in registration order (built-ins first).

    Example:
        >>> names()[:3]
        ('ticket', 'reinit', 'random_mask')
    """
    return tuple(_REGISTRY)


def controls() -> tuple[str, ...]:
    """The arms ``--controls`` accepts: registered, trained by the runner,
    not the ticket.

    Example:
        >>> "tfmot_gradual" in controls(), "reinit" in controls()
        (False, True)
    """
    return tuple(n for n, a in _REGISTRY.items() if n != "ticket" and not a.external)


def dependencies(config) -> dict:
    """``{arm: round -> [(arm, round) it reads]}`` for the ticket and
    ``config.controls``: what must be redone when a saved round is damaged
    (`lth_keras.experiment.resume.rounds_to_redo`). The one table of what a
    round depends on: each arm's own `Arm.depends`.

    Example:
        >>> import types
        >>> deps = dependencies(types.SimpleNamespace(controls=("reinit",), one_shot=False))
        >>> deps["ticket"](2), deps["reinit"](2)
        ([('ticket', 1), ('ticket', 0)], [('ticket', 2)])
    """
    return {name: (lambda r, arm=get(name): list(arm.depends(config, r)))
            for name in ("ticket",) + tuple(config.controls)}


def order_key(arm: str) -> tuple[int, str]:
    """Sort key: the arms the runner trains, in registration order, then the
    others (external or unknown) by name.

    Example:
        >>> sorted(["zeta", "tfmot_gradual", "random_mask", "ticket", "alpha"], key=order_key)
        ['ticket', 'random_mask', 'alpha', 'tfmot_gradual', 'zeta']
    """
    trained = [n for n, a in _REGISTRY.items() if not a.external]
    return (trained.index(arm), "") if arm in trained else (len(trained), arm)
