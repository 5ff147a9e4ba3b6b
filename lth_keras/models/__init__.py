"""The model registry: the paper's architectures, and any user's `module:build`.

- `registry`: `MODELS`, `build`, `defaults` (the paper's hyperparameters),
  `count_prunable_weights`.
- `paper`: the builders of LeNet, Conv-2/4/6, VGG-19 and ResNet-18.
- `custom`: models of your own, ``--model=my_package.my_module:build``.
"""

from lth_keras.models.custom import (
    CUSTOM_REQUIRED_FLAGS,
    CustomModelError,
    build_custom,
    custom_defaults,
    is_custom,
    load_builder,
)
from lth_keras.models.registry import (
    MODELS,
    ModelDefaults,
    ModelSpec,
    build,
    count_prunable_weights,
    defaults,
)

__all__ = [
    "CUSTOM_REQUIRED_FLAGS",
    "CustomModelError",
    "MODELS",
    "ModelDefaults",
    "ModelSpec",
    "build",
    "build_custom",
    "count_prunable_weights",
    "custom_defaults",
    "defaults",
    "is_custom",
    "load_builder",
]
