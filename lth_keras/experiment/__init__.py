"""The experiment runner: `ExperimentConfig`, `train_and_evaluate`, trial state."""

from lth_keras.experiment.config import (
    ConfigError,
    ExperimentConfig,
    load_dataset,
)
from lth_keras.experiment.runner import (
    train_and_evaluate,
)

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "load_dataset",
    "train_and_evaluate",
]
