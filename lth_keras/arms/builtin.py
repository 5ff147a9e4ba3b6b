"""The built-in arms, registered when `lth_keras.arms` is imported.

    ticket: iterative magnitude pruning with reset to θ0, or to the weights
        at the rewind iteration (late resetting). With ``one_shot`` each
        round's mask is pruned directly from the dense-trained weights.
    reinit: the ticket's mask with a fresh random initialisation.
    random_mask: a random mask with the ticket's per-layer counts, trained
        from the ticket's reset point.
    tfmot_gradual: TFMOT's gradual magnitude pruning to the ticket's P_m
        (external: trained by ``python -m lth_keras.baselines.tfmot``).
    snip, grasp, synflow, magnitude_init and each one's ``_shuffled``:
        pruning at initialization (`lth_keras.pruning.pai`), a mask at the
        ticket's reset point with the ticket's counts.
    gradual: gradual magnitude pruning in-process, in Keras 3
        (`lth_keras.arms.gradual`): from θ0, dense masks pruned during
        training to the ticket's per-layer P_m at that round.
    lr_rewind, finetune: their own chain of rounds (Renda et al. 2020):
        each prunes its previous round's trained weights (round 1: the
        ticket's round 0) and keeps them; lr_rewind replays the learning-rate
        schedule from the rewind iteration, finetune trains at its final rate.
    static_erk, set, rigl: sparse training from θ0 for a round's full
        iterations at the ticket's P_m with ERK densities
        (`lth_keras.arms.sparse_training`): a fixed random mask, SET's
        random regrowth, RigL's gradient regrowth.

Each arm reads the trial through `lth_keras.experiment.trial_state.TrialState`
(see `lth_keras.arms.registry`). This module imports neither TensorFlow nor
Keras: the arms that need them import them when they start a round.

Example:
    >>> from lth_keras import arms
    >>> arms.get("reinit").depends(None, 2)
    [('ticket', 2)]
"""

from __future__ import annotations

from lth_keras.arms import registry
from lth_keras.arms.registry import Arm, register

__all__ = []  # the arms are reached through `lth_keras.arms.get`


# --------------------------------------------------------------------------
# The ticket and the paper's controls


def _ticket_depends(config, round_):
    # Round r prunes round r-1's trained weights (round 0's, one-shot) and
    # resets to round 0's reset point.
    if round_ == 0:
        return []
    return [("ticket", 0 if config.one_shot else round_ - 1)] + ([("ticket", 0)] if round_ > 1 else [])


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
    from lth_keras.pruning import magnitude

    mask = magnitude.random_masks(trial.mask("ticket", round_), seed=trial.seed + 200_003 * (round_ + 1))
    return mask, trial.reset_point()


register(Arm("ticket", _ticket, _ticket_depends, first_round=0, keeps_trained_weights=True, keeps_rewind_point=True,
             label="Winning ticket", color="#1f77b4", linestyle="-", marker="o"))
register(Arm("reinit", _reinit, lambda config, round_: [("ticket", round_)],
             label="Random reinit", color="#d62728", linestyle="--", marker="s"))
register(Arm("random_mask", _random_mask, registry.ticket_same_round,
             label="Random mask", color="#2ca02c", linestyle=":", marker="^"))
register(Arm("tfmot_gradual", None, keeps_trained_weights=True,
             label="TFMOT gradual", color="#9467bd", linestyle="-.", marker="D"))


# --------------------------------------------------------------------------
# Pruning at initialization: each method's mask at the ticket's reset point
# with the ticket's counts, and the same mask shuffled within each layer.


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


# --------------------------------------------------------------------------
# Gradual magnitude pruning, in-process


def _gradual_start(trial, round_):
    if trial.config.rewind_iteration:
        raise ValueError("the gradual arm trains from θ0: it needs rewind_iteration=0.")
    return trial.ones(), trial.theta0


def _gradual_train(trial, trainer, round_, **train_round_kwargs):
    from lth_keras.arms import gradual

    return gradual.train_gradual_arm(trial, trainer, round_, **train_round_kwargs)


register(Arm("gradual", _gradual_start, keeps_trained_weights=True, train=_gradual_train,
             label="Gradual (Keras 3)", color="#bcbd22", linestyle=(0, (5, 1, 1, 1)), marker="X",
             plotted_by_default=False))


# --------------------------------------------------------------------------
# What tickets are measured against since 2019: pruning that keeps the trained
# weights (Renda et al. 2020), and sparse training from scratch.


def _chain(name):
    """An arm with its own chain of rounds: round r prunes round r-1's trained
    weights (round 1: the ticket's dense round 0) and starts from them."""

    def previous(round_):
        return ("ticket", 0) if round_ == 1 else (name, round_ - 1)

    def start(trial, round_):
        arm, r = previous(round_)
        trained = trial.trained(arm, r)
        return trial.prune(trial.masked_values(trained), trial.mask(arm, r)), trained

    return start, lambda config, round_: [previous(round_)]


_lr_start, _lr_depends = _chain("lr_rewind")
register(Arm("lr_rewind", _lr_start, _lr_depends, keeps_trained_weights=True,
             label="LR rewinding", color="#003f5c", linestyle="-", marker="*", plotted_by_default=False))
_ft_start, _ft_depends = _chain("finetune")
register(Arm("finetune", _ft_start, _ft_depends, keeps_trained_weights=True, final_learning_rate=True,
             label="Fine-tuning", color="#7f7f7f", linestyle="--", marker="h", plotted_by_default=False))


def _erk_start(trial, round_):
    from lth_keras.arms import sparse_training

    return sparse_training.erk_start(trial, round_)


def _dynamic_train(grow):
    def train(trial, trainer, round_, **train_round_kwargs):
        from lth_keras.arms import sparse_training

        return sparse_training.train_dynamic(trial, trainer, round_, grow=grow, **train_round_kwargs)

    return train


def _ticket_mask(config, round_):
    return [("ticket", round_)]


register(Arm("static_erk", _erk_start, _ticket_mask, keeps_trained_weights=True, rewinds=False,
             label="Static sparse (ERK)", color="#a6761d", linestyle=":", marker="d",
             plotted_by_default=False))
register(Arm("set", _erk_start, _ticket_mask, keeps_trained_weights=True, rewinds=False,
             train=_dynamic_train("random"), label="SET", color="#66a61e", linestyle="-.", marker="p",
             plotted_by_default=False))
register(Arm("rigl", _erk_start, _ticket_mask, keeps_trained_weights=True, rewinds=False,
             train=_dynamic_train("gradient"), label="RigL", color="#6a3d9a", linestyle="-", marker="8",
             plotted_by_default=False))
