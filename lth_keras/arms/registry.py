"""The arms of an IMP experiment, as a registry of small declarations.

An arm is a way to get a round's mask and starting weights from what the
trial has saved so far. Each `Arm` declares its name, that rule (`start`),
the rounds of other arms it reads (`depends`), and how figures draw it. The
runner (`lth_keras.experiment`) loops over arms and rounds and asks each arm
for its start; nothing in it is specific to one arm. Results and plots take
their list and order of arms from here or from the data.

Built-in arms:
    ticket: iterative magnitude pruning with reset to θ0, or to the weights
        at the rewind iteration (late resetting). With ``one_shot`` each
        round's mask is pruned directly from the dense-trained weights.
    reinit: the ticket's mask with a fresh random initialisation.
    random_mask: a random mask with the ticket's per-layer counts, trained
        from the ticket's reset point.
    tfmot_gradual: TFMOT's gradual magnitude pruning to the ticket's P_m
        (external: trained by ``python -m lth_keras.baselines.tfmot``).
    gradual: the same in-process, in Keras 3 (`lth_keras.gradual`): from
        θ0, dense masks pruned during training to the ticket's per-layer P_m
        at that round, on TFMOT's default schedule (see `lth_keras.gradual`).

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

The `trial` an arm's `start` receives (`lth_keras.trial_state.TrialState`)
offers: ``config``, ``seed``, ``theta0``, ``ones()``, ``mask(arm, round)``,
``trained(arm, round)``, ``reset_point()``, ``fresh_weights(seed, name=None)``,
``prune(weights, masks)``, ``masked_values(snapshot)`` and
``with_masked_values(snapshot, values)``. Masks are ``{name: array}``; weights
are `lth_keras.snapshots.WeightSnapshot`s.

This module imports neither TensorFlow nor Keras, so results and plotting
code can use it cheaply.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

__all__ = ["Arm", "register", "get", "names", "controls", "order_key", "dependencies", "ticket_same_round"]


def ticket_same_round(config, round_: int) -> list[tuple[str, int]]:
    """The dependency of most controls: the ticket's round `round_` (its mask
    and reset point)."""
    return [("ticket", round_)] + ([("ticket", 0)] if round_ else [])


def _ticket_depends(config, round_):
    if round_ == 0:
        return []
    return [("ticket", 0 if config.one_shot else round_ - 1)] + ([("ticket", 0)] if round_ > 1 else [])


def _no_start(trial, round_):  # pragma: no cover - external arms are never started here
    raise RuntimeError("an external arm is trained by its own binary")


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
            starting a round.
        first_round: the arm's first round (controls start at round 1,
            compared with the ticket's sparse rounds).
        keeps_trained_weights: its rounds also save trained_weights.npz
            (what later ticket rounds prune from, and what export loads).
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

    @property
    def external(self) -> bool:
        return self.start is None


_REGISTRY: dict[str, Arm] = {}


def register(arm: Arm, *, replace: bool = False) -> Arm:
    """Adds `arm` to the registry (in registration order) and returns it.

    Raises:
        ValueError: the name is taken (unless `replace`) or is not a plain
            directory name.
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
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown arm {name!r}; registered: {', '.join(_REGISTRY)}") from None


def names() -> tuple[str, ...]:
    """Every registered arm, in registration order (built-ins first)."""
    return tuple(_REGISTRY)


def controls() -> tuple[str, ...]:
    """The arms ``--controls`` accepts: registered, trained by the runner,
    not the ticket."""
    return tuple(n for n, a in _REGISTRY.items() if n != "ticket" and not a.external)


def dependencies(config) -> dict:
    """``{arm: round -> [(arm, round) it reads]}`` for the ticket and
    ``config.controls``: what must be redone when a saved round is damaged
    (`lth_keras.resume.rounds_to_redo`).

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


# --------------------------------------------------------------------------
# Built-in arms


def _ticket(trial, round_):
    if round_ == 0:
        return trial.ones(), trial.theta0
    if trial.config.one_shot:
        dense = trial.masked_values(trial.trained("ticket", 0))
        mask = trial.ones()
        for _ in range(round_):
            mask = trial.prune(dense, mask)
    else:
        previous = trial.masked_values(trial.trained("ticket", round_ - 1))
        mask = trial.prune(previous, trial.mask("ticket", round_ - 1))
    return mask, trial.reset_point()


def _reinit(trial, round_):
    return trial.mask("ticket", round_), trial.fresh_weights(trial.seed + 100_003 * (round_ + 1),
                                                             name=f"reinit_round_{round_}")


def _random_mask(trial, round_):
    from lth_keras import pruning

    mask = pruning.random_masks(trial.mask("ticket", round_), seed=trial.seed + 200_003 * (round_ + 1))
    return mask, trial.reset_point()


register(Arm("ticket", _ticket, _ticket_depends, first_round=0, keeps_trained_weights=True, keeps_rewind_point=True,
             label="Winning ticket", color="#1f77b4", linestyle="-", marker="o"))
register(Arm("reinit", _reinit, lambda config, round_: [("ticket", round_)],
             label="Random reinit", color="#d62728", linestyle="--", marker="s"))
register(Arm("random_mask", _random_mask,
             label="Random mask", color="#2ca02c", linestyle=":", marker="^"))
register(Arm("tfmot_gradual", None, keeps_trained_weights=True,
             label="TFMOT gradual", color="#9467bd", linestyle="-.", marker="D"))


# Pruning at initialization (`lth_keras.pai`): each method's mask at θ0 with
# the ticket's counts, and the same mask shuffled within each layer.


def _pai_start(method, shuffled):
    def start(trial, round_):
        from lth_keras.pruning import pai

        return pai.start(trial, round_, method, shuffled=shuffled)

    return start


for _method, _label, _color, _marker in (
    ("snip", "SNIP", "#ff7f0e", "v"),
    ("grasp", "GraSP", "#8c564b", "<"),
    ("synflow", "SynFlow", "#e377c2", ">"),
    ("magnitude_init", "Magnitude at init", "#17becf", "P"),
):
    register(Arm(_method, _pai_start(_method, False), label=_label, color=_color, linestyle="-", marker=_marker,
                 plotted_by_default=False))
    register(Arm(f"{_method}_shuffled", _pai_start(_method, True), label=f"{_label} (shuffled)", color=_color,
                 linestyle=(0, (1, 1)), marker=_marker, plotted_by_default=False))
del _method, _label, _color, _marker


def _gradual_start(trial, round_):
    if trial.config.rewind_iteration:
        raise ValueError("the gradual arm trains from θ0: it needs rewind_iteration=0.")
    return trial.ones(), trial.theta0


def _gradual_train(trial, trainer, round_, **train_round_kwargs):
    from lth_keras.pruning import gradual

    return gradual.train_gradual_arm(trial, trainer, round_, **train_round_kwargs)


register(Arm("gradual", _gradual_start, keeps_trained_weights=True, train=_gradual_train,
             label="Gradual (Keras 3)", color="#bcbd22", linestyle=(0, (5, 1, 1, 1)), marker="X", plotted_by_default=False))
