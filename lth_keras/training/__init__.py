"""Training one round: the compiled `Trainer`, the schedule shared with the baseline, distribution."""

from lth_keras.training.trainer import (
    Trainer,
    TrainingHparams,
    WarmupPiecewiseDecay,
    make_optimizer,
)

__all__ = [
    "Trainer",
    "TrainingHparams",
    "WarmupPiecewiseDecay",
    "make_optimizer",
]
